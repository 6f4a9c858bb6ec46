"""Local quick start (``make serve``): the real server on a demo model.

Once, cached under ``.demo/``: trains the dominant-colour demo model
(scoring_tools/demo_model.py) and generates an API key (``.demo/keys/primary``,
mode 0600). Then prints one ready-to-paste ``curl`` line and replaces itself
with gunicorn, started exactly as the container starts it, on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import sys
from pathlib import Path

from scoring_tools.local import GUNICORN, ROOT

SAMPLES = Path(__file__).resolve().parent / "samples"


def ensure_model(demo_dir: Path) -> Path:
    """The cached demo SavedModel; trained (a few seconds) on first use."""
    model_dir = demo_dir / "model"
    if not (model_dir / "saved_model.pb").exists():
        print("quickstart: training the demo model (once; cached in "
              f"{demo_dir})...", flush=True)
        from scoring_tools import demo_model

        demo_model.export(demo_model.train(), model_dir, "tensor")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=5001, help="port on 127.0.0.1")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / ".demo",
                        help="where the demo model and key are cached")
    args = parser.parse_args(argv)
    demo_dir = args.demo_dir.resolve()
    model_dir = ensure_model(demo_dir)
    keys_dir, key = ensure_key(demo_dir)

    env = dict(os.environ)
    for name, value in {
        "SCORING_MODEL_DIR": str(model_dir), "SCORING_MODEL_NAME": "demo-colours",
        "SCORING_API_KEYS_DIR": str(keys_dir), "SCORING_HOST": "127.0.0.1",
        "SCORING_PORT": str(args.port), "SCORING_WORKERS": "1",
        # the demo model takes uint8 pixels and scales them itself (demo_model.py)
        "SCORING_PREPROCESS": "none",
    }.items():
        env.setdefault(name, value)
    sample = os.path.relpath(SAMPLES / "red.jpg")
    print("quickstart: score a sample image with:\n"
          f"curl -H {shlex.quote('Authorization: Bearer ' + key)} "
          f"-H 'Content-Type: image/jpeg' --data-binary @{shlex.quote(sample)} "
          f"http://127.0.0.1:{env['SCORING_PORT']}/score\n", flush=True)
    os.chdir(ROOT)
    os.execve(sys.executable, [sys.executable, *GUNICORN], env)


if __name__ == "__main__":
    main()
