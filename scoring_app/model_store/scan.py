"""The fetch's optional ModelScan pass (Var.MODEL_SCAN): the downloaded SavedModel is
read for operations that touch files before the server may load it.

It runs ProtectAI's ``modelscan`` through its documented Python API. Its own list of
unsafe TensorFlow ops is ReadFile and WriteFile; other ops touch files as well, so
``EXTRA_FILE_OPS`` adds those a serving graph has no use for (docs/models-as-data.md
says what it reads, and what that leaves).

It fails closed: any issue refuses the model (``ModelFlagged``, exit 2); any error, or a
graph it did not read (``saved_model.pbtxt``, ``saved_model.cpb``), refuses it too (exit
1), since a scan that did not finish says nothing about the model.
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
    except Exception as exc:  # whatever it raised, the model is not vouched for
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
