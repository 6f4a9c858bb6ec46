"""The scoring service behind the protocols: model + batcher + keys + readiness.

``Service.start`` loads the model synchronously (an unsupported model stops the
worker at boot, and gunicorn then stops: a broken image never serves) and warms
it on the batcher's model thread, so ``/healthz`` answers during warm-up and
``/readyz`` turns 200 only when every batch size has run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import metrics, offload
from .batching.batcher import Batcher
from .errors import NotReady, ScoringError, Unavailable
from .http.auth import KeyStore
from .model.interface import Model, Prediction
from .model.savedmodel import ScoringModel
from .model_store.stats import read_stats
from .settings import AUTO, Config

if TYPE_CHECKING:
    from .capture.sink import Capture

log = logging.getLogger(__name__)

#: Var.MODEL_CALLS=auto, by the device the model runs on: on a CPU a second call
#: overlaps the first's one-core stretches; on a GPU a second is unmeasured
#: (docs/performance.md, model calls side by side). A model that does not say gets one.
AUTO_MODEL_CALLS = {"cpu": 2, "gpu": 1}


def model_calls(config: Config, model: Model) -> int:
    """Var.MODEL_CALLS, ``auto`` resolved for ``model`` (once it is loaded)."""
    if config.model_calls != AUTO:
        return config.model_calls
    return AUTO_MODEL_CALLS.get(model.device or "", 1)


class Service:
    """What every protocol calls: keys, readiness, the limits a request is parsed
    against, and scoring."""

    def __init__(self, config: Config, model: Model | None = None):
        self.config = config
        self.model: Model = model if model is not None else ScoringModel(config)
        self.keys = None if config.auth == "disabled" else KeyStore(config.api_keys_dir)
        self.batcher = Batcher(
            self.model.predict, config.max_batch_size, config.batch_timeout_ms / 1000,
            config.max_queue, observer=metrics.BatcherMetrics(), warm_up=self._warm_up,
            sizes=self.model.sizes,
            max_queue_wait_s=config.max_queue_wait_ms / 1000)
        self._draining = threading.Event()
        self.capture: Capture | None = None  # create_app sets it when capture is configured

    @property
    def max_images(self) -> int:
        """The most images one request may carry: as many as the queue holds, so a
        request that fits is never refused for its size alone."""
        return self.config.max_queue

    @property
    def num_classes(self) -> int | None:
        return self.model.num_classes

    def start(self) -> None:
        offload.configure(self.config.threads)
        fetched = read_stats(self.config.model_dir)  # the init container's figures, if it ran
        metrics.FETCH_SECONDS.set(fetched.seconds)
        metrics.FETCH_BYTES.set(fetched.bytes)
        metrics.MODEL_LOAD.set(self.model.load())
        self.batcher.set_max_calls(model_calls(self.config, self.model))
        self.batcher.start()
        if self.capture is not None:
            self.capture.start()

    def _warm_up(self) -> dict[int, float]:
        """Warm the model; its timings per batch size go to the batch policy."""
        try:
            metrics.WARMUP.set(self.model.warm_up())
        finally:  # a guard that refused says what it measured too
            report = self.model.precision
            if report is not None:
                metrics.precision(report)
        metrics.READY.inc()
        log.info("model warmed and timed: %s; up to %d model calls at once; ready", ", ".join(
            f"batch {size} {seconds * 1000:.1f} ms" for size, seconds in self.model.call_seconds.items()),
            self.batcher.max_calls)
        return self.model.call_seconds

    def drain(self) -> None:
        """Stop reporting ready (SIGTERM); requests are still served."""
        if not self._draining.is_set():
            self._draining.set()
            if self.batcher.ready.is_set():
                metrics.READY.dec()
            log.info("draining: /readyz now answers 503")

    def readiness(self) -> str | None:
        """None when ready, else why not."""
        if self._draining.is_set():
            return "draining"
        if self.batcher.failed is not None:
            return "warm-up failed"
        if not self.batcher.ready.is_set():
            return "loading"
        return None

    def require_ready(self) -> None:
        """The readiness probes' answer: raise ``NotReady`` (503) unless ready."""
        why = self.readiness()
        if why is not None:
            raise NotReady(why)

    def authenticate(self, authorization: str | None) -> None:
        if self.keys is not None:
            self.keys.check(authorization)

    def admit_early(self) -> None:
        """Raise the 503 a request would get for its first image, before its body is read
        and its images decoded: overload is refused at the cost of the headers alone."""
        if self.batcher.ready.is_set():
            refusal = self.batcher.refuses(1)
            if refusal is not None:
                raise refusal

    def top_classes(self, scores: np.ndarray, top_k: int) -> list[Prediction]:
        """One image's scores -> its ``top_k`` classes, best first."""
        return self.model.postprocess(scores, top_k)

    def classify(self, images: list[bytes], top_k: int, gone: Callable[[], bool] | None = None,
                 since: float | None = None) -> list[list[Prediction]]:
        """Score, then the top ``top_k`` classes: one list per image."""
        return [self.model.postprocess(row, top_k) for row in self.raw_scores(images, gone, since)]

    def raw_scores(self, images: list[bytes], gone: Callable[[], bool] | None = None,
                   since: float | None = None) -> list[np.ndarray]:
        """Preprocess in this thread, batch-predict: one scores row per image. ``gone``
        says whether the client has left (``http.disconnect.probe``): then its images are
        dropped before a model call. ``since``: when the request started
        (time.monotonic(), ``dispatch.STARTED``); the queue's time bound counts from it."""
        if not self.batcher.ready.is_set():
            raise Unavailable("the model is still loading; retry shortly", retry_after_s=5)
        deadline = time.monotonic() + self.config.request_timeout_ms / 1000
        items = []
        for index, data in enumerate(images):
            try:
                items.append(self.model.preprocess(data))
            except ScoringError as exc:
                raise exc.at(index) from None
        return self.batcher.submit_many(items, deadline, gone, since)
