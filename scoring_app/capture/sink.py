"""The capture buffer and its background loop.

Invariants:
- ``offer`` (the request path) never blocks and never raises: it appends to a deque
  under a lock held for a few operations, or counts a drop when the bytes already held
  would pass ``Var.CAPTURE_BUFFER_BYTES``.
- Memory is bounded: the buffer's bytes, plus one block being built or uploaded
  (``Var.CAPTURE_BLOCK_BYTES``, and one record past it).
- A block that fails to upload (after the uploader's few retries) is dropped and
  counted; nothing is retried from memory, so a Blob Storage that is down costs records,
  never memory or requests.
- One block holds records of one UTC hour (its blob's partition).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from typing import Any

from .. import metrics, offload
from . import records

log = logging.getLogger(__name__)
#: Records encoded between two yields to the requests (the loop runs when they wait).
_YIELD_EVERY = 16


class _Block:
    def __init__(self, hour: int, started: float):
        self.hour, self.started = hour, started
        self.data, self.count = bytearray(), 0
        self.first = started  # the time of its first record (set as the first is added)


class Capture:
    def __init__(self, uploader: Any, *, deployment: str, model: dict[str, str], rank,
                 keep_images: bool, buffer_bytes: int, block_bytes: int, block_seconds: float,
                 clock=time.time):
        self.uploader, self.deployment, self.model, self.rank = uploader, deployment, model, rank
        self.keep_images, self.limit = keep_images, buffer_bytes
        self.block_bytes, self.block_seconds, self.clock = block_bytes, block_seconds, clock
        self._pending: collections.deque[records.Entry] = collections.deque()
        self._held = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._block: _Block | None = None
        self._thread: threading.Thread | None = None

    # -- the request path --------------------------------------------------------------
    def offer(self, entry: records.Entry) -> None:
        cost = entry.cost
        with self._lock:
            if self._stopping.is_set():
                refused = "shutdown"
            elif self._held + cost > self.limit:
                refused = "buffer_full"
            else:
                refused = None
                self._held += cost
                self._pending.append(entry)
        if refused:
            metrics.CAPTURE_DROPPED.labels(refused).inc()

    # -- the loop ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poll = min(0.25, self.block_seconds / 2)
        while not self._stopping.wait(poll):
            try:
                self._drain()
                if self._block and self.clock() - self._block.started >= self.block_seconds:
                    self._upload()
            except Exception:  # the loop outlives any one record's bug
                log.exception("capture: loop error (records in the block are dropped)")
                self._drop_block("upload_failed")

    def _take(self) -> records.Entry | None:
        with self._lock:
            if not self._pending:
                return None
            entry = self._pending.popleft()
            self._held -= entry.cost
            return entry

    def _drain(self, deadline: float | None = None) -> None:
        """Encode what is buffered into blocks, uploading each block that is full or
        whose hour is over; between records, requests that are ready run first."""
        done = 0
        while (entry := self._take()) is not None:
            if deadline is not None and time.monotonic() > deadline:
                metrics.CAPTURE_DROPPED.labels("shutdown").inc()
                continue
            line = records.encode(entry, self.deployment, self.model, self.keep_images, self.rank)
            hour = records.hour_of(entry.time)
            if self._block and (self._block.hour != hour
                                or len(self._block.data) + len(line) > self.block_bytes):
                self._upload()
            if self._block is None:
                self._block = _Block(hour, self.clock())
                self._block.first = entry.time
            self._block.data += line
            self._block.count += 1
            metrics.CAPTURE_BUFFER.set(self._held + len(self._block.data))
            done += 1
            if done % _YIELD_EVERY == 0 and deadline is None:
                offload.let_others_run()

    def _upload(self) -> None:
        block, self._block = self._block, None
        if block is None or not block.count:
            return
        name = records.blob_name(self.deployment, block.first, uuid.uuid4().hex)
        started = time.perf_counter()
        try:
            self.uploader.put(name, bytes(block.data))
        except Exception as exc:  # every failure is counted, none is raised
            metrics.CAPTURE_UPLOAD_FAILURES.inc()
            metrics.CAPTURE_DROPPED.labels("upload_failed").inc(block.count)
            log.warning("capture: %d records dropped, upload of %s failed: %s", block.count,
                        name, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        else:
            metrics.CAPTURED.inc(block.count)
        finally:
            metrics.CAPTURE_UPLOAD.observe(time.perf_counter() - started)
            metrics.CAPTURE_BUFFER.set(self._held)

    def _drop_block(self, reason: str) -> None:
        block, self._block = self._block, None
        if block is not None and block.count:
            metrics.CAPTURE_DROPPED.labels(reason).inc(block.count)

    # -- shutdown ---------------------------------------------------------------------
    def flush(self, budget_s: float) -> None:
        """Stop taking records and upload what is held, within ``budget_s`` seconds;
        what is left past it is dropped and counted (``shutdown``)."""
        deadline = time.monotonic() + budget_s
        with self._lock:
            self._stopping.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():  # an upload outlasted the budget: its block is its own
                log.warning("capture: an upload outlasted the flush budget")
                return self._drop_pending()
        self._drain(deadline)
        if time.monotonic() < deadline:
            self._upload()
        else:
            self._drop_block("shutdown")
        self.uploader.close()

    def _drop_pending(self) -> None:
        while self._take() is not None:
            metrics.CAPTURE_DROPPED.labels("shutdown").inc()
