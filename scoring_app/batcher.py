"""Dynamic batching: many request threads, one inference thread.

Request threads ``submit`` an item and wait. The inference thread takes what is
queued and calls the model once for all of it. Policy (adaptive, so a quiet
server adds no delay): take everything queued; if that is fewer than the last
batch held, the server is busy and the others are likely on their way, so wait
up to the batch timeout for the batch to refill to that size. A lone request
on a quiet server goes at once.

If a batched call fails on a bad item, the items are retried one by one, so
only the bad one gets its error.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import DeadlineExceeded, ScoringError, Unavailable

log = logging.getLogger(__name__)


class _Pending:
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: Any):
        self.item = item
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None


class Batcher:
    """Bounded queue + the one thread that calls ``predict``."""

    def __init__(self, predict: Callable[[list[Any]], Any], max_batch: int,
                 batch_timeout_s: float, max_queue: int,
                 observe: Callable[[str, float], None] = lambda name, value: None,
                 warm_up: Callable[[], None] = lambda: None):
        self._predict = predict
        self._max_batch = max_batch
        self._timeout = batch_timeout_s
        self._max_queue = max_queue
        self._observe = observe
        self._warm_up = warm_up
        self._queue: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition()
        self._last_batch = 1
        self._stopped = False
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    @property
    def depth(self) -> int:
        return len(self._queue)

    # -- request threads ---------------------------------------------------
    def submit_many(self, items: list[Any], deadline: float) -> list[Any]:
        """Queue ``items`` together and wait for all their results.

        Raises Unavailable (503) when they do not fit in the queue, and
        DeadlineExceeded (504) at ``deadline`` (time.monotonic()), after taking
        any still-queued ones back out so their slots are free again.
        """
        pending = [_Pending(item) for item in items]
        with self._cond:
            if len(self._queue) + len(pending) > self._max_queue:
                raise Unavailable("the server is busy (queue full); retry shortly")
            self._queue.extend(pending)
            self._observe("queue_depth", len(self._queue))
            self._cond.notify()
        for index, p in enumerate(pending):
            if not p.done.wait(max(0.0, deadline - time.monotonic())):
                self._withdraw(pending)
                raise DeadlineExceeded("the image was not scored before the request "
                                       "deadline; retry, or send fewer images at once")
            if p.error is not None:
                p.error.index = index
                raise p.error
        return [p.result for p in pending]

    def _withdraw(self, pending: list[_Pending]) -> None:
        with self._cond:
            for p in pending:
                try:
                    self._queue.remove(p)
                except ValueError:
                    pass  # already taken by the inference thread
            self._observe("queue_depth", len(self._queue))

    # -- inference thread --------------------------------------------------
    def _run(self) -> None:
        try:
            self._warm_up()
        except Exception as exc:  # noqa: BLE001 - reported through /readyz and the log
            log.exception("warm-up failed; this worker will never be ready")
            self.failed = exc
            return
        self.ready.set()
        while True:
            batch = self._take()
            if batch is None:
                return
            self._score(batch)

    def _take(self) -> list[_Pending] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            want = min(self._max_batch, self._last_batch)
            end = time.monotonic() + self._timeout
            while len(self._queue) < want and not self._stopped:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = [self._queue.popleft()
                     for _ in range(min(self._max_batch, len(self._queue)))]
            self._observe("queue_depth", len(self._queue))
        self._last_batch = max(1, len(batch))
        return batch

    def _score(self, batch: list[_Pending]) -> None:
        self._observe("batch_size", len(batch))
        started = time.perf_counter()
        try:
            results = self._predict([p.item for p in batch])
        except ScoringError as exc:
            if len(batch) == 1:
                self._finish(batch[0], error=exc)
            else:  # find the bad item(s): only they get the error
                for p in batch:
                    self._score([p])
            return
        except Exception as exc:  # noqa: BLE001 - a worker must survive any input
            log.exception("model call failed")
            for p in batch:
                self._finish(p, error=ScoringError("the model failed on this request"))
            return
        finally:
            self._observe("model_call_seconds", time.perf_counter() - started)
        for p, result in zip(batch, results):
            self._finish(p, result=result)

    @staticmethod
    def _finish(p: _Pending, result: Any = None, error: BaseException | None = None) -> None:
        p.result, p.error = result, error
        p.done.set()
