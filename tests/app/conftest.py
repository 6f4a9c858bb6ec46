"""Fixtures for the scoring app: tiny SavedModels, key directories laid out
like a Kubernetes Secret volume, and real gunicorn servers started exactly as
the Dockerfile's CMD starts them."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.app import media
from tests.app.openapi_check import SpecClient

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "scoring_app" / "Dockerfile"


def dockerfile_cmd() -> list[str]:
    """The exec-form CMD of the Dockerfile (what the container runs)."""
    cmds = re.findall(r"^CMD\s+(\[.*\])\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert len(cmds) == 1, "the Dockerfile needs exactly one exec-form CMD"
    return json.loads(cmds[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def trained_model():
    """The demo colour classifier, trained once per session (a few seconds)."""
    from scoring_app import demo_model
    return demo_model.train(count=2000)


@pytest.fixture(scope="session")
def encoded_model_dir(trained_model, tmp_path_factory):
    from scoring_app import demo_model
    return demo_model.export(trained_model, tmp_path_factory.mktemp("m") / "encoded", "encoded")


@pytest.fixture(scope="session")
def tensor_model_dir(trained_model, tmp_path_factory):
    from scoring_app import demo_model
    return demo_model.export(trained_model, tmp_path_factory.mktemp("m") / "tensor", "tensor")


class SecretDir:
    """A directory laid out as the kubelet writes a Secret volume: files are
    symlinks through ``..data``, which is swapped atomically on rotation."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._version = 0

    def write(self, **keys: str) -> None:
        self._version += 1
        target = self.path / f"..2026_{self._version:02d}"
        target.mkdir()
        for name, value in keys.items():
            (target / name).write_text(value)
        tmp = self.path / "..data_tmp"
        tmp.symlink_to(target.name)
        os.replace(tmp, self.path / "..data")
        for name in keys:
            link = self.path / name
            if not link.is_symlink():
                link.symlink_to(Path("..data") / name)


@pytest.fixture(scope="session")
def secret_dir(tmp_path_factory):
    keys = SecretDir(tmp_path_factory.mktemp("keys") / "scoring-keys")
    keys.write(primary="primary-key-1", secondary="secondary-key-1")
    return keys


class Server:
    """A gunicorn process group started with the Dockerfile's command."""

    def __init__(self, env: dict[str, str], argv=None):
        """``argv(port)`` gives another command line; default: the Dockerfile's CMD."""
        self.port, self.metrics_port = free_port(), free_port()
        self.env = {**os.environ, "SCORING_HOST": "127.0.0.1", "SCORING_PORT": str(self.port),
                    "SCORING_METRICS_PORT": str(self.metrics_port), **env}
        cmd = dockerfile_cmd()
        assert cmd[0].startswith("python")
        self.argv = argv(self.port) if argv else [sys.executable, *cmd[1:]]
        self.log_path = Path(env.get("TMPDIR", "/tmp")) / f"gunicorn-{self.port}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> "Server":
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if requests.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:  # refused, or queued while workers boot
                pass
            time.sleep(0.3)
        raise AssertionError(f"server not ready in {timeout}s:\n{self.output()}")

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="session")
def server(encoded_model_dir, secret_dir, tmp_path_factory):
    """The main server: string-input model, two workers (multiprocess metrics),
    small body/pixel limits so the bad-input table stays cheap."""
    srv = Server({
        "SCORING_MODEL_DIR": str(encoded_model_dir),
        "SCORING_MODEL_NAME": "colours", "SCORING_MODEL_VERSION": "7",
        "SCORING_API_KEYS_DIR": str(secret_dir.path),
        "SCORING_WORKERS": "2", "SCORING_THREADS": "16",
        "SCORING_MAX_BATCH_SIZE": "8", "SCORING_BATCH_TIMEOUT_MS": "50",
        "SCORING_MAX_BODY_BYTES": str(media.MAX_BODY),
        "SCORING_MAX_IMAGE_PIXELS": str(media.MAX_PIXELS),
        "TMPDIR": str(tmp_path_factory.mktemp("server")),
    })
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def spec(server):
    return requests.get(server.url + "/swagger.json", timeout=10).json()


@pytest.fixture()
def api(server, spec, secret_dir):
    """Requests to the main server, each checked against /swagger.json and for 5xx."""
    return SpecClient(server.url, spec, key="primary-key-1")
