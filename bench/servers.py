"""Starting and stopping the two servers under test, each as its own gunicorn process tree.

``ours`` is started exactly as the container starts it (docs/contract.md): ``python -m
gunicorn --config scoring_app/gunicorn.conf.py`` from the app's root, configured only through
SCORING_* variables. ``baseline`` is bench/baseline, started the same way. Each runs in a
session of its own, so stopping it reaches every worker and nothing outlives the benchmark.
"""
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from scoring_tools.local import LocalServer, free_port

SERVER_NAMES = ("baseline", "ours")
BENCH_ROOT = Path(__file__).resolve().parent.parent
_CONFIGS = {"baseline": "bench/baseline/gunicorn.conf.py", "ours": "scoring_app/gunicorn.conf.py"}


@dataclass(frozen=True)
class Server:
    """A running server: the gunicorn master's pid and the URL old clients POST to."""

    pid: int
    score_url: str


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
    port = free_port()
    env = {
        **os.environ,
        "SCORING_MODEL_DIR": str(model_dir),
        "SCORING_MODEL_NAME": model_name,
        "SCORING_MODEL_VERSION": model_dir.name,
        "SCORING_API_KEYS_DIR": str(keys_dir),
        "SCORING_PORT": str(port),
        "SCORING_METRICS_PORT": str(free_port()),
        "SCORING_HOST": "127.0.0.1",  # ours listens on all interfaces by default; a benchmark need not
        "SCORING_DRAIN_SECONDS": "0",  # no load balancer to drain away from: stop at once
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }
    command = [sys.executable, "-m", "gunicorn", "--config", _CONFIGS[name]]
    with log_file.open("wb") as log:
        server = LocalServer(env, log, argv=command, cwd=root)
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/readyz", ready_timeout,
                          lambda: f"log {log_file}:\n" + log_file.read_text(errors="replace")[-3000:])
        yield Server(pid=server.pid, score_url=f"http://127.0.0.1:{port}/score")
    finally:
        server.stop()
