#!/usr/bin/env bash
# PyTriton's venv for the benchmark's optional Triton peer (bench/triton_peer.py), apart from
# the app's: PyTriton pins numpy<2. Never on the test path. Pins: bench/requirements-triton.txt.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
uv="${UV:-$root/.venv/bin/uv}"
"$uv" venv "$root/.venv-triton" --python "$python"
VIRTUAL_ENV="$root/.venv-triton" "$uv" pip install -r "$root/bench/requirements-triton.txt"
