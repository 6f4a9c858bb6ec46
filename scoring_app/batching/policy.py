"""The batch policy: pure arithmetic on the model's timings, no threads.

How many queued items the next model call takes, how long to wait for them,
and how long a new request would wait in the queue (admission by time). The
threaded ``batcher.Batcher`` asks; this module decides, so every rule is
tested with plain numbers (tests/app/test_batch_policy.py).
"""

from __future__ import annotations

import math

# Waiting for a batch to fill may cost at most this share of the call it fills:
# a bound on what batching can take from throughput and add to latency.
WAIT_FRACTION = 0.1
# Weight of each observed model call in the running estimate of its batch
# size's call time: a few calls correct a warm-up timing that a busy machine
# disturbed, or images that decode slower than the warm-up's.
OBSERVED_WEIGHT = 0.5
# With every served call, each *other* batch size's estimate moves this share of
# the way back to its warm-up timing. One slow moment (a busy machine, a stalled
# thread) can make a size look slow and the target move away from it; then that
# size is never served, so never re-timed, and the worse target would stay for
# good. Recalled, the size gets tried again, and stays only if it is fast.
RECALL_WEIGHT = 0.1
# Batch sizes within this share of the best images/s count as equally fast,
# and the smallest of them is the target: the model does the same work, and a
# batch smaller than the requests in flight lets their answers and the next
# arrivals overlap the next call instead of leaving the model idle.
NEAR_TIE = 0.1
# ...but only while the fastest size's call is shorter than this. Turning a
# batch around (answers out, the next requests read) costs the event loop a
# fraction of a millisecond a request: a few % of a call this long, so the
# overlap is worth less than the fastest size's extra images/s; short calls
# gain more from the overlap than from the bigger batch (docs/performance.md:
# "Long calls target the fastest batch size").
LONG_CALL_S = 0.05
# With several model calls out at once (``calls``) the next call overlaps a batch's
# turnaround already, and the near tie goes the other way: its largest size is the
# target. Warm-up times each size alone; what two calls side by side cost per call
# (the hand-offs, the turnaround, the calls' contention) it does not show, and a
# bigger batch pays it for more images: on a CPU whose images/s alone is nearly flat
# from 4 to 16, targets of 2, 4, 8 and 16 served more requests a second in that order
# (docs/performance.md, "An AMD VM").


class BatchPolicy:
    """How many queued items the next model call takes, and how long to wait for them.

    ``calibrate`` gives it the model's seconds per call at each batch size
    (timed at warm-up); ``observe`` keeps them current with every call served.
    From those:

    - the *target* is the smallest batch size within ``NEAR_TIE`` of the most
      images/s (the largest, when several calls may be out at once: ``calls``),
      or, when that fastest size's call is long (``LONG_CALL_S``), the fastest
      size itself;
    - a lone request on a quiet server goes at once: the thread expects as many
      items as the last call took (a busy closed loop of clients sends them
      back), which is 1 when quiet, and 1 again after it sat idle longer than
      it would have waited;
    - items already waiting when a call ends mean arrivals outpace the model:
      then it gathers a full target batch (without this, 8 clients of a slow
      model settle into two half batches, each sent while the other is out);
    - it waits for them at most ``WAIT_FRACTION`` of the model's time for that
      batch, and never longer than ``max_wait_s`` (Var.BATCH_TIMEOUT_MS):
      a slow model (ResNet50 on a CPU, half a second a batch) gets the time a
      busy server needs to hand it a full batch, where a fixed few milliseconds
      would keep its batches small; a fast one waits a few milliseconds at most;
    - once enough are queued it takes up to the target, and when the count is
      not a batch size either pads it up or leaves the extra items for the next
      call, whichever gives more images/s (on a CPU padding wastes compute; on
      a GPU a bigger batch costs almost nothing more);
    - a wait that runs out takes everything queued: the server is not saturated,
      so latency matters more than the padding.

    Uncalibrated (a stand-in model), every size up to the largest is taken as
    it is and waits are ``max_wait_s``.
    """

    def __init__(self, sizes: list[int], max_wait_s: float):
        self.sizes = sorted(sizes)
        self.max_wait_s = max_wait_s
        self.call_s: dict[int, float] = {}
        self.calibrated: dict[int, float] = {}
        self.target = self.sizes[-1]
        self.last = 1
        self.calls = 1  # model calls that may be out at once (the batcher's max_calls)

    def calibrate(self, call_s: dict[int, float]) -> None:
        """Seconds per model call at each batch size; picks the target."""
        self.call_s = {size: call_s[size] for size in self.sizes if call_s.get(size, 0) > 0}
        self.calibrated = dict(self.call_s)
        self._pick_target()

    def observe(self, n: int, seconds: float) -> None:
        """A served call of ``n`` items took ``seconds``: update its batch size's
        estimate, and recall the others toward their warm-up timings."""
        size = self.bucket(n)
        if size in self.call_s:
            for other, warm in self.calibrated.items():
                if other != size:
                    self.call_s[other] += RECALL_WEIGHT * (warm - self.call_s[other])
            self.call_s[size] += OBSERVED_WEIGHT * (seconds - self.call_s[size])
            self._pick_target()

    def _pick_target(self) -> None:
        if self.call_s:
            fastest = max(self.call_s, key=lambda size: self._rate(size, size))
            if self.call_s[fastest] >= LONG_CALL_S:
                self.target = fastest
                return
            floor = (1 - NEAR_TIE) * self._rate(fastest, fastest)
            near = [size for size in self.call_s if self._rate(size, size) >= floor]
            self.target = min(near) if self.calls == 1 else max(near)

    def predicted_wait_s(self, queued: int, n: int, busy_s: float, calls: int = 1) -> float | None:
        """How long the last of ``n`` new items would wait in the queue before
        its model call starts, behind ``queued`` items, while the calls out
        have ``busy_s`` seconds left and up to ``calls`` may be out at once;
        None while uncalibrated (no timing to predict from).

        Batches of the target size are assumed, each taking the current
        estimate of its call (warm-up's timing until served calls correct it:
        ``observe``), and the calls out to end in ``busy_s``."""
        call = self.call_s.get(self.target)
        if call is None:
            return None
        ahead = math.ceil((queued + n) / self.target) - 1  # batches before the last item's
        return busy_s + ahead * call / calls

    def call_estimate_s(self, n: int) -> float:
        """The current estimate of a call of ``n`` items (0 when uncalibrated)."""
        return self.call_s.get(self.bucket(min(n, self.sizes[-1])), 0.0)

    def bucket(self, n: int) -> int:
        """The batch size ``n`` items are padded to."""
        return next(size for size in self.sizes if size >= n)

    def _rate(self, items: int, size: int) -> float:
        return items / self.call_s[size]

    def want(self, backlog: bool, idle_s: float) -> int:
        """How many items to wait for: ``backlog`` when some were already
        queued as the last call ended, else after ``idle_s`` seconds idle."""
        if backlog:
            return self.target
        if idle_s > self.wait_s(self.last):
            self.last = 1
        return min(self.target, self.last)

    def wait_s(self, n: int) -> float:
        """The longest wait for ``n`` items."""
        call = self.call_s.get(self.bucket(min(n, self.sizes[-1])))
        return self.max_wait_s if call is None else min(self.max_wait_s, WAIT_FRACTION * call)

    def take(self, queued: int, want: int) -> int:
        """How many of ``queued`` items the call takes (``want`` as asked)."""
        if queued < want:  # the wait ran out
            n = min(queued, self.sizes[-1])
        else:
            n = min(queued, self.target)
            down = max(size for size in self.sizes if size <= n)
            if down != n and self.call_s and self._rate(down, down) > self._rate(n, self.bucket(n)):
                n = down
        self.last = n
        return n
