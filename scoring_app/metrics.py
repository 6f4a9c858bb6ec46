"""Prometheus metrics.

Workers write them; with several gunicorn workers they use prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``gunicorn.conf.py``
before any worker starts), and the gunicorn master, which never imports
TensorFlow, serves the merged registry on ``SCORING_METRICS_PORT`` (see
``gunicorn.conf.py``; it does not import this module, so the master owns no
metric files).
Labels hold only route templates, methods and status codes, never a key.
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("scoring_requests", "HTTP requests by route template, method and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("scoring_request_duration_seconds", "HTTP request latency by route.",
                    ["route"], buckets=_LATENCY_BUCKETS)
QUEUE_DEPTH = Gauge("scoring_queue_depth", "Images waiting for the model (all workers).",
                    multiprocess_mode="livesum")
BATCH_SIZE = Histogram("scoring_batch_size", "Images per model call (before padding).",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
MODEL_CALL = Histogram("scoring_model_call_seconds", "Duration of one batched model call.",
                       buckets=_LATENCY_BUCKETS)
MODEL_LOAD = Gauge("scoring_model_load_seconds", "Time to load the SavedModel (slowest worker).",
                   multiprocess_mode="max")
WARMUP = Gauge("scoring_model_warmup_seconds", "Time to warm every batch size (slowest worker).",
               multiprocess_mode="max")
READY = Gauge("scoring_workers_ready", "Workers loaded, warmed and not draining.",
              multiprocess_mode="livesum")

FAMILIES = (REQUESTS, LATENCY, QUEUE_DEPTH, BATCH_SIZE, MODEL_CALL, MODEL_LOAD, WARMUP, READY)
#: Each family's name and help text (the README lists them), from the
#: collectors' public ``describe()``.
DOCS = {family.name: family.documentation for metric in FAMILIES for family in metric.describe()}


class BatcherMetrics:
    """The batcher's observer (``batching.batcher.Observer``), onto the families above."""

    def queue_depth(self, images: int) -> None:
        QUEUE_DEPTH.set(images)

    def batch_size(self, images: int) -> None:
        BATCH_SIZE.observe(images)

    def model_call(self, seconds: float) -> None:
        MODEL_CALL.observe(seconds)


def request_done(route: str, method: str, status: int, seconds: float) -> None:
    """One HTTP answer: counted, and its latency observed."""
    _request_counter(route, method, status).inc()
    _latency(route).observe(seconds)


# ``labels()`` validates and locks on every call; an answer's few label sets
# are looked up once (bounded: clients choose methods on unmatched routes).
@functools.lru_cache(maxsize=512)
def _request_counter(route: str, method: str, status: int):
    return REQUESTS.labels(route, method, str(status))


@functools.lru_cache(maxsize=64)
def _latency(route: str):
    return LATENCY.labels(route)
