#!/usr/bin/env bash
# KServe's venv for the benchmark's optional KServe peer (bench/kserve_peer.py), apart from the
# app's: kserve brings FastAPI, uvicorn, pandas, grpcio-tools and more that the app does not
# need. Never on the test path. Pins: bench/requirements-kserve.txt.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
uv="${UV:-$root/.venv/bin/uv}"
"$uv" venv "$root/.venv-kserve" --python "$python"
VIRTUAL_ENV="$root/.venv-kserve" "$uv" pip install -r "$root/bench/requirements-kserve.txt"
