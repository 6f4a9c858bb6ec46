"""Fake models that block on a gate, and a Batcher held on one: the set-up
the batcher's tests share (``gated`` fixture, tests/app/conftest.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

from scoring_app.batching.batcher import Batcher
from scoring_app.errors import BadImage


class Gate:
    """A fake model: records batch sizes; blocks while the gate is closed."""

    def __init__(self):
        self.open = threading.Event()
        self.open.set()
        self.calls: list[list] = []
        self.entered = threading.Event()

    def predict(self, items):
        self.calls.append(list(items))
        self.entered.set()
        self.open.wait()
        if "bad" in items:
            raise BadImage("bad item")
        return [f"scored {i}" for i in items]


class ThreadGate(Gate):
    """A Gate that also records which thread made each call (the Thread itself: an
    ended thread's ident may be reused by the next one started)."""

    def __init__(self):
        super().__init__()
        self.threads: list[threading.Thread] = []

    def predict(self, items):
        self.threads.append(threading.current_thread())
        return super().predict(items)


class GatedBatcher:
    """A started, warmed ``Batcher`` on ``gate``, and the requests sent to it
    from threads: ``hold`` one call out, ``submit`` more behind it, ``release``."""

    def __init__(self, gate: Gate, max_batch=4, batch_timeout_s=0.05, max_queue=6, sizes=None,
                 timings=None, max_calls=1, **kw: Any):
        self.gate = gate
        self.batcher = Batcher(gate.predict, max_batch, batch_timeout_s, max_queue,
                               warm_up=lambda: timings, sizes=sizes, max_calls=max_calls, **kw)
        self.results: dict[Any, Any] = {}
        self.threads: list[threading.Thread] = []
        self.batcher.start()
        assert self.batcher.ready.wait(10)

    def submit(self, items, deadline_s: float = 30, queued: int | None = None) -> list[threading.Thread]:
        """Each item a request of its own, from a thread; its result (or the
        exception it raised) lands in ``results``. With ``queued``, returns once
        that many items wait in the queue."""
        def run(item):
            try:
                self.results[item] = self.batcher.submit_many([item], time.monotonic() + deadline_s)
            except Exception as exc:  # noqa: BLE001 - recorded for the assertions
                self.results[item] = exc
        threads = [threading.Thread(target=run, args=(i,)) for i in items]
        for t in threads:
            t.start()
        self.threads += threads
        if queued is not None:
            self.wait_depth(queued)
        return threads

    def wait_depth(self, n: int, timeout: float = 10) -> None:
        end = time.monotonic() + timeout
        while self.batcher.depth < n:
            assert time.monotonic() < end, f"{self.batcher.depth} queued, never {n}"
            time.sleep(0.01)

    def hold(self, item="a") -> list[threading.Thread]:
        """Close the gate and send ``item``: returns once its model call is out."""
        self.gate.open.clear()
        threads = self.submit([item])
        assert self.gate.entered.wait(10)
        return threads

    def release(self) -> None:
        """Open the gate and wait for every request sent."""
        self.gate.open.set()
        for t in self.threads:
            t.join(10)

    def close(self) -> None:
        self.release()
        self.batcher.stop()
