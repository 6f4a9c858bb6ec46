"""Starting and stopping the servers under test, each as its own process tree.

``ours`` is started exactly as the container starts it (docs/contract.md): ``python -m
gunicorn --config scoring_app/gunicorn.conf.py`` from the app's root, configured only through
SCORING_* variables; ``mixed`` is ours with ``SCORING_PRECISION=mixed`` (and its guard at the
defaults). ``baseline`` is bench/baseline, started the same way. The peers, each in a venv of
its own and used only where that venv exists (``peer_python``): ``triton`` is NVIDIA Triton
through PyTriton (bench/triton_peer.py), ``kserve`` KServe's Python model server
(bench/kserve_peer.py). Each runs in a session of its own, so stopping it reaches every
process and nothing outlives the benchmark.
"""
import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from scoring_tools.local import LocalServer, free_port

SERVER_NAMES = ("baseline", "ours", "mixed", "triton", "kserve", "capture100", "capture5")
#: Servers a run includes only when --servers names them (bench/capture_sink.py).
OPT_IN = ("capture100", "capture5")
BENCH_ROOT = Path(__file__).resolve().parent.parent
_CONFIGS = {"baseline": "bench/baseline/gunicorn.conf.py", "ours": "scoring_app/gunicorn.conf.py",
            "mixed": "scoring_app/gunicorn.conf.py", "capture100": "scoring_app/gunicorn.conf.py",
            "capture5": "scoring_app/gunicorn.conf.py"}


@dataclass(frozen=True)
class Peer:
    """An optional peer: its venv, the variable that may name another python, how to install it."""

    venv: Path
    python_variable: str
    install: str
    what: str


PEERS = {
    "triton": Peer(BENCH_ROOT / ".venv-triton", "BENCH_TRITON_PYTHON", "make triton-venv", "PyTriton's venv"),
    "kserve": Peer(BENCH_ROOT / ".venv-kserve", "BENCH_KSERVE_PYTHON", "make kserve-venv", "KServe's venv"),
}


@dataclass(frozen=True)
class Server:
    """A running server: its top process's pid, the URL the load POSTs to, and what it
    POSTs there when it is not the image itself (a peer's own request, with its header)."""

    pid: int
    score_url: str
    metrics_url: str | None = None
    body_file: Path | None = None
    header: str | None = None


def peer_python(name: str) -> Path | None:
    """The python of peer ``name``'s venv (or the one its variable names), if it is
    installed; else None, and the benchmark runs without that peer."""
    peer = PEERS[name]
    named = os.environ.get(peer.python_variable)
    python = Path(named) if named else peer.venv / "bin" / "python"
    return python if python.is_file() else None


def missing_note(name: str) -> str:
    """What to do about peer ``name`` when its venv is not installed."""
    peer = PEERS[name]
    return f"{name}: {peer.what} is not installed ({peer.install}, or {peer.python_variable} naming its python)"


def _root(name: str, app_root: Path) -> Path:
    root = BENCH_ROOT if name == "baseline" else app_root
    if not (root / _CONFIGS[name]).is_file():
        raise FileNotFoundError(f"{name}: no {_CONFIGS[name]} under {root} (is the scoring app there? see --app-root)")
    return root


@contextlib.contextmanager
def running(name: str, app_root: Path, model_dir: Path, model_name: str, keys_dir: Path, log_file: Path,
            ready_timeout: float, image_file: Path | None = None, extra_env: dict | None = None):
    """Start server ``name`` on ``model_dir``, wait for /readyz, yield a Server, always stop it.
    ``extra_env``: more variables (a capture server's sink, bench/capture_sink.py)."""
    if name in PEERS:
        with _PEER_STARTERS[name](model_dir, log_file, ready_timeout, image_file) as server:
            yield server
        return
    root = _root(name, app_root)
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "SCORING_MODEL_DIR": str(model_dir),
        "SCORING_MODEL_NAME": model_name,
        "SCORING_MODEL_VERSION": model_dir.name,
        "SCORING_API_KEYS_DIR": str(keys_dir),
        "SCORING_PORT": str(port),
        "SCORING_METRICS_PORT": str(metrics_port),
        "SCORING_HOST": "127.0.0.1",  # ours listens on all interfaces by default; a benchmark need not
        "SCORING_DRAIN_SECONDS": "0",  # no load balancer to drain away from: stop at once
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        **({"SCORING_PRECISION": "mixed"} if name == "mixed" else {}),
        **(extra_env or {}),
    }
    command = [sys.executable, "-m", "gunicorn", "--config", _CONFIGS[name]]
    with _started(command, env, root, log_file, f"http://127.0.0.1:{port}/readyz", ready_timeout) as pid:
        yield Server(pid=pid, score_url=f"http://127.0.0.1:{port}/score",
                     metrics_url=None if name == "baseline" else f"http://127.0.0.1:{metrics_port}/metrics")


@contextlib.contextmanager
def _started(command: list[str], env: dict, cwd: Path, log_file: Path, ready_url: str, ready_timeout: float):
    """Run ``command`` in a session of its own, wait until ``ready_url`` answers 200, yield
    its pid; always stop it (its whole session) on the way out."""
    with log_file.open("wb") as log:
        server = LocalServer(env, log, argv=command, cwd=cwd)
    try:
        server.wait_ready(ready_url, ready_timeout,
                          lambda: f"log {log_file}:\n" + log_file.read_text(errors="replace")[-3000:])
        yield server.pid
    finally:
        server.stop()


@contextlib.contextmanager
def _peer(name: str, model_dir: Path, log_file: Path, ready_timeout: float, body: bytes, ready_path: str,
          score_path: str, header: str):
    """Start peer ``name``'s script (bench/NAME_peer.py) in its venv on a free port; yield a
    Server that POSTs ``body`` (the peer's request carrying the image) with ``header``."""
    python = peer_python(name)
    if python is None:
        raise FileNotFoundError(missing_note(name))
    body_file = log_file.with_suffix(f".{name}-body")
    body_file.write_bytes(body)
    port = free_port()
    command = [str(python), str(BENCH_ROOT / "bench" / f"{name}_peer.py"), "--model-dir", str(model_dir),
               "--port", str(port)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    base = f"http://127.0.0.1:{port}"
    with _started(command, env, BENCH_ROOT, log_file, base + ready_path, ready_timeout) as pid:
        yield Server(pid=pid, score_url=base + score_path, body_file=body_file, header=header)


@contextlib.contextmanager
def _triton(model_dir: Path, log_file: Path, ready_timeout: float, image_file: Path):
    from bench.triton_peer import MODEL, v2_body

    body, header_length = v2_body(image_file.read_bytes())
    with _peer("triton", model_dir, log_file, ready_timeout, body, f"/v2/models/{MODEL}/ready",
               f"/v2/models/{MODEL}/infer", f"Inference-Header-Content-Length: {header_length}") as server:
        yield server


@contextlib.contextmanager
def _kserve(model_dir: Path, log_file: Path, ready_timeout: float, image_file: Path):
    from bench.kserve_peer import MODEL, v1_body

    # KServe reads the body as JSON only when it is declared so
    with _peer("kserve", model_dir, log_file, ready_timeout, v1_body(image_file.read_bytes()),
               f"/v1/models/{MODEL}", f"/v1/models/{MODEL}:predict", "Content-Type: application/json") as server:
        yield server


_PEER_STARTERS = {"triton": _triton, "kserve": _kserve}
