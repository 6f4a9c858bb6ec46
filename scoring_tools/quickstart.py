"""Local quick start (``make serve``): the real server on a demo model.

Once, cached under ``.demo/``: trains the dominant-colour demo model
(scoring_tools/demo_model.py) and generates an API key (``.demo/keys/primary``,
mode 0600). Then starts gunicorn exactly as the container starts it, on
127.0.0.1, and once it answers prints one ready-to-paste ``curl`` line.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

from scoring_app.contract import Var
from scoring_tools.local import GUNICORN, ROOT, free_port, wait_ready

SAMPLES = Path(__file__).resolve().parent / "samples"
#: TensorFlow's native INFO lines (glog format: oneDNN, CPU features) and absl's preamble,
#: which TF_CPP_MIN_LOG_LEVEL no longer silences; its warnings and errors still show.
TF_NOISE = re.compile(r"I\d{4} [\d:.]+ +\d+ \S+:\d+\] |To enable the following "
                      r"instructions: |WARNING: All log messages before absl::InitializeLog\(\)")


def ensure_model(demo_dir: Path) -> Path:
    """The cached demo SavedModel; trained (a few seconds, in a child process whose
    TensorFlow lines are filtered like the server's) on first use."""
    model_dir = demo_dir / "model"
    if not (model_dir / "saved_model.pb").exists():
        print("quickstart: training the demo model (once; cached in "
              f"{demo_dir})...", flush=True)
        train = subprocess.Popen(
            [sys.executable, "-c", "import sys; from scoring_tools import demo_model; "
             "demo_model.export(demo_model.train(), sys.argv[1], 'tensor')", str(model_dir)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        relay(train.stdout)
        if train.wait() != 0:
            sys.exit("quickstart: training the demo model failed (its lines are above)")
    return model_dir


def ensure_key(demo_dir: Path) -> tuple[Path, str]:
    """The keys directory and its primary key, created 0700/0600 if missing."""
    keys_dir = demo_dir / "keys"
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    primary = keys_dir / "primary"
    if not primary.exists():
        fd = os.open(primary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return keys_dir, primary.read_text().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5001, help="port on 127.0.0.1")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / ".demo",
                        help="where the demo model and key are cached")
    args = parser.parse_args(argv)
    demo_dir = args.demo_dir.resolve()
    model_dir = ensure_model(demo_dir)
    keys_dir, key = ensure_key(demo_dir)
    env = server_env(model_dir, keys_dir, args.port)
    url = f"http://127.0.0.1:{env[Var.PORT]}"
    # Same process group: Ctrl-C reaches the master (gunicorn's quick stop) and the
    # workers (which end their loops); a SIGTERM sent here is passed on as the drain.
    server = subprocess.Popen([sys.executable, *GUNICORN], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    signal.signal(signal.SIGTERM, lambda signum, frame: server.send_signal(signal.SIGTERM))
    threading.Thread(target=_announce, args=(server, key, url), daemon=True).start()
    while True:  # until the server's output ends; Ctrl-C only lets it finish stopping
        try:
            relay(server.stdout)
            break
        except KeyboardInterrupt:
            continue
    code = _wait_quietly(server)
    print("quickstart: stopped", flush=True)
    return code


def relay(stream) -> None:
    """Copy a child's lines to stdout, less TensorFlow's native start-up lines."""
    for raw in stream:
        line = raw.decode(errors="replace")
        if not TF_NOISE.match(line):
            sys.stdout.write(line)
            sys.stdout.flush()


def _announce(server: subprocess.Popen, key: str, url: str) -> None:
    try:
        wait_ready(server, url + "/readyz", timeout=600)
    except RuntimeError:
        return  # it exited: its own lines say why
    except TimeoutError:
        print(f"quickstart: {url}/readyz did not answer 200 within 600 s", flush=True)
        return
    print(curl_line(key, url), flush=True)


def server_env(model_dir: Path, keys_dir: Path, port: int) -> dict[str, str]:
    """The container's variables for the demo; any already set in the environment win."""
    env = dict(os.environ)
    for name, value in {
        Var.MODEL_DIR: str(model_dir), Var.MODEL_NAME: "demo-colours",
        Var.API_KEYS_DIR: str(keys_dir), Var.HOST: "127.0.0.1",
        Var.PORT: str(port), Var.WORKERS: "1",
        # a free one rather than the container's 9090, which is often taken on a laptop
        Var.METRICS_PORT: str(free_port()),
        "PYTHONUNBUFFERED": "1",  # its lines as they come, through the relay
        # the demo model takes uint8 pixels and scales them itself (demo_model.py)
        Var.PREPROCESS: "none",
    }.items():
        env.setdefault(name, value)
    return env


def curl_line(key: str, url: str) -> str:
    """The one place the key is shown: a curl line that works from any folder."""
    sample = str(SAMPLES / "red.jpg")
    return ("quickstart: ready; score a sample image with:\n"
            f"curl -H {shlex.quote('Authorization: Bearer ' + key)} "
            f"-H 'Content-Type: image/jpeg' --data-binary @{shlex.quote(sample)} {url}/score\n")


def _wait_quietly(server: subprocess.Popen) -> int:
    """Wait for the server's own stop; a second Ctrl-C only waits again."""
    while True:
        try:
            return server.wait()
        except KeyboardInterrupt:
            continue


if __name__ == "__main__":
    sys.exit(main())
