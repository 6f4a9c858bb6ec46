"""Starting and stopping the two servers under test, each as its own gunicorn process tree.

``ours`` is started exactly as the container starts it (docs/contract.md): ``python -m
gunicorn --config scoring_app/gunicorn.conf.py`` from the app's root, configured only through
SCORING_* variables. ``baseline`` is bench/baseline, started the same way. Each runs in a
session of its own, so stopping it reaches every worker and nothing outlives the benchmark.
"""
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SERVER_NAMES = ("baseline", "ours")
BENCH_ROOT = Path(__file__).resolve().parent.parent
_CONFIGS = {"baseline": "bench/baseline/gunicorn.conf.py", "ours": "scoring_app/gunicorn.conf.py"}


@dataclass(frozen=True)
class Server:
    """A running server: the gunicorn master's pid and the URL old clients POST to."""

    pid: int
    score_url: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _root(name: str, app_root: Path) -> Path:
    root = BENCH_ROOT if name == "baseline" else app_root
    if not (root / _CONFIGS[name]).is_file():
        raise FileNotFoundError(f"{name}: no {_CONFIGS[name]} under {root} (is the scoring app there? see --app-root)")
    return root


@contextlib.contextmanager
def running(name: str, app_root: Path, model_dir: Path, model_name: str, keys_dir: Path, log_file: Path,
            ready_timeout: float):
    """Start server ``name`` on ``model_dir``, wait for /readyz, yield a Server, always stop it."""
    root = _root(name, app_root)
    port = _free_port()
    env = {
        **os.environ,
        "SCORING_MODEL_DIR": str(model_dir),
        "SCORING_MODEL_NAME": model_name,
        "SCORING_MODEL_VERSION": model_dir.name,
        "SCORING_API_KEYS_DIR": str(keys_dir),
        "SCORING_PORT": str(port),
        "SCORING_METRICS_PORT": str(_free_port()),
        "SCORING_HOST": "127.0.0.1",  # ours listens on all interfaces by default; a benchmark need not
        "SCORING_DRAIN_SECONDS": "0",  # no load balancer to drain away from: stop at once
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    command = [sys.executable, "-m", "gunicorn", "--config", _CONFIGS[name]]
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        _wait_ready(process, f"http://127.0.0.1:{port}/readyz", ready_timeout, log_file)
        yield Server(pid=process.pid, score_url=f"http://127.0.0.1:{port}/score")
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen, url: str, timeout: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before ready; log {log_file}:\n"
                               + log_file.read_text(errors="replace")[-3000:])
        with contextlib.suppress(OSError):  # refused while booting, 503 while warming up
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready within {timeout:.0f}s; log {log_file}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the master (gunicorn stops its workers gracefully), then SIGKILL its session."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of this server's own session only
    process.wait()
