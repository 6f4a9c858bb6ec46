"""Soak: steady load for a long time (default 10 minutes); memory must stay flat.

    python -m bench.soak                       # starts the quick-start server itself
    python -m bench.soak --duration 120 --concurrency 8
    python -m bench.soak --url http://127.0.0.1:5001 --key-file .demo/keys/primary \\
                         --pid <gunicorn master pid>      # soaks a running server

Clients send the sample images back to back (keep-alive) and check each
answer's label. Every ``--sample`` seconds it records the RSS of the gunicorn
master and of each worker (psutil) and the answers so far. At the end: the
samples, the error counts, and a verdict. Memory is flat when the workers'
RSS over the last quarter of the run is within ``--max-growth`` of the second
quarter's (the first quarter is warm-up: allocator pools and TensorFlow's
caches fill), and the fitted slope over the last three quarters is printed.
PASS needs flat memory, no failed request and no worker restart; the exit
status is 0 on PASS, 1 on FAIL.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import requests

from scoring_tools.local import LocalServer, free_port

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {"red.jpg": "red", "green.png": "green", "yellow.jpg": "yellow"}
MIB = 1024 * 1024


def start_server(port: int, demo_dir: Path, workers: int) -> LocalServer:
    """The quick start (it execs gunicorn, so this process is the master), returned once
    every worker is warm: /readyz answers for whichever worker takes the probe, and a
    worker still warming up answers 503, so the gauge of ready workers is what counts."""
    metrics_port = free_port()
    server = LocalServer(
        {**os.environ, "SCORING_WORKERS": str(workers), "SCORING_METRICS_PORT": str(metrics_port)},
        subprocess.DEVNULL,
        argv=[sys.executable, "-m", "scoring_tools.quickstart", "--port", str(port),
              "--demo-dir", str(demo_dir)], cwd=ROOT)
    end = time.monotonic() + 600
    while time.monotonic() < end and server.proc.poll() is None:
        try:
            if ready_workers(f"http://127.0.0.1:{metrics_port}/metrics") >= workers:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.5)
    server.stop(graceful_s=0)
    sys.exit(f"soak: the server did not become ready (exit {server.proc.poll()})")


def ready_workers(metrics_url: str) -> float:
    """``scoring_workers_ready`` as the gunicorn master serves it (0 before any worker reports)."""
    for line in requests.get(metrics_url, timeout=2).text.splitlines():
        if line.startswith("scoring_workers_ready"):
            return float(line.split()[-1])
    return 0.0


class Load:
    """``concurrency`` clients, back to back, until ``stop`` is set."""

    def __init__(self, url: str, key: str, concurrency: int):
        self.url, self.key = url + "/score", key
        self.images = [((ROOT / "scoring_tools" / "samples" / n).read_bytes(), label)
                       for n, label in SAMPLES.items()]
        self.answers: collections.Counter = collections.Counter()
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                        for i in range(concurrency)]

    def _client(self, i: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.key}"
        while not self.stop.is_set():
            body, label = self.images[i % len(self.images)]
            i += 1
            try:
                r = session.post(self.url, data=body, timeout=60)
                ok = r.status_code == 200 and r.json()["predictions"][0]["label"] == label
                outcome = "ok" if ok else ("wrong label" if r.status_code == 200 else str(r.status_code))
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            with self._lock:
                self.answers[outcome] += 1


def rss(master: psutil.Process) -> tuple[int, dict[int, int]]:
    workers = {p.pid: p.memory_info().rss for p in master.children()}
    return master.memory_info().rss, workers


def verdict(samples, max_growth: float) -> tuple[bool, str]:
    """Flat memory: last quarter vs second quarter of the workers' total RSS."""
    totals = [(t, sum(w.values())) for t, _, w, _ in samples]
    q = max(1, len(totals) // 4)
    second = statistics.mean(v for _, v in totals[q:2 * q] or totals[:1])
    last = statistics.mean(v for _, v in totals[-q:])
    ratio = last / second
    tail = totals[q:] if len(totals) - q >= 2 else totals
    slope = (statistics.linear_regression([t for t, _ in tail], [v for _, v in tail]).slope
             if len(tail) >= 2 else 0.0)
    return ratio <= 1 + max_growth, (f"workers' RSS last quarter / second quarter = {ratio:.3f} "
                                     f"(limit {1 + max_growth:.2f}); slope "
                                     f"{slope * 60 / MIB:+.2f} MiB/min")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load")
    parser.add_argument("--sample", type=float, default=10, help="seconds between RSS samples")
    parser.add_argument("--concurrency", type=int, default=4, help="clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (own server)")
    parser.add_argument("--max-growth", type=float, default=0.10, help="allowed RSS growth")
    parser.add_argument("--url", help="soak this running server instead of starting one")
    parser.add_argument("--key-file", type=Path, help="its Bearer key (with --url)")
    parser.add_argument("--pid", type=int, help="its gunicorn master's pid (with --url)")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / ".demo",
                        help="model and key cache for the server it starts")
    args = parser.parse_args(argv)

    own = None
    if args.url:
        if not (args.key_file and args.pid):
            parser.error("--url needs --key-file and --pid")
        url, key, pid = args.url, args.key_file.read_text().strip(), args.pid
    else:
        port = free_port()
        own = start_server(port, args.demo_dir.resolve(), args.workers)
        key = (args.demo_dir / "keys" / "primary").read_text().strip()
        url, pid = f"http://127.0.0.1:{port}", own.pid
    master = psutil.Process(pid)
    workers_at_start = {p.pid for p in master.children()}

    load = Load(url, key, args.concurrency)
    for t in load.threads:
        t.start()
    started = time.monotonic()
    samples = []
    print(f"soak: {args.concurrency} clients for {args.duration:.0f}s against {url}; "
          f"master {pid}, workers {sorted(workers_at_start)}")
    print(f"{'t (s)':>7} {'master MiB':>11} {'workers MiB':>24} {'answers':>9}  outcomes")
    try:
        while True:
            elapsed = time.monotonic() - started
            master_rss, worker_rss = rss(master)
            answers = dict(load.answers)
            samples.append((elapsed, master_rss, worker_rss, answers))
            print(f"{elapsed:7.0f} {master_rss / MIB:11.1f} "
                  f"{' '.join(f'{v / MIB:.1f}' for v in worker_rss.values()):>24} "
                  f"{sum(answers.values()):9d}  {answers}", flush=True)
            if elapsed >= args.duration:
                break
            time.sleep(min(args.sample, args.duration - elapsed))
    finally:
        load.stop.set()
        for t in load.threads:
            t.join(timeout=70)
        if own is not None:
            own.stop(graceful_s=120)

    total = sum(load.answers.values())
    errors = total - load.answers["ok"]
    restarted = {p for s in samples for p in s[2]} != workers_at_start
    flat, why = verdict(samples, args.max_growth)
    print(f"soak: {total} requests in {samples[-1][0]:.0f}s ({total / samples[-1][0]:.1f}/s), "
          f"{errors} failed {dict(load.answers)}; workers restarted: {restarted}")
    print(f"soak: {why}")
    passed = flat and errors == 0 and not restarted and total > 0
    print(f"soak: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
