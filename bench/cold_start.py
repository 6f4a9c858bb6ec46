"""Cold start with the model as data: from an empty model volume to `/readyz` 200, split into
fetch, load and warm-up, for the benchmark's ResNet50 SavedModel served from Azurite.

    python -m bench.cold_start [--rounds 3] [--scan] [--out bench/results]

Each round: the fetch (scoring_app.model_store.fetch, the init container's code, over HTTPS
with a bearer token to Azurite on 127.0.0.1) into a fresh directory; then the server started
as the container starts it (scoring_tools.local), polled until `/readyz` answers 200; its
`scoring_model_load_seconds` and `scoring_model_warmup_seconds` split what came after the
fetch, the rest is process start (Python, TensorFlow import). Azurite and the server share
this machine's CPUs, so the MB/s is a floor for what one process can verify and write here,
not a figure for Azure's network (docs/models-as-data.md says what it means there).

`--scan` adds what SCORING_MODEL_SCAN=1 adds to the init container: the modelscan pass
(scoring_app/model_store/scan.py) over the fetched model, in a fresh process as in the pod, so
the TensorFlow import that modelscan's SavedModel scanner needs is counted. `scan_s` is that
process's wall time (one Python start more than the pod pays), `scan_inner_s` the scan's
own (import included), `scan_max_rss_mib` its peak memory.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import models
from scoring_app.model_store import fetch as fetch_mod
from scoring_app.model_store import manifest as mf
from scoring_tools.local import ROOT, LocalServer, free_port
from scoring_tools.publish_model import publish


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"{name} not in /metrics")
    return float(match.group(1))


#: The init container's scan in a process of its own: its seconds (TensorFlow's import
#: included) and its peak resident memory.
_SCAN = ("import json, resource, sys; from scoring_app.model_store import scan; "
         "done = scan.scan(sys.argv[1]); print(json.dumps({'scan_inner_s': done['seconds'], "
         "'scan_max_rss_mib': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))")


def scan_round(model_dir: Path) -> dict:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _SCAN, str(model_dir)], cwd=ROOT, text=True,
                          capture_output=True, timeout=600, check=False)
    if done.returncode:
        raise RuntimeError(f"the model scan failed: {done.stderr.strip()[-2000:]}")
    return {"scan_s": round(time.monotonic() - started, 3),
            **json.loads(done.stdout.strip().splitlines()[-1])}


def one_round(azurite, uri: str, digest: str, work: Path, keys: Path, scan: bool = False) -> dict:
    from tests.model_store.azurite import Token
    dest = work / "volume" / "model"
    shutil.rmtree(dest.parent, ignore_errors=True)
    started = time.monotonic()
    stats = fetch_mod.fetch(uri, digest, dest, Token(), connection_verify=str(azurite.cert),
                            progress_every_s=3600, storage_suffix=azurite.endpoint)
    downloaded = time.monotonic()
    scanned = scan_round(dest) if scan else {}
    fetched = time.monotonic()
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, "SCORING_MODEL_DIR": str(dest), "SCORING_MODEL_NAME": "resnet50",
           "SCORING_MODEL_VERSION": "1", "SCORING_API_KEYS_DIR": str(keys), "SCORING_WORKERS": "1",
           "SCORING_HOST": "127.0.0.1", "SCORING_PORT": str(port),
           "SCORING_METRICS_PORT": str(metrics_port), "SCORING_DRAIN_SECONDS": "0",
           "TMPDIR": str(work)}
    with open(work / "server.log", "wb") as log:
        server = LocalServer(env, log)
        try:
            server.wait_ready(f"http://127.0.0.1:{port}/readyz", 600,
                              lambda: (work / "server.log").read_text(errors="replace")[-3000:])
            ready = time.monotonic()
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as r:
                text = r.read().decode()
        finally:
            server.stop(graceful_s=0)
    load, warm = _metric(text, "scoring_model_load_seconds"), _metric(text, "scoring_model_warmup_seconds")
    after_fetch = ready - fetched
    return {"fetch_s": round(downloaded - started, 3), **scanned, "load_s": round(load, 3),
            "warmup_s": round(warm, 3), "process_start_s": round(after_fetch - load - warm, 3),
            "total_s": round(ready - started, 3), "bytes": stats["bytes"], "files": stats["files"],
            "fetch_mb_per_s": round(stats["bytes"] / 1e6 / (downloaded - started), 1),
            "reported_fetch_s": _metric(text, "scoring_model_fetch_seconds")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", choices=models.MODEL_NAMES, default="resnet50")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--cache-dir", type=Path, help="built models (default OUT/models)")
    parser.add_argument("--scan", action="store_true",
                        help="add the init container's modelscan pass (SCORING_MODEL_SCAN=1)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    from tests.model_store.azurite import Azurite
    model_dir = models.ensure(args.model, args.cache_dir or args.out / "models")
    work = Path(tempfile.mkdtemp(prefix="cold-start-"))
    azurite = Azurite(work / "azurite").start()
    try:
        client = azurite.container("models")
        client.create_container()
        prefix, digest = publish(model_dir, client, args.model)
        keys = work / "keys"
        keys.mkdir()
        (keys / "primary").write_text("cold-start-key")
        uri = f"{azurite.account_url}/models/{prefix}"
        rounds = []
        for index in range(args.rounds):
            rounds.append(one_round(azurite, uri, digest, work, keys, args.scan))
            print(f"round {index + 1}: {json.dumps(rounds[-1])}", flush=True)
    finally:
        azurite.stop()
        shutil.rmtree(work, ignore_errors=True)
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    result = {"model": args.model, "scan": args.scan, "model_bytes": sum(e.size for e in mf.build(model_dir)),
              "rounds": rounds, "median": median, "cpus": os.cpu_count()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cold_start.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({"median": median}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
