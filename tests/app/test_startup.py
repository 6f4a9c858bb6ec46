"""The server refuses to start on bad configuration, with a message that
says what to fix; the Dockerfile is linted and holds what the contract needs."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from tests.app.conftest import DOCKERFILE, ROOT, Server, dockerfile_cmd, free_port


def _run_master(env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = dockerfile_cmd()
    return subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "SCORING_HOST": "127.0.0.1", "SCORING_PORT": str(free_port()),
                               "SCORING_METRICS_PORT": str(free_port()), **env}, timeout=timeout)


@pytest.mark.parametrize("name,value", [("SCORING_MAX_BATCH_SIZE", "0"),
                                        ("SCORING_PREPROCESS", "keras")])
def test_bad_variable_stops_the_master_naming_it(name, value, tmp_path):
    done = _run_master({name: value, "SCORING_AUTH": "disabled", "TMPDIR": str(tmp_path)})
    assert done.returncode != 0
    assert f"scoring: bad configuration: {name}={value!r}" in done.stderr


def test_no_keys_refuses_to_start(tmp_path):
    done = _run_master({"SCORING_API_KEYS_DIR": str(tmp_path / "none"), "TMPDIR": str(tmp_path)})
    assert done.returncode != 0
    assert "no API key" in done.stderr and "SCORING_AUTH=disabled" in done.stderr


def test_a_taken_metrics_port_stops_the_master_in_one_line_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _run_master({"SCORING_METRICS_PORT": str(port), "SCORING_AUTH": "disabled",
                            "TMPDIR": str(tmp_path)})
    assert done.returncode != 0
    assert (f"scoring: cannot serve metrics on 127.0.0.1:{port} (SCORING_METRICS_PORT)"
            in done.stderr), done.stderr
    assert "Traceback" not in done.stderr and "Booting worker" not in done.stderr


def test_unsupported_model_stops_gunicorn_and_auth_disabled_is_loud(tmp_path):
    """Two inputs: not servable. The worker fails at boot, so gunicorn exits."""
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda a, b: {"s": tf.stack([a, b], 1)},
                           input_signature=[tf.TensorSpec([None], tf.float32)] * 2)
    tf.saved_model.save(module, str(tmp_path / "bad"), signatures={"serving_default": module.f})
    srv = Server({"SCORING_MODEL_DIR": str(tmp_path / "bad"), "SCORING_AUTH": "disabled",
                  "TMPDIR": str(tmp_path)})
    try:
        assert srv.proc.wait(timeout=180) != 0
    finally:
        srv.stop()
    output = srv.output()
    assert "SCORING_AUTH=disabled" in output and "NO key" in output
    assert "cannot serve this model: found inputs {a: float32(None,), b: float32(None,)}" in output
    assert "Traceback" not in output
    assert "supported: serving_default with exactly one input" in output


def test_float_image_model_without_preprocess_is_refused_at_start(tmp_path):
    """A float32 pixel model and no SCORING_PREPROCESS: the worker stops at boot, gunicorn
    exits, and the log says which variable to set, for which input, to what."""
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda pixels: {"scores": tf.reduce_mean(pixels, [1, 2])},
                           input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="pixels")])
    tf.saved_model.save(module, str(tmp_path / "float"), signatures={"serving_default": module.f})
    srv = Server({"SCORING_MODEL_DIR": str(tmp_path / "float"), "SCORING_PREPROCESS": "",
                  "SCORING_AUTH": "disabled", "TMPDIR": str(tmp_path)})
    try:
        assert srv.proc.wait(timeout=180) != 0
    finally:
        srv.stop()
    output = srv.output()
    assert "cannot serve this model: SCORING_PREPROCESS is not set" in output
    assert "input 'pixels': float32 [N, 8, 8, 3]" in output
    assert "caffe for ResNet50/101/152" in output and "tf for ResNet50V2" in output
    assert "Traceback" not in output


# -- Dockerfile ----------------------------------------------------------------
def test_dockerfile_passes_hadolint():
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_holds_what_the_contract_needs():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG TF_VERSION=\d+\.\d+\.\d+$", text, re.MULTILINE)
    # production's base is the pinned GPU image; the container tests pass a local CPU base
    assert "ARG BASE_IMAGE=tensorflow/tensorflow:${TF_VERSION}-gpu" in text
    assert re.findall(r"^FROM .*$", text, re.MULTILINE) == ["FROM ${BASE_IMAGE}"]
    uid = int(re.search(r"^ARG APP_UID=(\d+)$", text, re.MULTILINE).group(1))
    assert uid >= 10000 and re.search(r"^USER \$\{APP_UID\}$", text, re.MULTILINE)
    assert "TF_FORCE_GPU_ALLOW_GROWTH=true" in text
    # the model arrives as the named build context `model` (docs/contract.md, "Image build")
    assert re.search(r"^ARG MODEL_DIR=/\S+$", text, re.MULTILINE)
    assert "COPY --from=model . ${MODEL_DIR}" in text
    assert "SCORING_MODEL_DIR=${MODEL_DIR}" in text
    # dependencies are installed before the source is copied (layer caching)
    assert text.index("pip install") < text.index("COPY . /app/scoring_app")
    assert dockerfile_cmd()[1:] == ["-m", "gunicorn", "--config", "scoring_app/gunicorn.conf.py"]
