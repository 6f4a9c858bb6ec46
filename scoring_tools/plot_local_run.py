"""Plot the scoring service's own metrics from a real local run under load.

Starts the quick-start demo server (``python -m scoring_tools.quickstart``, the
real gunicorn on a tiny model) unless ``--url`` names a running one, drives it
for ``--seconds`` with a mix of good requests (raw JPEG, JSON batches, v2
infer) and bad ones (not an image, wrong key, wrong Content-Type) at a
concurrency that steps up and down, scrapes ``/metrics`` every second, and
writes the raw samples (CSV: one row per scrape, one column per series) and a
PNG of what the Grafana dashboard shows: requests/s by route, p50/p99 latency,
batch size, queue depth, 4xx/5xx per second. Rates and quantiles are computed
from the counters and histogram buckets the way Prometheus's ``rate`` and
``histogram_quantile`` do.

    python -m scoring_tools.plot_local_run              # demo server, 60 s
    python -m scoring_tools.plot_local_run --url http://127.0.0.1:5001 \\
        --metrics-url http://127.0.0.1:9090/metrics --key "$(cat .demo/keys/primary)"
    python -m scoring_tools.plot_local_run --replot docs/metrics-local-run.csv
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import math
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from scoring_app.contract import Var
from scoring_tools.local import LocalServer, free_port

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "scoring_tools" / "samples").iterdir())
SCORING_ROUTES = ("/score", "/v2/models/<name>/infer")
#: (second of a 60 s run, concurrent clients from then): up, a peak, down.
PHASES = ((0, 2), (15, 6), (30, 12), (45, 3))
RATE_WINDOW_S = 5.0
CLIENTS = "clients"  # recorded with each scrape: the load generator's concurrency then

Sample = tuple[float, dict[str, float]]  # (seconds since start, series -> value)


# -- parsing and PromQL-like arithmetic ------------------------------------------
def series_key(name: str, labels: dict[str, str]) -> str:
    """Prometheus's text form, labels sorted: ``name{a="1",b="2"}``."""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}" if inner else name


def parse_key(key: str) -> tuple[str, dict[str, str]]:
    name, _, inner = key.partition("{")
    labels = dict(part.split("=", 1) for part in inner.rstrip("}").split(",") if part)
    return name, {k: v.strip('"') for k, v in labels.items()}


def parse_scrape(text: str) -> dict[str, float]:
    """The scoring_* samples of one /metrics answer."""
    return {series_key(s.name, s.labels): s.value
            for family in text_string_to_metric_families(text)
            if family.name.startswith("scoring_")
            for s in family.samples if not s.name.endswith("_created")}


def _first_in_window(samples: list[Sample], i: int, window: float) -> int:
    """The earliest scrape at most ``window`` seconds before scrape i."""
    return next(j for j in range(i + 1) if samples[i][0] - samples[j][0] <= window)


def _increase(samples: list[Sample], key: str, i: int, window: float) -> float | None:
    """Counter increase over the window ending at sample i, resets counted as
    Prometheus does (a drop means the counter restarted from zero)."""
    start = _first_in_window(samples, i, window)
    if start == i:
        return None
    total, previous = 0.0, samples[start][1].get(key, 0.0)
    for _, values in samples[start + 1:i + 1]:
        value = values.get(key, 0.0)
        total += value if value < previous else value - previous
        previous = value
    return total


def rate(samples: list[Sample], i: int, match, window: float = RATE_WINDOW_S) -> float:
    """``sum(rate(series[window]))`` over the series whose (name, labels) ``match``."""
    keys = {k for _, values in samples[:i + 1] for k in values if match(*parse_key(k))}
    elapsed = samples[i][0] - samples[_first_in_window(samples, i, window)][0]
    increases = [_increase(samples, k, i, window) for k in keys]
    if not elapsed or not increases or all(x is None for x in increases):
        return math.nan
    return sum(x for x in increases if x is not None) / elapsed


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus's ``histogram_quantile``: ``buckets`` = (upper bound, cumulative
    count), +Inf included; linear interpolation inside the bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0 or not math.isinf(buckets[-1][0]):
        return math.nan
    rank = q * buckets[-1][1]
    for n, (upper, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(upper):
                return buckets[n - 1][0] if n else math.nan
            lower, below = (buckets[n - 1] if n else (0.0, 0.0))
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
    return math.nan


def histogram_quantile(samples: list[Sample], i: int, q: float, name: str, match=None,
                       window: float = RATE_WINDOW_S) -> float:
    """``histogram_quantile(q, sum by (le) (rate(name_bucket[window])))``."""
    by_le: dict[float, float] = {}
    for key in samples[i][1]:
        metric, labels = parse_key(key)
        if metric == name + "_bucket" and (match is None or match(labels)):
            increase = _increase(samples, key, i, window)
            if increase is not None:
                le = float(labels["le"])
                by_le[le] = by_le.get(le, 0.0) + increase
    return bucket_quantile(q, list(by_le.items()))


# -- the plot -------------------------------------------------------------------
def panels(samples: list[Sample]) -> dict[str, dict[str, list[float]]]:
    """Panel title -> line name -> one value per scrape (NaN before a window fills)."""
    def by_route(route):
        return lambda name, labels: name == "scoring_requests_total" and labels["route"] == route

    def by_status(first):
        return lambda name, labels: (name == "scoring_requests_total"
                                     and labels["status"].startswith(first))

    scoring = lambda labels: labels.get("route") in SCORING_ROUTES  # noqa: E731
    routes = sorted({parse_key(k)[1]["route"] for _, v in samples for k in v
                     if k.startswith("scoring_requests_total")})
    idx = range(len(samples))
    batch_sum = lambda n, _: n == "scoring_batch_size_sum"  # noqa: E731
    batch_count = lambda n, _: n == "scoring_batch_size_count"  # noqa: E731
    return {
        "requests/s by route": {r: [rate(samples, i, by_route(r)) for i in idx] for r in routes},
        "latency of /score and v2 infer (s)": {
            "p50": [histogram_quantile(samples, i, 0.5, "scoring_request_duration_seconds",
                                       scoring) for i in idx],
            "p99": [histogram_quantile(samples, i, 0.99, "scoring_request_duration_seconds",
                                       scoring) for i in idx]},
        "batch size (images per model call)": {
            "mean": [rate(samples, i, batch_sum) / rate(samples, i, batch_count)
                     if rate(samples, i, batch_count) else math.nan for i in idx],
            "p99": [histogram_quantile(samples, i, 0.99, "scoring_batch_size") for i in idx]},
        "queue depth (images waiting)": {
            "queue": [v.get("scoring_queue_depth", math.nan) for _, v in samples]},
        "errors/s": {"4xx": [rate(samples, i, by_status("4")) for i in idx],
                     "5xx": [rate(samples, i, by_status("5")) for i in idx]},
    }


def plot(samples: list[Sample], out: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = panels(samples)
    times = [t for t, _ in samples]
    fig, axes = plt.subplots(len(data), 1, figsize=(8, 2.0 * len(data)), sharex=True)
    for ax, (panel, lines) in zip(axes, data.items()):
        for name, values in lines.items():
            ax.plot(times, values, label=name, linewidth=1.2)
        ax.set_title(panel, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    clients = axes[0].twinx()
    clients.step(times, [v.get(CLIENTS, math.nan) for _, v in samples], where="post",
                 color="grey", linewidth=0.8, linestyle="--")
    clients.set_ylabel("clients (dashed)", fontsize=7)
    clients.tick_params(labelsize=7)
    clients.set_ylim(bottom=0)
    axes[-1].set_xlabel(f"seconds (rates and quantiles over {RATE_WINDOW_S:g} s windows)",
                        fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=72)
    plt.close(fig)


def write_samples(samples: list[Sample], out: Path) -> None:
    keys = sorted({k for _, values in samples for k in values})
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["t", *keys])
        for t, values in samples:
            writer.writerow([f"{t:.2f}", *(repr(values[k]) if k in values else "" for k in keys)])


def read_samples(path: Path) -> list[Sample]:
    with path.open(newline="") as f:
        rows = csv.reader(f)
        keys = next(rows)[1:]
        return [(float(row[0]), {k: float(v) for k, v in zip(keys, row[1:]) if v})
                for row in rows]


# -- the run --------------------------------------------------------------------
@contextlib.contextmanager
def demo_server(demo_dir: Path) -> Iterator[tuple[str, str, str]]:
    """The quick start's server on free ports: (url, metrics url, key)."""
    port, metrics_port = free_port(), free_port()
    env = {**os.environ, Var.METRICS_PORT: str(metrics_port), Var.LOG_LEVEL: "warning"}
    server = LocalServer(env, subprocess.DEVNULL, cwd=ROOT,
                         argv=[sys.executable, "-m", "scoring_tools.quickstart", "--port", str(port),
                               "--demo-dir", str(demo_dir)])
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            server.wait_ready(url + "/readyz", 300)
        except (RuntimeError, TimeoutError) as exc:
            raise SystemExit(f"the demo server did not come up: {exc}") from None
        key = (demo_dir / "keys" / "primary").read_text().strip()
        yield url, f"http://127.0.0.1:{metrics_port}/metrics", key
    finally:
        server.stop(graceful_s=60)


def _requests(url: str, key: str):
    """(weight, what, kwargs for requests.post): good and bad, as clients send them."""
    images = [p.read_bytes() for p in SAMPLES]
    auth = {"Authorization": f"Bearer {key}"}
    b64 = [base64.b64encode(i).decode() for i in images]
    v2 = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(b64)], "data": b64}]}
    return [
        (50, url + "/score", lambda rng: {"data": rng.choice(images), "headers": auth}),
        (15, url + "/score", lambda rng: {"json": {"instances": [{"b64": b} for b in b64]},
                                      "headers": auth}),
        (15, url + "/v2/models/demo-colours/infer", lambda rng: {"json": v2, "headers": auth}),
        (12, url + "/score", lambda rng: {"data": b"not an image", "headers": auth}),       # 400
        (5, url + "/score", lambda rng: {"data": images[0],
                                     "headers": {"Authorization": "Bearer wrong"}}),  # 401
        (3, url + "/score", lambda rng: {"data": images[0],
                                     "headers": {**auth, "Content-Type": "text/plain"}}),  # 415
    ]


def drive(url: str, metrics_url: str, key: str, seconds: float) -> list[Sample]:
    """Load for ``seconds`` in PHASES; scrape every second. Returns the scrapes."""
    mix = _requests(url, key)
    weights = [w for w, _, _ in mix]
    started = time.monotonic()
    stop = threading.Event()

    def active() -> int:
        elapsed = (time.monotonic() - started) * 60 / seconds
        return [clients for start, clients in PHASES if start <= elapsed][-1]

    def client(number: int) -> None:
        session, rng = requests.Session(), random.Random(number)
        while not stop.is_set():
            if number >= active():
                time.sleep(0.1)
                continue
            _, target, kwargs = rng.choices(mix, weights)[0]
            try:
                session.post(target, timeout=30, **kwargs(rng))
            except requests.RequestException:
                pass  # counted by the server or not at all; the plot shows what it saw

    threads = [threading.Thread(target=client, args=(n,), daemon=True)
               for n in range(max(c for _, c in PHASES))]
    for thread in threads:
        thread.start()
    samples: list[Sample] = []
    while (now := time.monotonic() - started) <= seconds + 1:
        scrape = parse_scrape(requests.get(metrics_url, timeout=5).text)
        samples.append((now, {**scrape, CLIENTS: 0 if stop.is_set() else active()}))
        time.sleep(max(0.0, len(samples) - (time.monotonic() - started)))
        if now >= seconds:
            stop.set()
    for thread in threads:
        thread.join(timeout=35)
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server (default: start the demo one)")
    parser.add_argument("--metrics-url", help="its /metrics (with --url)")
    parser.add_argument("--key", help="its Bearer key (with --url)")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--demo-dir", type=Path, default=ROOT / ".demo")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "metrics-local-run.png")
    parser.add_argument("--samples", type=Path, default=ROOT / "docs" / "metrics-local-run.csv")
    parser.add_argument("--replot", type=Path, help="plot these samples; run nothing")
    args = parser.parse_args(argv)
    if args.replot:
        samples = read_samples(args.replot)
    elif args.url:
        if not (args.metrics_url and args.key):
            parser.error("--url needs --metrics-url and --key")
        samples = drive(args.url, args.metrics_url, args.key, args.seconds)
        write_samples(samples, args.samples)
    else:
        with demo_server(args.demo_dir.resolve()) as (url, metrics_url, key):
            samples = drive(url, metrics_url, key, args.seconds)
        write_samples(samples, args.samples)
    plot(samples, args.out, "scoring service, local run under load (its own /metrics, "
                            "scraped every 1 s)")
    last = samples[-1][1]
    done: dict[str, float] = {}
    for k, v in last.items():
        if k.startswith("scoring_requests_total"):
            status = parse_key(k)[1]["status"]
            done[status] = done.get(status, 0) + v
    print(f"{len(samples)} scrapes; requests by status at the end: {done}; "
          f"wrote {args.out} and {args.samples}")


if __name__ == "__main__":
    main()
