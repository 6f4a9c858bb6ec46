"""The fetch's optional modelscan pass (SCORING_MODEL_SCAN): a SavedModel whose graph reads
and writes files is refused before it is renamed into place, the same model is fetched and
does exactly that with the scan off (the default), and a clean model passes. Real
modelscan, real TensorFlow, real Azurite."""
from __future__ import annotations

import pytest

from scoring_app.model_store import manifest as mf
from scoring_app.model_store import scan as model_scan
from scoring_tools.publish_model import publish
from tests.model_store.fake_entra import FakeEntra
from tests.model_store.test_fetch import (CLIENT_ID, _cli, _fetch, _nothing_left,
                                          _workload_env)

pytestmark = pytest.mark.slow


def _save_serving(directory, side_effect):
    """A SavedModel whose serving signature runs `side_effect()` and returns zero scores."""
    import tensorflow as tf

    class Serving(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, images):
            side_effect()
            return {"scores": tf.zeros([tf.shape(images)[0], 2])}

    module = Serving()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    return directory


def _serve_once(model_dir):
    import tensorflow as tf
    tf.saved_model.load(str(model_dir)).signatures["serving_default"](images=tf.constant([b"x"]))


@pytest.fixture(scope="module")
def file_model(tmp_path_factory):
    """A serving signature that reads a file outside the model and writes it elsewhere: the
    graph holds ReadFile and WriteFile ops (tf.io.read_file / tf.io.write_file)."""
    import tensorflow as tf
    root = tmp_path_factory.mktemp("file-model")
    secret, loot = root / "secret.txt", root / "loot.txt"
    secret.write_text("the node's credentials")
    model = _save_serving(root / "model", lambda: tf.io.write_file(
        str(loot), tf.io.read_file(str(secret))))
    return model, secret, loot


@pytest.fixture()
def published_file_model(container, file_model):
    model, _, _ = file_model
    prefix, digest = publish(model, container, "exfiltrate")
    return prefix, digest


def test_a_model_that_reads_and_writes_files_is_refused_with_the_scan_on(
        azurite, container, published_file_model, tmp_path):
    prefix, digest = published_file_model
    dest = tmp_path / "model"
    with pytest.raises(model_scan.ModelFlagged) as caught:
        _fetch(azurite, container, prefix, digest, dest, scan=True)
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("model scan (modelscan 0.8.8) flagged the model, not loaded: ")
    assert "saved_model.pb: Use of unsafe operator 'ReadFile' from module 'Tensorflow' (HIGH)" in line
    assert "saved_model.pb: Use of unsafe operator 'WriteFile' from module 'Tensorflow' (HIGH)" in line
    assert caught.value.exit_code == 2
    assert _nothing_left(dest)  # never renamed into place, so never loaded


def test_with_the_scan_off_the_same_model_is_loaded_and_does_what_the_scan_said(
        azurite, container, published_file_model, file_model, tmp_path):
    """The default: the fetch verifies the bytes against the digest, not what the graph does."""
    model, secret, loot = file_model
    prefix, digest = published_file_model
    dest = tmp_path / "model"
    stats = _fetch(azurite, container, prefix, digest, dest)
    assert "scan_seconds" not in stats
    assert mf.build(dest) == mf.build(model)
    loot.unlink(missing_ok=True)
    _serve_once(dest)
    assert loot.read_text() == secret.read_text()  # it read a file and wrote it elsewhere


def test_a_clean_model_passes_the_scan(azurite, container, encoded_model_dir, tmp_path):
    prefix, digest = publish(encoded_model_dir, container, "colours")
    dest = tmp_path / "model"
    stats = _fetch(azurite, container, prefix, digest, dest, scan=True)
    assert mf.build(dest) == mf.build(encoded_model_dir)
    assert "scan_seconds" in stats


def test_the_command_exits_2_on_a_finding_and_0_on_a_clean_model(
        azurite, container, published_file_model, encoded_model_dir, tmp_path):
    """SCORING_MODEL_SCAN=1 on the init container's command, as the stack sets it."""
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("projected-service-account-token")
    clean_prefix, clean_digest = publish(encoded_model_dir, container, "colours")
    base = f"{azurite.account_url}/{container.container_name}"
    with FakeEntra(azurite.cert, azurite.key, CLIENT_ID, "projected-service-account-token") as entra:
        prefix, digest = published_file_model
        flagged = _cli({**_workload_env(azurite, entra, token_file, f"{base}/{prefix}", digest,
                                        tmp_path / "a" / "model"), "SCORING_MODEL_SCAN": "1"})
        clean = _cli({**_workload_env(azurite, entra, token_file, f"{base}/{clean_prefix}",
                                      clean_digest, tmp_path / "b" / "model"),
                      "SCORING_MODEL_SCAN": "true"})
    assert flagged.returncode == 2, flagged.stderr
    last = flagged.stderr.strip().splitlines()[-1]
    assert last.startswith("model fetch failed: model scan (modelscan 0.8.8) flagged the model")
    assert "'ReadFile'" in last and "'WriteFile'" in last
    assert "Error" not in flagged.stderr.replace(last, "")  # modelscan's own log stays quiet
    assert _nothing_left(tmp_path / "a" / "model")
    assert clean.returncode == 0, clean.stderr
    assert "model scan (modelscan 0.8.8): clean" in clean.stderr
    assert mf.build(tmp_path / "b" / "model") == mf.build(encoded_model_dir)


# --- file ops beyond modelscan's ReadFile/WriteFile: scan.EXTRA_FILE_OPS ---------------------

def test_every_extra_file_op_is_a_tensorflow_op():
    """A misspelt name would guard nothing."""
    import tensorflow as tf
    assert [op for op in model_scan.EXTRA_FILE_OPS if not hasattr(tf.raw_ops, op)] == []
    assert len(set(model_scan.EXTRA_FILE_OPS)) == len(model_scan.EXTRA_FILE_OPS)


def _list_etc():
    import tensorflow as tf
    tf.print(tf.io.matching_files("/etc/*"))


def _read_lines(path):
    def read():
        import tensorflow as tf
        for line in tf.data.TextLineDataset(str(path)).take(1):
            tf.print(line)
    return read


@pytest.mark.parametrize("op", ["MatchingFiles", "TextLineDataset"])
def test_file_ops_modelscan_passes_are_refused_by_the_extra_list(tmp_path, op):
    """modelscan's defaults let these through (if that changes, EXTRA_FILE_OPS can shrink);
    with the extra list they are HIGH findings."""
    import copy

    from modelscan.modelscan import ModelScan
    from modelscan.settings import DEFAULT_SETTINGS
    secret = tmp_path / "secret.txt"
    secret.write_text("a line of someone's file\n")
    side_effect = _list_etc if op == "MatchingFiles" else _read_lines(secret)
    model = _save_serving(tmp_path / "model", side_effect)
    assert ModelScan(settings=copy.deepcopy(DEFAULT_SETTINGS)).scan(model)["issues"] == []
    with pytest.raises(model_scan.ModelFlagged,
                       match=f"saved_model.pb: Use of unsafe operator '{op}' .* \\(HIGH\\)"):
        model_scan.scan(model)


def test_known_limit_print_to_a_file_passes_the_scan(tmp_path):
    """What docs/models-as-data.md says the scan cannot see: PrintV2's stream is an attribute, and a
    serving graph may print, so `tf.print(..., output_stream="file://...")` passes and writes."""
    import tensorflow as tf
    written = tmp_path / "written.txt"
    model = _save_serving(tmp_path / "model",
                          lambda: tf.print("from the model", output_stream=f"file://{written}"))
    assert sorted(model_scan.scan(model)["scanned"]) == ["fingerprint.pb", "saved_model.pb"]
    _serve_once(model)
    assert written.read_text().strip() == "from the model"


# --- what a scan error or an unread graph means: refused (fail closed), exit 1 ---------------

def test_a_graph_modelscan_cannot_parse_is_refused_not_passed(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"not a real graph")
    with pytest.raises(model_scan.ScanError) as caught:
        model_scan.scan(tmp_path)
    assert not isinstance(caught.value, model_scan.ModelFlagged) and caught.value.exit_code == 1
    assert str(caught.value).startswith(
        "model scan (modelscan 0.8.8) could not check the model, not loaded: saved_model.pb: ")


@pytest.mark.parametrize("graph", model_scan.UNSCANNABLE_GRAPHS)
def test_a_graph_in_a_form_modelscan_does_not_read_is_refused(tmp_path, graph):
    """TensorFlow also loads saved_model.pbtxt (and .cpb); modelscan reads only .pb files, so
    a ReadFile there would pass unseen."""
    (tmp_path / graph).write_text('meta_graphs { graph_def { node { name: "r" op: "ReadFile" } } }')
    with pytest.raises(model_scan.ScanError, match=f"^model scan: {graph}: modelscan reads the "
                                                   "graph only as saved_model.pb"):
        model_scan.scan(tmp_path)


def test_a_model_without_its_graph_is_refused(tmp_path):
    (tmp_path / "variables").mkdir()
    (tmp_path / "variables" / "variables.index").write_bytes(b"index")
    with pytest.raises(model_scan.ScanError, match=r"saved_model\.pb was not scanned "
                                                   r"\(scanned: nothing\)"):
        model_scan.scan(tmp_path)
