"""A scoring server on this machine, for the tests, the benchmark and the
plots: one free-port helper and one start/wait/stop helper, so each does not
grow its own.

``LocalServer`` starts a command (by default the Dockerfile's CMD: gunicorn
with scoring_app/gunicorn.conf.py) in a session of its own, so stopping it
reaches every worker and nothing outlives the caller; ``wait_ready`` polls a
URL until it answers 200 (503 while warming up, refused while booting).
Standard library only: the benchmark runs it without the test dependencies.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
#: The container's entry (docs/contract.md), run with this machine's Python.
GUNICORN = ["-m", "gunicorn", "--config", "scoring_app/gunicorn.conf.py"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(proc: subprocess.Popen, url: str, timeout: float, describe=lambda: "") -> None:
    """Until ``url`` answers 200; raises if ``proc`` exits or time runs out
    (``describe()`` adds to the message, e.g. the end of the log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}) before ready\n{describe()}")
        with contextlib.suppress(OSError):  # refused while booting, 503 while warming up
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready within {timeout:.0f}s\n{describe()}")


class LocalServer:
    """A server process group: ``argv`` run in ``cwd`` with ``env``, its output to ``log``."""

    def __init__(self, env: dict[str, str], log: IO[bytes] | int, argv: list[str] | None = None,
                 cwd: Path = ROOT):
        self.argv = argv or [sys.executable, *GUNICORN]
        self.proc = subprocess.Popen(self.argv, cwd=cwd, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid

    def wait_ready(self, url: str, timeout: float, describe=lambda: "") -> None:
        wait_ready(self.proc, url, timeout, describe)

    def stop(self, graceful_s: float = 30) -> None:
        """SIGTERM the master and wait up to ``graceful_s`` (0: skip), then
        SIGKILL whatever is left of its session."""
        if graceful_s and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=graceful_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # this server's own session only
        self.proc.wait()
