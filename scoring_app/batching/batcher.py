"""Dynamic batching: many requests, one inference loop.

Requests ``submit`` items and wait. The inference loop calls the model
once for several queued items; ``BatchPolicy`` decides how many, and how long
to wait for them, from the model's own speed (each batch size is timed at
warm-up). A lone request on a quiet server goes at once, and calls the model
itself (``submit_many``).

If a batched call fails on a bad item, the items are retried one by one, so
only the bad one gets its error.

A request may come with a check that says whether its client has gone
(``http.disconnect.probe``). An item whose client has gone is dropped as it
leaves the queue, before it goes into a model call: under overload the queue
fills with the images of clients that gave up, and scoring them would spend
the model on answers nobody reads.

The queue is served oldest first while it drains, and newest first while it
stands (adaptive LIFO, with a CoDel-like switch: its oldest item has waited
longer than ``STANDING_CALLS`` calls and ``STANDING_MIN_S``; back to oldest
first once its oldest has waited less, as CoDel leaves its dropping state once
the sojourn time falls below its target: the queue drained, or its old items
were served or left).
In a standing queue served in order every item waits about as long as the
queue is, so a client that gives up sooner leaves while its image is in the
model call, which no look before the call can see; newest first, a fresh
image is answered within a call or two, and the old ones wait, swept for
clients that have gone (``SWEEP_S``). An old item whose client is still
there is not starved: once it has waited ``FIRST_AFTER_STANDING`` times the
standing threshold, or half of its allowance if sooner (half of the time to
its deadline, and at most half of ``max_queue_wait_s``), it goes first
again, oldest first. No item goes into a model call later than
``max_queue_wait_s`` after its request started (when the model's timings are
known, as for admission), whatever the prediction said when it was admitted
(a model call that stalls, an event loop too busy to read bodies and hand the
model its batches): past it the item gets a 503 + Retry-After instead of a
late answer. The bound counts from the request's start, so the time its body
and decode took under load is inside it; an item whose request used up the
bound before it was queued (a slow upload) still gets its turn for
``STANDING_CALLS`` calls' time.

One model call is out at a time unless ``max_calls`` is above 1
(Var.MODEL_CALLS; ``auto``, its default, gives 2 when the model runs on a
CPU and 1 on a GPU, where TensorFlow's promise that a signature may be called
from several threads at once is unchecked). Then further calls go out, each on a
native thread of its own, but only while a full target batch waits behind
the calls already out: fewer requests in flight never split into smaller
batches. On a CPU the stretches of a call that keep one core busy (a batch's
image decodes in the graph) then overlap the next call (docs/performance.md).

Requests and the loop are threads, or greenlets under gunicorn's gevent worker
(``threading`` is patched there); either way warm-up and every batched model
call run on one of the batcher's own ``offload.NativeThread``s, never on the
event loop. Only a quiet server's lone request calls the model where it is.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from .. import offload
from ..errors import ClientClosed, DeadlineExceeded, ScoringError, Unavailable
from .policy import BatchPolicy

log = logging.getLogger(__name__)

# A quiet server's lone request calls the model on the event loop's own thread
# (``Batcher._solo``) only if a call of one item takes at most this long: the
# loop, and every other connection's probes and answers, wait for that call.
SOLO_MAX_S = 0.02
# The queue stands (and is served newest first) once its oldest item has waited
# longer than this many calls of a target batch, each with its fill wait: had
# the queue drained, that item would have been in the next call...
STANDING_CALLS = 2
# ...and longer than this. Newest first is for waits that near a client's patience, and
# no client gives up this soon; a closed loop of clients of a fast model, never
# overloaded, keeps its oldest item waiting a few calls all the time, and served newest
# first its old items sit out whole calls, the batches behind them go short, and it
# loses throughput and doubles its p99 (docs/performance.md).
STANDING_MIN_S = 0.1
# In a standing queue, every item's connection is looked at (``gone``) at most this
# often: one non-blocking recv each, on the inference loop, while it holds the lock.
SWEEP_S = 0.1
# In a standing queue an item goes first again once it has waited this many times as
# long as the queue takes to count as standing (or half its allowance, if sooner).
# Newest first only reorders a window of a few calls: a client that waits that long is
# served, and one that gives up sooner has gone before its image is taken, instead of
# leaving during its call. Without the cap a saturated closed loop of patient clients
# (every queue of more than one target batch stands) left its oldest requests waiting
# half the time bound, which became its p99.
FIRST_AFTER_STANDING = 4


class Observer(Protocol):
    """What the batcher reports (``metrics.BatcherMetrics`` records it)."""

    def queue_depth(self, images: int) -> None: ...
    def batch_size(self, images: int) -> None: ...
    def model_call(self, seconds: float) -> None: ...
    def abandoned(self, images: int) -> None: ...


class _Unobserved:
    def queue_depth(self, images: int) -> None:
        pass

    def batch_size(self, images: int) -> None:
        pass

    def model_call(self, seconds: float) -> None:
        pass

    def abandoned(self, images: int) -> None:
        pass


_UNOBSERVED = _Unobserved()  # stateless, so one is shared as the default



class _Call:
    """A model call of ``n`` items that is out since ``started``
    (time.monotonic()); ``alone`` until another call overlaps it."""
    __slots__ = ("alone", "thread", "n", "started")

    def __init__(self, alone: bool, thread: offload.NativeThread | None, n: int):
        self.alone = alone
        self.thread = thread
        self.n = n
        self.started = time.monotonic()


class _Pending:
    __slots__ = ("item", "done", "result", "error", "gone", "queued", "first_at", "since", "late_at")

    def __init__(self, item: Any, gone: Callable[[], bool] | None = None,
                 queued: float = 0.0, first_at: float = 0.0,
                 since: float = 0.0, late_at: float = math.inf):
        self.item = item
        self.done = threading.Event()
        self.result = None
        self.error: ScoringError | None = None
        self.gone = gone  # True once nobody waits for the answer (None: never asked)
        self.queued = queued  # time.monotonic() when it was queued
        self.first_at = first_at  # from then on a standing queue serves it first
        self.since = since  # time.monotonic() when its request started
        self.late_at = late_at  # past this it gets a 503, not a model call (the time bound)


class Batcher:
    """Bounded queue + the inference loop that hands batches to ``predict``."""

    def __init__(self, predict: Callable[[list[Any]], Any], max_batch: int,
                 batch_timeout_s: float, max_queue: int,
                 observer: Observer = _UNOBSERVED,
                 warm_up: Callable[[], dict[int, float] | None] = lambda: None,
                 sizes: list[int] | None = None, max_calls: int = 1,
                 max_queue_wait_s: float = 0.0):
        """``sizes``: the batch sizes the model pads to (default: every size up
        to ``max_batch``). ``warm_up`` runs on a model thread before the loop
        serves and may return seconds per call by batch size, for the policy.
        ``max_calls``: model calls that may be out at once (Var.MODEL_CALLS).
        ``max_queue``: images queued at most (Var.MAX_QUEUE);
        ``max_queue_wait_s``: the longest time from a request's start to its
        images' model call, predicted at admission and held in the queue
        (Var.MAX_QUEUE_WAIT_MS; 0: none)."""
        self._predict = predict
        self.policy = BatchPolicy(sizes or list(range(1, max_batch + 1)), batch_timeout_s)
        self._max_queue = max_queue
        self._max_queue_wait_s = max_queue_wait_s
        self._observer = observer
        self._warm_up = warm_up
        self._queue: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._out: list[_Call] = []  # model calls out: batches, or a lone request's own
        self._looking = False  # a lone request is letting the others run first
        self._last_end = time.monotonic()  # when the last model call ended
        self._backlog = False  # items were queued when the last batched call ended
        self._next_sweep = 0.0  # when a standing queue is next swept for clients gone
        self._abandoned = 0  # items whose clients had gone, in the take in progress
        self.ready = threading.Event()
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.set_max_calls(max_calls)

    @property
    def max_calls(self) -> int:
        return self._max_calls

    def set_max_calls(self, max_calls: int) -> None:
        """Before ``start``: how many model calls may be out at once (the service
        knows only once the model is loaded: Var.MODEL_CALLS=auto)."""
        if self._thread.is_alive():
            raise RuntimeError("the batcher is already running")
        self._max_calls = self.policy.calls = max_calls
        self._free = [offload.NativeThread() for _ in range(max_calls)]  # model threads not in a call

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

    # -- requests (threads or greenlets) -----------------------------------
    def submit_many(self, items: list[Any], deadline: float,
                    gone: Callable[[], bool] | None = None,
                    since: float | None = None) -> list[Any]:
        """Queue ``items`` together and wait for all their results.

        Raises Unavailable (503) at once when they do not fit in the queue, or
        when the last of them is predicted to wait longer than
        ``max_queue_wait_s`` (``_admit``); and DeadlineExceeded (504) at
        ``deadline`` (time.monotonic()), after taking any still-queued ones
        back out so their slots are free again.

        A lone item on a quiet server calls the model itself (``_solo``).
        ``gone``: says whether the client has left; its items are then dropped
        before a model call (ClientClosed) instead of scored. ``since``: when
        the request started (time.monotonic(); default now), where the time
        bound counts from.
        """
        solo = self._claim_solo() if len(items) == 1 else None
        if solo is not None:
            return [self._solo(items[0], solo)]
        now = time.monotonic()
        since = now if since is None else min(since, now)
        in_queue_s = self._queue_allowance_s(now - since)
        allowance = min(max(0.0, deadline - now), in_queue_s)
        first_at = now + min(allowance / 2, self._first_after_s())
        pending = [_Pending(item, gone, now, first_at, since, now + in_queue_s) for item in items]
        with self._cond:
            self._admit(len(pending), in_queue_s)
            self._queue.extend(pending)
            self._observer.queue_depth(len(self._queue))
            self._cond.notify()
        for index, p in enumerate(pending):
            if not p.done.wait(max(0.0, deadline - time.monotonic())):
                self._withdraw(pending)
                raise DeadlineExceeded("the image was not scored before the request "
                                       "deadline; retry, or send fewer images at once")
            if p.error is not None:
                raise p.error.at(index)
        return [p.result for p in pending]

    def refuses(self, n: int = 1) -> Unavailable | None:
        """The 503 that ``n`` items would get now, or None: asked before a request's body
        is read and decoded, so a refusal under overload costs no decode (the request
        is refused again, or admitted, when it is submitted)."""
        with self._cond:
            try:
                self._admit(n, self._queue_allowance_s(0.0))
            except Unavailable as exc:
                return exc
        return None

    def _queue_allowance_s(self, spent: float) -> float:
        """How long the items of a request that started ``spent`` seconds ago may wait in
        the queue: what is left of ``max_queue_wait_s``, but at least the standing
        threshold (within the bound), so that a body slow to arrive still gets its turn;
        inf without a time bound."""
        bound = self._max_queue_wait_s
        if not bound:
            return math.inf
        if spent <= 0:  # nothing used yet (every ``refuses``): the floor cannot matter
            return bound - spent
        return max(bound - spent, min(bound, self._standing_s()))

    def _admit(self, n: int, in_queue_s: float) -> None:
        """Refuse ``n`` new items (503) when they do not fit in the queue, or when the
        policy predicts the last of them would wait longer than ``in_queue_s``, their
        request's ``_queue_allowance_s`` (the caller holds ``_cond``). The count bound is
        the backstop: it holds while the policy is uncalibrated, too."""
        queued = len(self._queue)
        if queued + n > self._max_queue:
            raise Unavailable("the server is busy (queue full); retry shortly")
        if not self._max_queue_wait_s:
            return
        now = time.monotonic()
        busy_s = 0.0
        if len(self._out) >= self._max_calls:  # the next call waits for one of these to end
            ends = min(call.started + self.policy.call_estimate_s(call.n) for call in self._out)
            busy_s = max(0.0, ends - now)
        wait_s = self.policy.predicted_wait_s(queued, n, busy_s, self._max_calls)
        if wait_s is not None and wait_s > in_queue_s:
            raise Unavailable(f"the server is busy (a wait of about {wait_s:.1f} s in the "
                              "queue); retry shortly", retry_after_s=max(1, math.ceil(wait_s)))

    # -- a quiet server's lone request --------------------------------------
    def _quiet(self) -> bool:
        """Nothing queued, no call out, no other request about to go alone, a
        call of one item is known to be short (``SOLO_MAX_S``), and the last
        call took one item. After a batch, the next lone request goes
        through the queue: with several clients, the rest of them are on their
        way, and are read while the model thread works instead of after a call
        that holds the loop (letting any lone request go alone cost a tiny
        model's 8 clients throughput: docs/performance.md)."""
        one_s = self.policy.call_s.get(self.policy.sizes[0], 0.0)
        return (not self._queue and not self._out and not self._looking
                and self.ready.is_set() and self.policy.last == 1 and 0 < one_s <= SOLO_MAX_S)

    def _claim_solo(self) -> _Call | None:
        """The call a lone item may make itself now, if it may. First the requests
        that have already arrived get to run (on gevent they may not even have
        been read yet); meanwhile they queue, and then this one joins them."""
        with self._cond:
            if not self._quiet():
                return None
            self._looking = True
        try:
            offload.let_others_run()
        finally:
            with self._cond:
                self._looking = False
                call = self._start_call(on_thread=False, n=1) if self._quiet() else None
        return call

    def _solo(self, item: Any, call: _Call) -> Any:
        """One item's model call, made by its own request: on gevent, on the event
        loop's thread, which waits for it. The server is quiet, so the loop has
        nothing else to do meanwhile, and the two hand-offs a batched call takes
        (to the model's thread and back to the loop) are what a quiet request
        would pay for batching. Requests that arrive meanwhile wait until this
        call ends (at most ``SOLO_MAX_S`` for a healthy model), then queue.

        The request's deadline cannot cut this call short: a model that hangs
        here holds the whole worker, so its liveness probe fails and it is
        restarted (a hang on the model's thread would leave it up, answering
        504s for good)."""
        p = _Pending(item)
        try:
            self._score_batch([p], call)
        finally:
            self._release(call)
        if p.error is not None:
            raise p.error.at(0)
        return p.result

    def _withdraw(self, pending: list[_Pending]) -> None:
        with self._cond:
            for p in pending:
                try:
                    self._queue.remove(p)
                except ValueError:
                    pass  # already taken by the inference loop
            self._observer.queue_depth(len(self._queue))

    # -- inference loop ----------------------------------------------------
    def _run(self) -> None:
        try:
            timings = self._free[0].call(self._warm_up)
        except Exception as exc:  # noqa: BLE001 - reported through /readyz and the log
            log.exception("warm-up failed; this worker will never be ready")
            self.failed = exc
            return
        self.policy.calibrate(timings or {})
        self.ready.set()
        while True:
            taken = self._take()
            if taken is None:
                return
            batch, call = taken
            if call is None:
                continue
            if self._max_calls == 1:  # the loop has nothing to do until this call ends
                self._score(batch, call)
            else:
                threading.Thread(target=self._score, args=(batch, call), name="model-call", daemon=True).start()

    def _may_call(self) -> bool:
        """Whether the loop may start a call now: something is queued and no call
        is out, or a full target batch is queued and a model thread is free."""
        if not self._out:
            return bool(self._queue)
        return len(self._out) < self._max_calls and len(self._queue) >= self.policy.target

    def _take(self) -> tuple[list[_Pending], _Call | None] | None:
        with self._cond:
            while not self._may_call() and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            if self._out:  # beside a call that is out: a full target batch is queued
                want = self.policy.target
            else:
                want = self.policy.want(self._backlog, time.monotonic() - self._last_end)
            end = time.monotonic() + self.policy.wait_s(want)
            while len(self._queue) < want and not self._stopped:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = self._take_items(self.policy.take(len(self._queue), want))
            self._observer.queue_depth(len(self._queue))
            if not batch:  # every one's client had gone: nothing to call the model for
                return [], None
            call = self._start_call(on_thread=True, n=len(batch))
        return batch, call

    def _take_items(self, n: int) -> list[_Pending]:
        """Up to ``n`` items for the next call (the caller holds ``_cond``): oldest first
        while the queue drains; once it stands, those whose turn has come first
        (``first_at``), oldest first, then the newest. Items whose clients have gone are
        finished with ClientClosed and counted, items past their time bound
        (``late_at``) with a 503: neither reaches the model (``_callable``)."""
        now = time.monotonic()
        queue = self._queue
        # Whether the queue stands (served newest first), decided afresh at each take
        # from the oldest item's wait, so nothing to keep between takes. A closed loop of
        # more clients than a call takes never empties its queue, though it is not
        # overloaded: one slow moment that stood it would otherwise keep it newest
        # first for good, a few clients at a time waiting ``FIRST_AFTER_STANDING``
        # thresholds while the others go round.
        standing = bool(queue) and now - queue[0].queued > self._standing_s()
        batch: list[_Pending] = []
        self._abandoned = 0
        timed = bool(self._max_queue_wait_s and self.policy.call_s)  # as admission's
        while queue and timed and now > queue[0].late_at:  # free the oldest slots first
            self._callable(queue.popleft(), now, timed)
        if standing and now >= self._next_sweep:
            self._next_sweep = now + SWEEP_S
            self._queue = queue = collections.deque(p for p in queue if self._callable(p, now, timed))
        while queue and len(batch) < n and (not standing or queue[0].first_at <= now):
            p = queue.popleft()
            if self._callable(p, now, timed):
                batch.append(p)
        while queue and len(batch) < n:  # standing: the newest next
            p = queue.pop()
            if self._callable(p, now, timed):
                batch.append(p)
        if self._abandoned:
            self._observer.abandoned(self._abandoned)
        return batch

    def _standing_s(self) -> float:
        """How long the oldest item may have waited before the queue counts as standing."""
        target = self.policy.target
        calls_s = STANDING_CALLS * (self.policy.call_estimate_s(target) + self.policy.wait_s(target))
        return max(STANDING_MIN_S, calls_s)

    def _first_after_s(self) -> float:
        """How long an item waits in a standing queue before it goes first again (at most)."""
        return FIRST_AFTER_STANDING * self._standing_s()

    def _callable(self, p: _Pending, now: float, timed: bool) -> bool:
        """Whether ``p`` may go into a model call. Not when its client has gone: then it
        is finished with ClientClosed and counted in ``_abandoned``; nor, ``timed``, when
        it is past its time bound: then it gets a 503."""
        if p.gone is not None and p.gone():
            self._finish(p, error=ClientClosed("the client closed its connection before "
                                               "the image was scored"))
            self._abandoned += 1
            return False
        if timed and now > p.late_at:
            self._finish(p, error=Unavailable(
                f"the server is busy (the image's request started {now - p.since:.1f} s ago, "
                f"{now - p.queued:.1f} s of it in the queue, past its bound of "
                f"{self._max_queue_wait_s:.1f} s); retry shortly",
                retry_after_s=max(1, math.ceil(self._max_queue_wait_s))))
            return False
        return True

    def _start_call(self, on_thread: bool, n: int) -> _Call:
        """Mark a call of ``n`` items out (the caller holds ``_cond``), on a free
        model thread or on the caller's own. Calls it overlaps, and it, no
        longer run alone."""
        for other in self._out:
            other.alone = False
        call = _Call(not self._out, self._free.pop() if on_thread else None, n)
        self._out.append(call)
        return call



    def _score(self, batch: list[_Pending], call: _Call) -> None:
        try:
            self._score_batch(batch, call)
        finally:
            self._release(call)

    def _release(self, call: _Call) -> None:
        """The model call is over: its thread is free for the next one. The
        inference loop waits for a queue and a free model: it is woken only if
        something queued meanwhile (a quiet server's lone request would
        otherwise wake it, on every request, to find nothing to do)."""
        with self._cond:
            self._out.remove(call)
            if call.thread is not None:  # a batch: lone requests do not count as backlog
                self._free.append(call.thread)
                self._backlog = bool(self._queue)
            self._last_end = time.monotonic()
            if self._queue:
                self._cond.notify()

    def _score_batch(self, batch: list[_Pending], call: _Call) -> None:
        """One model call for ``batch`` (on ``call``'s model thread, or here when it
        has none), each item finished with its result or its error."""
        self._observer.batch_size(len(batch))
        started = time.perf_counter()
        items = [p.item for p in batch]
        try:
            if call.thread is None:
                results, elapsed = self._timed_predict(items)
            else:
                results, elapsed = call.thread.call(self._timed_predict, items)
        except ScoringError as exc:
            self._observer.model_call(time.perf_counter() - started)
            if len(batch) == 1:
                self._finish(batch[0], error=exc)
            else:  # find the bad item(s): only they get the error
                for p in batch:
                    self._score_batch([p], call)
            return
        except Exception:  # noqa: BLE001 - a worker must survive any input
            self._observer.model_call(time.perf_counter() - started)
            log.exception("model call failed")
            for p in batch:
                self._finish(p, error=ScoringError("the model failed on this request"))
            return
        self._observer.model_call(elapsed)
        if call.alone:  # calls side by side share the CPUs: neither's time is its batch size's own
            self.policy.observe(len(batch), elapsed)

        for p, result in zip(batch, results):
            self._finish(p, result=result)

    def _timed_predict(self, items: list[Any]) -> tuple[Any, float]:
        """``predict`` and its own duration, timed on the model's thread: timed from the
        inference loop, a busy event loop's delay in resuming it would count as model time,
        and the policy would take a slow moment of the loop for a slow batch size (it
        then keeps away from that size)."""
        started = time.perf_counter()
        results = self._predict(items)
        return results, time.perf_counter() - started

    @staticmethod
    def _finish(p: _Pending, result: Any = None, error: ScoringError | None = None) -> None:
        p.result, p.error = result, error
        p.done.set()
