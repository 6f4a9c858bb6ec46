"""scoring_tools/plot_local_run.py on a few scrapes made here (no server, no
load): parsing, Prometheus-style rates and quantiles, the samples file, the
PNG; and the committed run's samples are what docs/edge-operations.md says they are."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from scoring_tools import plot_local_run as plr

ROOT = Path(__file__).resolve().parents[2]


class FakeService:
    """The service's metric families, with the same names and buckets, in a
    registry of their own, so a test can write /metrics texts it knows."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("scoring_requests", "", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("scoring_request_duration_seconds", "", ["route"],
                                 buckets=(0.01, 0.1, 1.0), registry=self.registry)
        self.batch = Histogram("scoring_batch_size", "", buckets=(1, 2, 4, 8),
                               registry=self.registry)
        self.queue = Gauge("scoring_queue_depth", "", registry=self.registry)
        Counter("process_other", "not the service's", registry=self.registry).inc()

    def serve(self, route, status, seconds, count=1):
        for _ in range(count):
            self.requests.labels(route, "POST", status).inc()
            self.latency.labels(route).observe(seconds)

    def scrape(self) -> dict[str, float]:
        return plr.parse_scrape(generate_latest(self.registry).decode())


@pytest.mark.parametrize("q,expected", [(0.1, 0.04), (0.5, 0.3), (0.99, 0.5)])
def test_bucket_quantile_interpolates_as_prometheus(q, expected):
    # 10 at or below 0.1, 20 more at or below 0.5, 10 above: the +Inf bucket
    # answers its lower bound, as histogram_quantile does.
    assert plr.bucket_quantile(q, [(0.1, 10), (0.5, 30), (math.inf, 40)]) == pytest.approx(expected)


def test_rates_and_quantiles_from_real_exposition_text():
    svc = FakeService()
    samples = [(0.0, svc.scrape())]
    assert not any(k.startswith("process_") or k.endswith("_created") for k in samples[0][1])
    svc.serve("/score", "200", 0.05, count=8)          # 0.01 < x <= 0.1
    svc.serve("/score", "400", 0.005, count=2)         # <= 0.01
    svc.batch.observe(4)
    svc.batch.observe(2)
    svc.queue.set(3)
    samples.append((1.0, svc.scrape()))
    svc.serve("/v2/models/<name>/infer", "200", 0.5, count=10)   # 0.1 < x <= 1
    samples.append((2.0, svc.scrape()))

    data = plr.panels(samples)
    assert data["requests/s by route"]["/score"][1:] == [10.0, 5.0]
    assert data["requests/s by route"]["/v2/models/<name>/infer"][2] == 5.0
    assert data["errors/s"]["4xx"][1] == 2.0
    assert math.isnan(data["errors/s"]["5xx"][1])  # no such series: no data, as in Prometheus
    # 20 requests over 2 s: 2 <= 0.01, 8 in (0.01, 0.1], 10 in (0.1, 1]
    p50 = data["latency of /score and v2 infer (s)"]["p50"][2]
    assert p50 == pytest.approx(plr.bucket_quantile(0.5, [(0.01, 2), (0.1, 10), (1.0, 20),
                                                          (math.inf, 20)]))
    assert p50 == pytest.approx(0.1)
    assert data["batch size (images per model call)"]["mean"][1] == 3.0
    assert data["queue depth (images waiting)"]["queue"] == [0.0, 3.0, 3.0]
    assert all(math.isnan(v) for lines in data.values() for name, values in lines.items()
               if name != "queue" for v in values[:1])   # no window before the 2nd scrape


def test_a_restarted_server_does_not_read_as_negative_traffic():
    before, after = FakeService(), FakeService()
    before.serve("/score", "200", 0.05, count=50)
    after.serve("/score", "200", 0.05, count=4)         # counters restarted from zero
    samples = [(0.0, before.scrape()), (1.0, after.scrape())]
    assert plr.panels(samples)["requests/s by route"]["/score"][1] == 4.0


def test_samples_round_trip_and_the_plot_is_a_small_png(tmp_path):
    svc = FakeService()
    samples = []
    for t in range(4):
        svc.serve("/score", "200", 0.05, count=t + 1)
        samples.append((float(t), {**svc.scrape(), plr.CLIENTS: 2}))
    plr.write_samples(samples, tmp_path / "s.csv")
    assert plr.read_samples(tmp_path / "s.csv") == samples
    plr.plot(samples, tmp_path / "p.png", "test")
    png = (tmp_path / "p.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and 5_000 < len(png) < 200_000


def test_the_committed_run_is_a_real_minute_under_mixed_load():
    """docs/metrics-local-run.{csv,png}, which docs/edge-operations.md shows."""
    samples = plr.read_samples(ROOT / "docs" / "metrics-local-run.csv")
    assert len(samples) >= 55 and samples[-1][0] >= 59
    last = samples[-1][1]
    by_status = {}
    for key, value in last.items():
        if key.startswith("scoring_requests_total"):
            status = plr.parse_key(key)[1]["status"]
            by_status[status] = by_status.get(status, 0) + value
    assert by_status["200"] > 1000 and by_status["400"] > 0 and by_status["401"] > 0
    data = plr.panels(samples)
    assert max(v for v in data["batch size (images per model call)"]["p99"]
               if not math.isnan(v)) > 1
    assert (ROOT / "docs" / "metrics-local-run.png").stat().st_size < 200_000
