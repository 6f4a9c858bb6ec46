"""batching/batcher: the queue and the inference loop, with fake models that
block on a gate (``gated``: tests/app/conftest.py, tests/app/gates.py)."""

from __future__ import annotations

import threading
import time

import pytest

from scoring_app import service, settings
from scoring_app.batching.batcher import SOLO_MAX_S, Batcher
from scoring_app.errors import BadImage, DeadlineExceeded, Unavailable
from tests.app.gates import ThreadGate

FAST = {1: 0.001, 2: 0.001, 3: 0.001, 4: 0.001}  # per call, by batch size: under SOLO_MAX_S


def test_lone_request_on_quiet_server_is_sent_without_waiting(gated):
    held = gated(batch_timeout_s=3600)  # would hang if it waited
    assert held.batcher.submit_many(["a"], time.monotonic() + 60) == ["scored a"]


def test_a_quiet_servers_lone_request_calls_the_model_itself_and_others_queue_meanwhile(gated):
    held = gated(ThreadGate(), timings=FAST)
    gate = held.gate
    assert held.batcher.submit_many(["a"], time.monotonic() + 60) == ["scored a"]
    assert gate.threads == [threading.current_thread()]  # no hand-off to the inference thread
    first = held.hold("b")
    rest = held.submit(["c", "d"], queued=2)  # b's call is out: they queue, not call the model too
    assert len(gate.calls) == 2
    held.release()
    assert held.results == {i: [f"scored {i}"] for i in "bcd"}
    assert [len(c) for c in gate.calls] == [1, 1, 2]
    assert gate.threads[1] is first[0] and gate.threads[2] not in first + rest


class CountingCondition(type(threading.Condition())):
    """A Condition that counts its notifies: each one wakes the inference loop."""
    notified = 0

    def notify(self, n=1):
        self.notified += 1
        super().notify(n)


def test_lone_requests_do_not_wake_the_inference_loop():
    gate = ThreadGate()
    batcher = Batcher(gate.predict, 4, 0.05, 6, warm_up=lambda: FAST)
    batcher._cond = CountingCondition()  # before the inference loop waits on it
    batcher.start()
    try:
        assert batcher.ready.wait(10)
        batcher._cond.notified = 0  # warm-up's own wake-ups do not count
        for item in "abcde":
            assert batcher.submit_many([item], time.monotonic() + 60) == [f"scored {item}"]
        assert gate.threads == [threading.current_thread()] * 5
        assert batcher._cond.notified == 0  # nothing was queued: nothing for the loop to do
    finally:
        batcher.stop()


@pytest.mark.parametrize("timings, last", [
    (FAST, 4),  # the last call took 4: a busy closed loop sends them back
    ({**FAST, 1: SOLO_MAX_S * 1.5}, 1),  # a call would hold the event loop too long
    (None, 1),  # not timed (a stand-in model): how long a call takes is unknown
])
def test_a_lone_request_goes_through_the_inference_thread(gated, timings, last):
    held = gated(ThreadGate(), timings=timings)
    held.batcher.policy.last = last
    assert held.batcher.submit_many(["a"], time.monotonic() + 60) == ["scored a"]
    assert held.gate.threads != [threading.current_thread()]  # the inference thread made the call


def test_a_lone_requests_bad_item_fails_with_its_own_error_and_frees_the_model(gated):
    held = gated(ThreadGate(), timings=FAST)
    with pytest.raises(BadImage) as bad:
        held.batcher.submit_many(["bad"], time.monotonic() + 60)
    assert bad.value.index == 0
    assert held.batcher.submit_many(["a"], time.monotonic() + 60) == ["scored a"]
    assert held.gate.threads == [threading.current_thread()] * 2


def test_concurrent_requests_share_a_call_and_get_their_own_results(gated):
    held = gated()
    held.hold("a")
    held.submit(["b", "c", "d", "e"], queued=4)
    held.release()
    assert held.results == {i: [f"scored {i}"] for i in "abcde"}
    assert [len(c) for c in held.gate.calls] == [1, 4]


def test_a_busy_server_sends_the_batch_the_model_is_fastest_at(gated):
    # per call: 4 images cost what 2 do, 8 four times that: 4 is the fastest
    held = gated(max_batch=8, max_queue=8, sizes=[1, 2, 4, 8],
                 timings={1: 0.5, 2: 0.5, 4: 0.5, 8: 2.0})
    held.hold("a")
    held.submit(list("bcdefg"), queued=6)
    held.release()
    assert held.results == {i: [f"scored {i}"] for i in "abcdefg"}
    # 6 queued: 4 now, not 6 padded to 8; the other 2 when no more come
    assert [len(c) for c in held.gate.calls] == [1, 4, 2]


@pytest.mark.parametrize("max_calls", [1, 2])
def test_a_second_call_starts_only_while_a_full_target_batch_waits_behind_the_first(gated, max_calls):
    held = gated(max_queue=8, max_calls=max_calls)  # uncalibrated: target 4, the largest
    gate = held.gate
    held.hold("a")
    held.submit(list("bcd"), queued=3)
    time.sleep(0.2)  # 3 of 4: no second call, however long they wait
    assert [len(c) for c in gate.calls] == [1]
    held.submit(["e"])
    deadline = time.monotonic() + 10
    while len(gate.calls) < max_calls and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # ...and never a third
    assert [len(c) for c in gate.calls] == [1, 4][:max_calls]
    assert held.batcher.depth == (4 if max_calls == 1 else 0)
    held.release()
    assert held.results == {i: [f"scored {i}"] for i in "abcde"}
    assert [len(c) for c in gate.calls] == [1, 4]


class StallGate(ThreadGate):
    """Calls that hold a "stall" item block until ``release``; the others run at once."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def predict(self, items):
        if "stall" in items:
            self.entered.set()
            self.release.wait()
        return super().predict(items)


def test_a_full_batch_is_scored_beside_a_stalled_call_which_neither_call_times(gated):
    timings = {1: 0.01, 2: 0.01, 3: 0.01, 4: 0.01}  # target 4: 4 per call, as fast as 1
    held = gated(StallGate(), max_queue=8, max_calls=2, timings=timings)
    gate, batcher = held.gate, held.batcher
    batcher.policy.last = 4  # a busy server's: the lone "stall" goes through the queue, to a model thread
    stalled = held.submit(["stall"])
    assert gate.entered.wait(10)
    beside = held.submit(list("abcd"))
    for t in beside:
        t.join(10)
    assert {i: held.results[i] for i in "abcd"} == {i: [f"scored {i}"] for i in "abcd"}  # "stall" still out
    assert gate.threads[0] not in stalled + beside + [threading.current_thread()]
    gate.release.set()
    stalled[0].join(10)
    assert held.results["stall"] == ["scored stall"]
    assert gate.threads[1] not in stalled + beside + [gate.threads[0]]  # a model thread of its own
    # the stall took far longer than 1's timing, 4 ran beside it: neither is its size's own time
    assert batcher.policy.call_s == timings
    assert batcher.submit_many(["z"], time.monotonic() + 10) == ["scored z"]
    assert batcher.policy.call_s != timings  # a call that ran alone is timed


def test_full_queue_is_503_and_deadline_is_504_with_slot_freed(gated):
    held = gated(max_queue=2)
    held.hold("busy")
    waiting = held.submit(["x"], deadline_s=0.2, queued=1)
    with pytest.raises(Unavailable) as full:
        held.batcher.submit_many(["y", "z"], time.monotonic() + 30)
    assert full.value.headers["Retry-After"].isdigit()
    waiting[0].join(10)
    assert isinstance(held.results["x"], DeadlineExceeded)
    assert held.batcher.depth == 0  # the timed-out request took its slot back
    held.release()
    assert held.results["busy"] == ["scored busy"]


def test_a_bad_item_fails_alone_with_its_own_index(gated):
    held = gated()
    held.hold("first")
    held.submit(["ok1", "bad", "ok2"], queued=3)
    held.release()
    assert isinstance(held.results["bad"], BadImage)
    assert held.results["ok1"] == ["scored ok1"] and held.results["ok2"] == ["scored ok2"]
    both = held.batcher.submit_many  # two bad items of one request: each error names its own place
    with pytest.raises(BadImage) as first_bad:
        both(["ok", "bad"], time.monotonic() + 10)
    assert first_bad.value.index == 1


# -- admission by time (SCORING_MAX_QUEUE_WAIT_MS) ----------------------------------
SLOW = {1: 10.0, 2: 10.0, 4: 10.0}  # warm-up timings: 10 s a call at every size; target 4


def test_a_request_predicted_to_wait_too_long_is_refused_at_once(gated):
    held = gated(timings=SLOW, max_queue=100, max_queue_wait_s=25)
    held.hold("a")  # out: about 10 s left
    held.submit(list("bcdefgh"), queued=7)  # 1 call ahead at most: about 20 s, admitted
    held.submit(["i"], queued=8)  # the 8th fills that call: still about 20 s
    with pytest.raises(Unavailable) as refused:  # the 9th would wait for 2 calls: about 30 s
        held.batcher.submit_many(["j"], time.monotonic() + 60)
    assert "wait of about" in refused.value.message
    assert 20 <= int(refused.value.headers["Retry-After"]) <= 30
    assert held.batcher.depth == 8  # refused before it queued: nothing to take back
    held.release()
    assert held.results == {i: [f"scored {i}"] for i in "abcdefghi"}


def test_without_timings_or_a_time_bound_only_the_count_bound_holds(gated):
    for held in (gated(timings=None, max_queue=6, max_queue_wait_s=0.001),  # nothing to predict from
                 gated(timings=SLOW, max_queue=6, max_queue_wait_s=0)):     # 0: no time bound
        held.hold("a")
        held.submit(list("bcdefg"), queued=6)
        with pytest.raises(Unavailable, match="queue full"):
            held.batcher.submit_many(["h"], time.monotonic() + 60)
        held.release()
        assert len(held.results) == 7


def test_warm_up_timings_admit_until_served_calls_show_the_model_is_slower(gated):
    held = gated(timings={1: 0.01, 2: 0.01, 4: 0.01}, max_queue=100, max_queue_wait_s=1.0)
    held.hold("a")
    held.submit(list("bcdefghijklm"), queued=12)  # 3 calls ahead, 0.01 s each: admitted
    for _ in range(3):  # what _score_batch reports for calls of every size that took 2 s
        for size in (1, 2, 4):
            held.batcher.policy.observe(size, 2.0)
    with pytest.raises(Unavailable, match="wait of about"):
        held.batcher.submit_many(["n"], time.monotonic() + 5)
    held.release()


@pytest.mark.parametrize("configured, device, calls", [
    ("auto", "cpu", 2), ("auto", "gpu", 1), ("auto", None, 1),  # None: a stand-in that does not say
    ("1", "cpu", 1), ("3", "gpu", 3),  # a count is taken as it is, on any device
])
def test_model_calls_auto_is_two_on_a_cpu_and_one_on_a_gpu(configured, device, calls):
    model = type("Loaded", (), {"device": device})()  # None: a model that does not say
    assert service.model_calls(settings.load({"SCORING_MODEL_CALLS": configured}), model) == calls


def test_the_number_of_calls_is_set_before_the_batcher_starts(gated):
    held = gated()
    with pytest.raises(RuntimeError, match="already running"):
        held.batcher.set_max_calls(2)
    idle = Batcher(lambda items: items, 4, 0.01, 8)
    idle.set_max_calls(3)
    assert idle.max_calls == 3
    assert idle.policy.calls == 3  # the target's choice depends on it (test_batch_policy.py)


class _Counting:
    """An observer that keeps what the batcher reports of abandoned images."""

    def __init__(self):
        self.dropped = 0

    def queue_depth(self, images):
        pass

    def batch_size(self, images):
        pass

    def model_call(self, seconds):
        pass

    def abandoned(self, images):
        self.dropped += images


def test_an_image_whose_client_has_gone_never_reaches_the_model(gated):
    """Items queue behind a held call; two clients leave meanwhile. Their items are dropped
    as they leave the queue (ClientClosed, counted), the others are scored together."""
    from scoring_app.errors import ClientClosed
    observer = _Counting()
    held = gated(max_queue=8, observer=observer)
    first = held.hold("a")
    left = {"x": threading.Event(), "y": threading.Event()}
    results = {}

    def send(item):
        gone = left[item].is_set if item in left else (lambda: False)
        try:
            results[item] = held.batcher.submit_many([item], time.monotonic() + 30, gone)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertions
            results[item] = exc
    threads = [threading.Thread(target=send, args=(i,)) for i in ("x", "b", "y", "c")]
    for t in threads:
        t.start()
    held.wait_depth(4)
    for event in left.values():
        event.set()  # their clients close their connections while the items wait
    held.release()
    for t in threads + first:
        t.join(10)
    assert isinstance(results["x"], ClientClosed) and isinstance(results["y"], ClientClosed)
    assert results["b"] == ["scored b"] and results["c"] == ["scored c"]
    assert held.gate.calls == [["a"], ["b", "c"]]
    assert observer.dropped == 2


def test_a_queue_of_only_abandoned_images_makes_no_model_call(gated):
    from scoring_app.errors import ClientClosed
    observer = _Counting()
    held = gated(max_queue=8, observer=observer)
    first = held.hold("a")
    results = {}

    def send(item):
        try:
            results[item] = held.batcher.submit_many([item], time.monotonic() + 30, lambda: True)
        except Exception as exc:  # noqa: BLE001
            results[item] = exc
    threads = [threading.Thread(target=send, args=(i,)) for i in ("x", "y")]
    for t in threads:
        t.start()
    held.wait_depth(2)
    held.release()
    for t in threads + first:
        t.join(10)
    assert all(isinstance(results[i], ClientClosed) for i in ("x", "y"))
    assert held.gate.calls == [["a"]]
    # and the loop goes on: the next request is scored
    assert held.batcher.submit_many(["z"], time.monotonic() + 30, lambda: False) == ["scored z"]
    assert observer.dropped == 2


def test_the_refusal_a_request_would_get_is_known_before_its_images_are(gated):
    """``refuses``: the 503 that submitting would give now, asked before a body is decoded;
    it queues nothing."""
    held = gated(max_queue=2)
    assert held.batcher.refuses(1) is None
    first = held.hold("a")
    held.submit(["b", "c"], queued=2)
    refusal = held.batcher.refuses(1)
    assert isinstance(refusal, Unavailable) and "queue full" in refusal.message
    assert held.batcher.depth == 2
    held.release()
    for t in first:
        t.join(10)
    assert held.batcher.refuses(1) is None
