"""The quick start end to end (image-tensor model: the app decodes), and the
SIGTERM drain on a quick-start server of its own (so no test here needs to run
last)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest
import requests

from scoring_tools import quickstart
from tests.app import media
from tests.app.conftest import Server, dockerfile_cmd
from tests.app.openapi_check import SpecClient

SAMPLES = {"red.jpg": "red", "green.png": "green", "yellow.jpg": "yellow"}


def test_quickstart_runs_gunicorn_as_the_dockerfile_does():
    assert quickstart.GUNICORN == dockerfile_cmd()[1:]


def test_demo_model_classifies_the_samples(tensor_model_dir):
    from scoring_app import settings
    from scoring_app.model.savedmodel import ScoringModel
    model = ScoringModel(settings.load({}, model_dir=str(tensor_model_dir), preprocess="none"))
    model.load()
    samples = quickstart.SAMPLES
    items = [model.preprocess((samples / name).read_bytes()) for name in SAMPLES]
    assert [model.postprocess(row, 1)[0]["label"] for row in model.predict(items)] == list(SAMPLES.values())
    for name in SAMPLES:
        assert (samples / name).stat().st_size < 10_000


def _quick_start(tensor_model_dir, demo):
    """``python -m scoring_tools.quickstart --port P`` with the demo model already cached."""
    shutil.copytree(tensor_model_dir, demo / "model")
    return Server({"SCORING_DRAIN_SECONDS": "3", "TMPDIR": str(demo)},
                  argv=lambda port: [sys.executable, "-m", "scoring_tools.quickstart",
                                     "--port", str(port), "--demo-dir", str(demo)])


@pytest.fixture(scope="module")
def quick(tensor_model_dir, tmp_path_factory):
    demo = tmp_path_factory.mktemp("demo")
    srv = _quick_start(tensor_model_dir, demo)
    try:
        yield srv.wait_ready(), demo
    finally:
        srv.stop()


@pytest.fixture()
def quick_to_stop(tensor_model_dir, tmp_path):
    """A quick-start server for one test, which stops it."""
    srv = _quick_start(tensor_model_dir, tmp_path)
    try:
        yield srv.wait_ready(), tmp_path
    finally:
        srv.stop()


def _output_with_curl_line(srv, timeout: float = 30) -> str:
    """The log once the quick start has printed its line (just after /readyz answered)."""
    deadline = time.monotonic() + timeout
    while "\ncurl " not in (output := srv.output()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return output


def test_quickstart_prints_a_working_curl_line_and_keeps_the_key_private(quick):
    srv, demo = quick
    key_file = demo / "keys" / "primary"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    output = _output_with_curl_line(srv)
    assert output.count(key) == 1  # only in the curl line
    line = next(x for x in output.splitlines() if x.startswith("curl "))
    words = shlex.split(line)
    assert words[-1] == f"{srv.url}/score"
    # printed once the server answers, and it works from any folder
    assert output.index("quickstart: ready") > output.index("Booting worker")
    done = subprocess.run(words, cwd=demo, capture_output=True, text=True, timeout=60, check=True)
    body = json.loads(done.stdout)
    assert body["model"]["name"] == "demo-colours"
    assert body["predictions"][0]["label"] == "red"


@pytest.mark.parametrize("name", list(media.BAD_INPUTS))
def test_input_table_on_the_image_tensor_path(quick, name):
    srv, demo = quick
    spec = requests.get(srv.url + "/swagger.json", timeout=10).json()
    api = SpecClient(srv.url, spec, key=(demo / "keys" / "primary").read_text().strip())
    body, content_type, statuses, label = media.BAD_INPUTS[name]
    if name == "oversized body":
        body = b"\xff" * (10 * 1024 * 1024 + 1)  # the quick start keeps the default limit
    response = api.score(body, content_type=content_type)
    assert response.status_code == statuses["tensor"], response.text
    if response.status_code == 200 and label:
        assert response.json()["predictions"][0]["label"] == label


def test_sigterm_drains_readiness_then_finishes_in_flight(quick_to_stop):
    srv, demo = quick_to_stop
    key = (demo / "keys" / "primary").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}
    images = [(quickstart.SAMPLES / n).read_bytes() for n in SAMPLES]

    def keep_scoring(stop_at):
        answers = []
        with requests.Session() as session:
            while time.monotonic() < stop_at:
                try:
                    r = session.post(srv.url + "/score", data=images[len(answers) % 3],
                                     headers=headers, timeout=30)
                except requests.ConnectionError:
                    break  # the listener closed after the drain: expected
                answers.append((len(answers) % 3, r.status_code, r.json()))
        return answers

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(keep_scoring, time.monotonic() + 60) for _ in range(3)]
        time.sleep(0.5)  # let requests be in flight
        srv.proc.send_signal(signal.SIGTERM)
        readiness = []
        while srv.proc.poll() is None:
            try:
                readiness.append(requests.get(srv.url + "/readyz", timeout=5).status_code)
            except requests.RequestException:
                break
            time.sleep(0.2)
        answers = [a for f in futures for a in f.result()]
    assert 503 in readiness and 200 not in readiness[readiness.index(503):]
    assert answers and all(status == 200 for _, status, _ in answers), answers
    labels = list(SAMPLES.values())
    assert all(body["predictions"][0]["label"] == labels[i] for i, _, body in answers)
    assert srv.proc.wait(timeout=60) == 0
    assert "draining" in srv.output()


def test_ctrl_c_stops_cleanly_in_one_line(quick_to_stop):
    """A terminal's Ctrl-C is SIGINT to the whole foreground process group."""
    srv, _ = quick_to_stop
    os.killpg(srv.proc.pid, signal.SIGINT)
    assert srv.proc.wait(timeout=60) == 0
    output = srv.output()
    assert output.rstrip().endswith("quickstart: stopped"), output[-2000:]
    assert "Traceback" not in output and "SystemExit" not in output, output


def test_the_log_is_the_services_own(quick):
    output = _output_with_curl_line(quick[0])
    assert "oneDNN" not in output and "cpu_feature_guard" not in output, output


def test_the_metrics_port_is_a_free_one_unless_set(tmp_path, monkeypatch):
    monkeypatch.delenv("SCORING_METRICS_PORT", raising=False)
    chosen = int(quickstart.server_env(tmp_path, tmp_path, 5001)["SCORING_METRICS_PORT"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", chosen))  # free: the container's 9090 often is not
    monkeypatch.setenv("SCORING_METRICS_PORT", "9191")
    assert quickstart.server_env(tmp_path, tmp_path, 5001)["SCORING_METRICS_PORT"] == "9191"
