"""Machinery for the scoring app's tests: key directories laid out like a
Kubernetes Secret volume, and real gunicorn servers started exactly as the
Dockerfile's CMD starts them. The session fixtures built on it (demo models,
the main server) are in tests/conftest.py, shared with tests/reliability."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
import requests

from scoring_app.http.auth import RECHECK_S
from scoring_tools.local import ROOT, LocalServer, free_port
from tests.app.openapi_check import SpecClient

DOCKERFILE = ROOT / "scoring_app" / "Dockerfile"
__all__ = ["ROOT", "DOCKERFILE", "free_port", "dockerfile_cmd", "SecretDir", "Server"]


def dockerfile_cmd() -> list[str]:
    """The exec-form CMD of the Dockerfile (what the container runs)."""
    cmds = re.findall(r"^CMD\s+(\[.*\])\s*$", DOCKERFILE.read_text(), re.MULTILINE)
    assert len(cmds) == 1, "the Dockerfile needs exactly one exec-form CMD"
    return json.loads(cmds[0])


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

    def rotate(self, **keys: str) -> None:
        """``write``, then wait until a running server must have looked again."""
        self.write(**keys)
        wait_for_key_recheck()


def wait_for_key_recheck() -> None:
    """Wait until a running server must have looked at its key files again (it
    looks at most every ``RECHECK_S``: scoring_app/http/auth.py)."""
    time.sleep(RECHECK_S + 0.25)


class Server:
    """A gunicorn process group started with the Dockerfile's command
    (``scoring_tools.local.LocalServer``, which the benchmark uses too)."""

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
        self.local = LocalServer(self.env, self.log, argv=self.argv)
        self.proc = self.local.proc
        self.url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> "Server":
        try:
            self.local.wait_ready(self.url + "/readyz", timeout, self.output)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(str(exc)) from None
        return self

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text

    def stop(self) -> None:
        self.local.stop(graceful_s=0)
        self.log.close()


@pytest.fixture()
def api(server, spec, secret_dir):
    """Requests to the main server, each checked against /swagger.json and for 5xx."""
    return SpecClient(server.url, spec, key="primary-key-1")


@pytest.fixture()
def gated():
    """``gated(gate=None, **batcher_args)`` -> a ``gates.GatedBatcher``; every
    one made is released and stopped when the test ends, pass or fail."""
    from tests.app.gates import Gate, GatedBatcher

    made = []

    def make(gate=None, **kw):
        made.append(GatedBatcher(gate or Gate(), **kw))
        return made[-1]

    yield make
    for held in made:
        held.close()
