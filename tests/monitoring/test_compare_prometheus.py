"""compare against a real Prometheus scraping two real scoring servers, labelled as two deployments.

Debian's prometheus (unpacked by `make setup` into .prometheus, pinned in the
Makefile; PROMETHEUS names the binary) runs on 127.0.0.1 with a 1 s scrape of
both servers' metrics ports. Each target carries `deployment` as a target
label, which is what the stack's PodMonitor does from each pod's
aks-gpu-scoring/deployment label. blue is the service as it ships; green is
the same service slowed (tests/reliability/slow_wsgi.py: every model call
sleeps first). Both get the same bounded load; then compare must hold green
against blue, promote blue against green, and find no data for a deployment
that does not exist.
"""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from scoring_tools import compare
from tests.app import media
from tests.app.conftest import ROOT, Server, free_port
from tests.reliability.conftest import slow_argv

REQUESTS_EACH = 150
GREEN_DELAY_S = 0.15
KEY = "primary-key-1"  # tests/conftest.py's secret_dir


def prometheus_binary() -> str:
    """The binary `make setup` unpacked (or PROMETHEUS, or one on PATH); never skipped."""
    for candidate in (os.environ.get("PROMETHEUS"), str(ROOT / ".prometheus/usr/bin/prometheus"),
                      shutil.which("prometheus")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise AssertionError("no prometheus binary: run `make setup` (it unpacks Debian's package "
                         "into .prometheus) or set PROMETHEUS")


@pytest.fixture(scope="module")
def deployments(encoded_model_dir, secret_dir, tmp_path_factory):
    common = {"SCORING_MODEL_DIR": str(encoded_model_dir), "SCORING_MODEL_NAME": "colours",
              "SCORING_API_KEYS_DIR": str(secret_dir.path), "SCORING_WORKERS": "1"}
    blue = Server({**common, "SCORING_DEPLOYMENT_NAME": "blue",
                   "TMPDIR": str(tmp_path_factory.mktemp("blue"))})
    green = Server({**common, "SCORING_DEPLOYMENT_NAME": "green",
                    "RELIABILITY_MODEL_DELAY_S": str(GREEN_DELAY_S),
                    "TMPDIR": str(tmp_path_factory.mktemp("green"))}, argv=slow_argv)
    try:
        yield {"blue": blue.wait_ready(), "green": green.wait_ready()}
    finally:
        blue.stop()
        green.stop()


@pytest.fixture(scope="module")
def prometheus(deployments, tmp_path_factory):
    folder = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "scoring", "static_configs": [
                  {"targets": [f"127.0.0.1:{server.metrics_port}"],
                   "labels": {"deployment": name}} for name, server in deployments.items()]}]}
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(folder / "prometheus.log", "wb")
    proc = subprocess.Popen(
        [prometheus_binary(), f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        # Both targets scraped (up == 1) before any load, so no request predates the
        # first sample of its counter.
        wait_for(lambda: value(url, 'count(up{job="scoring"} == 1)') == 2, "both targets up",
                 proc, folder)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def value(url: str, query: str) -> float | None:
    try:
        result = requests.get(f"{url}/api/v1/query", params={"query": query},
                              timeout=5).json()["data"]["result"]
    except (requests.RequestException, ValueError, KeyError):
        return None
    return float(result[0]["value"][1]) if result else None


def wait_for(condition, what: str, proc, folder: Path, limit_s: float = 90) -> None:
    """Poll until `condition()`; fail with Prometheus's log if it exits or time runs out."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited:\n{(folder / 'prometheus.log').read_text()}")
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not seen within {limit_s:.0f} s\n"
                         f"{(folder / 'prometheus.log').read_text()[-3000:]}")


def load(server, count: int) -> list[int]:
    image = media.jpeg()
    session = requests.Session()

    def one(_):
        return session.post(server.url + "/score", data=image, timeout=30, headers={
            "Authorization": f"Bearer {KEY}", "Content-Type": "image/jpeg"}).status_code
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def seen(url: str, deployment: str, count: int, limit_s: float = 60) -> None:
    """Poll until Prometheus has scraped `count` /score requests of `deployment`."""
    query = f'sum(scoring_requests_total{{route="/score",deployment="{deployment}"}})'
    deadline = time.monotonic() + limit_s
    while (value(url, query) or 0) < count:
        assert time.monotonic() < deadline, f"{deployment}: {value(url, query)} of {count} seen"
        time.sleep(0.5)


def test_compare_holds_the_slowed_deployment_and_promotes_the_healthy_one(
        deployments, prometheus, capsys):
    # A counter's series appears with its first request; increase() cannot count what came
    # before its first sample, so each deployment answers a few first and is scraped.
    warm = 5
    for name, server in deployments.items():
        assert load(server, warm) == [200] * warm, name
        seen(prometheus, name, warm)
    for name, server in deployments.items():
        statuses = load(server, REQUESTS_EACH)
        assert statuses.count(200) == REQUESTS_EACH, (name, sorted(set(statuses)))
    for name in deployments:  # Prometheus has scraped the counters after the load
        seen(prometheus, name, warm + REQUESTS_EACH)
    time.sleep(2)  # two more scrapes, so rate() has samples on both sides of the load

    base = ["--prometheus-url", prometheus, "--window", "2m", "--min-requests", "100"]
    assert compare.main([*base, "--candidate", "green", "--baseline", "blue"]) == compare.HOLD
    held = capsys.readouterr().out
    assert "verdict: hold" in held and "p50" in held.split("verdict: hold")[1], held
    assert compare.main([*base, "--candidate", "blue", "--baseline", "green"]) == compare.PROMOTE
    promoted = capsys.readouterr().out
    assert "verdict: promote" in promoted, promoted
    # The table shows both deployments side by side with what Prometheus counted.
    header = promoted.splitlines()[1]
    assert "blue (candidate)" in header and "green (baseline)" in header
    assert compare.main([*base, "--candidate", "purple", "--baseline", "blue"]) == compare.NO_DATA
    assert "purple: fewer than 100 requests" in capsys.readouterr().out


def test_each_real_server_names_itself_and_the_client_shows_it(deployments, tmp_path, capsys):
    """Real gunicorn: the answer's azureml-model-deployment is the server's own name, and
    `client --deployment` sends the header and prints who answered."""
    from scoring_tools import client
    image = tmp_path / "red.jpg"
    image.write_bytes(media.jpeg())
    for name, server in deployments.items():
        answer = requests.post(server.url + "/score", data=image.read_bytes(), timeout=30,
                               headers={"Authorization": f"Bearer {KEY}"})
        assert answer.status_code == 200 and answer.headers["azureml-model-deployment"] == name
        assert requests.get(server.url + "/healthz", timeout=10).headers[
            "azureml-model-deployment"] == name
        assert client.main([str(image), "--uri", server.url + "/score", "--key", KEY,
                            "--deployment", name]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].split()[-1] == "deployment" and lines[2].split()[-1] == name, lines
