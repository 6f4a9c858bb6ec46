"""The fetch's optional ModelScan pass (Var.MODEL_SCAN=1): the downloaded SavedModel is
read for operations that touch files before the server may load it.

It runs ProtectAI's `modelscan` (PyPI) through its documented Python API,
``ModelScan(settings=DEFAULT_SETTINGS).scan(path)``, whose report is a dict of ``issues``,
``errors`` and ``summary.scanned`` / ``summary.skipped``. What modelscan 0.8.8 looks at in a
SavedModel (modelscan/settings.py, modelscan/scanners/saved_model/scan.py):
- every ``*.pb`` is parsed as a ``SavedModel`` proto, and the op of every node in every
  graph and graph function is listed: ``ReadFile`` and ``WriteFile`` are HIGH issues, an op
  that ``tf.raw_ops`` does not name (a custom op) is MEDIUM;
- a Keras ``Lambda`` layer in ``keras_metadata.pb`` is MEDIUM;
- pickle-family files (``.pkl``, ``.joblib``, ``.dat``, ``.data``, ...) are checked for
  unsafe imports. Variables, the index and text assets have no scanner: they are skipped.

modelscan's own list of unsafe TensorFlow ops is those two. Other ops read, list or write files
just as well and pass it (measured: MatchingFiles, TextLineDataset, tf.print to ``file://``), so
``EXTRA_FILE_OPS`` adds, through modelscan's settings, the file-touching ops a serving graph
has no use for. Not on it, and so not caught by any op-name check: SaveV2, RestoreV2 and
MergeV2Checkpoints (every SavedModel carries them for its own checkpoint),
InitializeTableFromTextFileV2 (vocabularies from assets) and PrintV2 (its stream is an
attribute, ``file://...`` included). docs/models-as-data.md says what that leaves.

What its answer means here (fail closed; docs/contract.md, "Models as data"):
- any issue, whatever its severity: the model is refused (``ModelFlagged``, exit 2);
- any error (a file it could not parse, TensorFlow missing, a scanner that did not import,
  modelscan itself failing): refused (exit 1). A scan that did not finish says nothing about
  the model, and a well-formed SavedModel scans without one;
- skipped files are expected (tensors and text that TensorFlow never runs), but the graph is
  not: a model whose graph modelscan did not read (``saved_model.pbtxt`` or
  ``saved_model.cpb``, which TensorFlow also loads) is refused (exit 1).
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

LOG = logging.getLogger("scoring.model_fetch")
#: The graph TensorFlow loads; modelscan reads it only in this form (it scans ``.pb`` files).
GRAPH = "saved_model.pb"
#: The other forms TensorFlow's loader accepts (tensorflow/python/saved_model/loader_impl.py).
UNSCANNABLE_GRAPHS = ("saved_model.pbtxt", "saved_model.cpb")
#: Ops that take a file name or pattern and that serving has no use for: input pipelines and
#: readers, a file listing, dataset/summary/debug writers, a memory-mapped constant. HIGH,
#: like modelscan's ReadFile and WriteFile (each is a tf.raw_ops name: tests/model_store).
EXTRA_FILE_OPS = (
    "MatchingFiles", "ImmutableConst",
    "TextLineDataset", "TFRecordDataset", "TFRecordDatasetV2", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset",
    "LMDBDataset", "ExperimentalLMDBDataset", "SqlDataset", "ExperimentalSqlDataset",
    "LoadDataset", "SnapshotDataset", "SnapshotDatasetV2", "SnapshotDatasetReader",
    "SnapshotChunkDataset",
    "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2",
    "TFRecordReader", "TFRecordReaderV2", "FixedLengthRecordReader",
    "FixedLengthRecordReaderV2", "LMDBReader",
    "SaveDataset", "SaveDatasetV2", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "DebugIdentityV2", "DebugIdentityV3",
)
_TF_OP_SCANNER = "modelscan.scanners.SavedModelTensorflowOpScan"


class ScanError(RuntimeError):
    """The scan could not vouch for the model (exit 1)."""

    exit_code = 1


class ModelFlagged(ScanError):
    """modelscan found something in the model (exit 2)."""

    exit_code = 2


def _version() -> str:
    from importlib.metadata import version
    return f"modelscan {version('modelscan')}"


def scan_settings() -> dict:
    """modelscan's defaults (a copy: its CLI writes into the settings it is given), with
    EXTRA_FILE_OPS among the TensorFlow ops it reports."""
    from modelscan.settings import DEFAULT_SETTINGS
    chosen = copy.deepcopy(DEFAULT_SETTINGS)
    chosen["scanners"][_TF_OP_SCANNER]["unsafe_tf_operators"].update(
        dict.fromkeys(EXTRA_FILE_OPS, "HIGH"))
    return chosen


def scan(model_dir: str | Path) -> dict:
    """Scan ``model_dir``; returns ``{"seconds", "scanned", "skipped"}`` when it is clean, or
    raises ModelFlagged / ScanError with one line naming the file and the finding."""
    model_dir = Path(model_dir)
    started = time.monotonic()
    for name in UNSCANNABLE_GRAPHS:
        if (model_dir / name).exists():
            raise ScanError(f"model scan: {name}: modelscan reads the graph only as {GRAPH}, "
                            "so this model cannot be scanned (export it with tf.saved_model.save)")
    try:
        from modelscan.modelscan import ModelScan  # imports TensorFlow: only when asked for
        report = ModelScan(settings=scan_settings()).scan(model_dir)
    except Exception as exc:  # noqa: BLE001 - whatever it raised, the model is not vouched for
        raise ScanError(f"model scan: modelscan failed on {model_dir}: {type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}") from None
    tool = _version()
    if report["issues"]:
        raise ModelFlagged(f"model scan ({tool}) flagged the model, not loaded: " + "; ".join(
            f"{issue['source']}: {issue['description']} ({issue['severity']})"
            for issue in report["issues"]))
    if report["errors"]:
        raise ScanError(f"model scan ({tool}) could not check the model, not loaded: " + "; ".join(
            f"{error.get('source', model_dir.name)}: {error['category']} "
            f"{' '.join(str(error['description']).split())}"
            for error in report["errors"]))
    scanned = report["summary"]["scanned"].get("scanned_files", [])
    if GRAPH not in scanned:
        raise ScanError(f"model scan ({tool}): {GRAPH} was not scanned "
                        f"(scanned: {', '.join(scanned) or 'nothing'}), not loaded")
    skipped = [s["source"] for s in report["summary"]["skipped"]["skipped_files"]]
    seconds = time.monotonic() - started
    LOG.info("model scan (%s): clean in %.2f s; scanned %s; %d files have no scanner "
             "(tensors, assets): %s", tool, seconds, ", ".join(scanned), len(skipped),
             ", ".join(skipped))
    return {"seconds": round(seconds, 3), "scanned": scanned, "skipped": skipped}
