"""Prometheus metrics.

Workers write them; with several gunicorn workers they use prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by ``gunicorn.conf.py``
before any worker starts), and the gunicorn master, which never imports
TensorFlow, serves the merged registry on ``Var.METRICS_PORT`` (see
``gunicorn.conf.py``; it does not import this module, so the master owns no
metric files).
Labels hold only route templates, methods and status codes, never a key.
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Gauge, Histogram

from .contract import Var

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                    1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter("scoring_requests", "HTTP requests by route template, method and status.",
                   ["route", "method", "status"])
LATENCY = Histogram("scoring_request_duration_seconds",
                    "HTTP request latency by route and status class (2xx served, 4xx refused for "
                    "the request, 5xx refused for the server), from the request's headers read "
                    "to its answer.", ["route", "status_class"], buckets=_LATENCY_BUCKETS)
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
FETCH_SECONDS = Gauge("scoring_model_fetch_seconds",
                      "Time the init container took to download and verify the model (0: baked in).",
                      multiprocess_mode="max")
FETCH_BYTES = Gauge("scoring_model_fetch_bytes", "Bytes the init container downloaded and verified.",
                    multiprocess_mode="max")
ABANDONED = Counter("scoring_abandoned_images", "Images dropped before a model call because "
                    "their client had closed its connection (nobody would read the answer).")
READY = Gauge("scoring_workers_ready", "Workers loaded, warmed and not draining.",
              multiprocess_mode="livesum")

PRECISION = Gauge("scoring_precision_info",
                  f"1 for the precision each worker serves in: requested ({Var.PRECISION}), "
                  "served (fp32, bf16 or fp16) and why.",
                  ["requested", "served", "reason"], multiprocess_mode="max")
TOP1_AGREEMENT = Gauge("scoring_precision_top1_agreement",
                       "Fraction of validation images with the same best class in mixed as in fp32, "
                       "measured at warm-up, by the precision then served (lowest worker; absent "
                       f"unless {Var.PRECISION}=mixed met a device that supports it).",
                       ["served"], multiprocess_mode="min")
MAX_DEVIATION = Gauge("scoring_precision_max_deviation",
                      "Largest absolute change in a score, mixed against fp32, on the validation "
                      "images at warm-up, by the precision then served (highest worker; absent "
                      f"unless {Var.PRECISION}=mixed met a device that supports it).",
                      ["served"], multiprocess_mode="max")

# Payload capture (scoring_app/capture/): what reached Blob Storage, and what did not.
CAPTURED = Counter("scoring_capture_records", "Sampled requests written to Blob Storage.")
CAPTURE_DROPPED = Counter("scoring_capture_dropped_records",
                          "Sampled requests not written, by reason: buffer_full, upload_failed, "
                          "shutdown (the request itself was served).", ["reason"])
CAPTURE_UPLOAD_FAILURES = Counter("scoring_capture_upload_failures",
                                  "Capture blobs whose upload failed after retries.")
CAPTURE_UPLOAD = Histogram("scoring_capture_upload_seconds", "Duration of one capture blob upload.",
                           buckets=_LATENCY_BUCKETS)
CAPTURE_BUFFER = Gauge("scoring_capture_buffer_bytes",
                       "Bytes of captured requests waiting for upload (all workers).",
                       multiprocess_mode="livesum")

FAMILIES = (REQUESTS, LATENCY, QUEUE_DEPTH, BATCH_SIZE, MODEL_CALL, MODEL_LOAD, WARMUP,
            FETCH_SECONDS, FETCH_BYTES, ABANDONED, READY, PRECISION, TOP1_AGREEMENT, MAX_DEVIATION,
            CAPTURED, CAPTURE_DROPPED, CAPTURE_UPLOAD_FAILURES, CAPTURE_UPLOAD, CAPTURE_BUFFER)
#: Each family's name and help text (docs/service.md lists them), from the
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

    def abandoned(self, images: int) -> None:
        ABANDONED.inc(images)


def precision(report) -> None:
    """What warm-up chose (``model.precision.Report``) and what the guard measured."""
    PRECISION.labels(report.requested, report.served, report.reason).set(1)
    if report.agreement is not None:
        TOP1_AGREEMENT.labels(report.served).set(report.agreement.top1_agreement)
        MAX_DEVIATION.labels(report.served).set(report.agreement.max_deviation)


def request_done(route: str, method: str, status: int, seconds: float) -> None:
    """One HTTP answer: counted, and its latency observed."""
    _request_counter(route, method, status).inc()
    _latency(route, status // 100).observe(seconds)


# ``labels()`` validates and locks on every call; an answer's few label sets
# are looked up once (bounded: clients choose methods on unmatched routes).
@functools.lru_cache(maxsize=512)
def _request_counter(route: str, method: str, status: int):
    return REQUESTS.labels(route, method, str(status))


@functools.lru_cache(maxsize=64)
def _latency(route: str, hundreds: int):
    return LATENCY.labels(route, f"{hundreds}xx")
