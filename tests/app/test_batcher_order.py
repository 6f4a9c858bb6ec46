"""batching/batcher: the order a queue is served in, and the bound on a wait in it.
Oldest first while it drains; newest first once it stands (its oldest item has waited
longer than a few calls), except items that have waited half their allowance; and no item
waits past ``max_queue_wait_s``. Fake models held on a gate (tests/app/gates.py)."""

from __future__ import annotations

import threading
import time

import pytest

from scoring_app.batching import batcher as batching
from scoring_app.errors import ClientClosed, Unavailable

FAST = {1: 0.001, 2: 0.001, 3: 0.001, 4: 0.001}  # a standing queue within milliseconds


def _queue(held, items, deadline_s=30.0, gone=None, spent_s=None):
    """Queue ``items`` one request each, in this order (each is queued before the next);
    ``spent_s``: how long before now each request started (its body read and decode)."""
    for item in items:
        depth = held.batcher.depth + 1
        since = None if spent_s is None else time.monotonic() - spent_s
        thread = threading.Thread(target=_send, args=(held, item, deadline_s, gone, since))
        thread.start()
        held.threads.append(thread)
        held.wait_depth(depth)


def _send(held, item, deadline_s, gone, since=None):
    try:
        held.results[item] = held.batcher.submit_many([item], time.monotonic() + deadline_s,
                                                      gone and gone.get(item), since)
    except Exception as exc:  # noqa: BLE001 - recorded for the assertions
        held.results[item] = exc


def _stands(held) -> None:
    """Let the queue stand at the next take, and no item's turn come before its allowance's
    half (the test's own clock: it may be slow)."""
    held.batcher._standing_s = lambda: 0.0
    held.batcher._first_after_s = lambda: 3600.0


def test_a_queue_that_drains_is_served_oldest_first(gated):
    held = gated(timings=FAST, max_queue=8)
    held.batcher._standing_s = lambda: 3600  # never stands
    held.hold("a")
    _queue(held, "bcdef")
    held.release()
    assert held.gate.calls == [["a"], list("bcde"), ["f"]]


def test_a_standing_queue_is_served_newest_first(gated):
    """Served in order, the oldest image goes next however long it has waited (its client
    may be about to give up); newest first, a fresh one is answered at once."""
    held = gated(timings=FAST, max_queue=8)
    _stands(held)
    held.hold("a")
    _queue(held, "bcdef")
    held.release()
    assert held.gate.calls[0] == ["a"]
    assert sorted(held.gate.calls[1]) == list("cdef") and held.gate.calls[2] == ["b"]
    assert held.results == {i: [f"scored {i}"] for i in "abcdef"}


@pytest.mark.parametrize(("wait_s", "order"), [(0.03, ["a", "bcde", "f"]), (0.15, ["a", "cdef", "b"])])
def test_a_queue_stands_only_once_its_oldest_has_waited_the_least_standing_time(gated, wait_s, order):
    """A fast model's queue whose oldest image has waited many calls but less than
    ``STANDING_MIN_S`` (a closed loop of clients keeps one like it, never overloaded) is
    still served oldest first; past it, newest first."""
    held = gated(timings=FAST, max_queue=8)
    held.batcher._first_after_s = lambda: 3600.0  # no image's turn comes first
    assert held.batcher._standing_s() == batching.STANDING_MIN_S
    assert wait_s > 10 * batching.STANDING_CALLS * FAST[4]
    held.hold("a")
    _queue(held, "bcdef")
    time.sleep(wait_s)
    held.release()
    assert ["".join(sorted(c)) for c in held.gate.calls] == order


def test_a_queue_that_stood_is_served_oldest_first_again_once_its_oldest_is_young(gated):
    """The order follows the oldest image's wait at every take, not only an empty queue
    (a closed loop of more clients than a call takes never empties it): b stood the
    queue and left; c to e, queued just now, go oldest first though the queue never
    emptied."""
    held = gated(timings=FAST, max_batch=2, max_queue=8)
    held.batcher._standing_s = lambda: 0.3
    held.batcher._first_after_s = lambda: 3600.0  # no image's turn comes first
    left = threading.Event()
    held.hold("a")
    _queue(held, "b", gone={"b": left.is_set})
    time.sleep(0.35)
    _queue(held, "cdefg")
    left.set()
    held.release()
    assert isinstance(held.results["b"], ClientClosed)
    assert [sorted(c) for c in held.gate.calls] == [["a"], ["f", "g"], ["c", "d"], ["e"]]


def test_an_old_image_goes_first_again_once_it_has_waited_half_its_allowance(gated):
    """Newest first must not starve a patient client: b's deadline is near, so its turn
    comes first; then the newest."""
    held = gated(timings=FAST, max_queue=8)
    _stands(held)
    held.hold("a")
    _queue(held, "b", deadline_s=1.0)  # its turn comes after 0.5 s
    _queue(held, "cdef")
    time.sleep(0.6)
    held.release()
    assert "b" in held.gate.calls[1] and sorted(held.gate.calls[1]) == list("bdef")
    assert held.gate.calls[2] == ["c"]


def test_a_standing_queue_is_swept_for_clients_that_have_gone(gated):
    """Items in the middle of a standing queue are not taken for a while: their clients'
    connections are looked at anyway, so a departed client's item frees its slot."""
    held = gated(timings=FAST, max_queue=8)
    left = {i: threading.Event() for i in "bc"}
    _stands(held)
    held.hold("a")
    _queue(held, "bcdef", gone={i: e.is_set for i, e in left.items()})
    for event in left.values():
        event.set()
    held.release()
    assert isinstance(held.results["b"], ClientClosed) and isinstance(held.results["c"], ClientClosed)
    assert [sorted(c) for c in held.gate.calls] == [["a"], list("def")]


def test_no_image_waits_in_the_queue_past_the_time_bound(gated):
    """Admitted on a prediction that a stalled call made wrong: past the bound the image
    gets a 503 with Retry-After, not a late answer; the next one is served."""
    held = gated(timings=FAST, max_queue=8, max_queue_wait_s=0.2)
    held.hold("a")  # predicted to end in a millisecond; held far longer
    _queue(held, "bc")
    time.sleep(0.3)
    held.release()
    assert held.results["a"] == ["scored a"]
    for item in "bc":
        refused = held.results[item]
        assert isinstance(refused, Unavailable) and "past its bound" in refused.message
        assert refused.headers["Retry-After"] == "1"
    assert held.gate.calls == [["a"]]
    assert held.batcher.submit_many(["d"], time.monotonic() + 30) == ["scored d"]


def test_the_time_bound_counts_from_the_request_start(gated):
    """b's request spent most of the bound before its image was queued (a body read and a
    decode on a busy worker): it is refused once the bound has passed since its start,
    although it waited in the queue for less than the bound; c, fresh, is served."""
    held = gated(timings=FAST, max_queue=8, max_queue_wait_s=0.5)
    assert held.batcher._standing_s() < 0.2  # the least any image may wait in the queue
    held.hold("a")
    _queue(held, "b", spent_s=0.45)
    _queue(held, "c")
    time.sleep(0.3)
    held.release()
    refused = held.results["b"]
    assert isinstance(refused, Unavailable) and "past its bound" in refused.message
    assert held.results["c"] == ["scored c"]
    assert held.gate.calls == [["a"], ["c"]]


def test_a_request_that_used_up_the_bound_before_it_was_queued_still_gets_its_turn(gated):
    """A slow upload spends the whole bound before the server has its image: it still may
    wait the standing threshold's time in the queue (within the bound), so on a server
    that keeps up it is served."""
    held = gated(timings={1: 0.1, 2: 0.1, 4: 0.1}, max_queue=8, max_queue_wait_s=1.0)
    floor = held.batcher._standing_s()
    assert 0.2 <= floor < 1.0
    held.hold("a")
    _queue(held, "b", spent_s=10.0)
    (p,) = held.batcher._queue
    assert p.late_at - p.queued == pytest.approx(floor)
    held.release()
    assert held.results["b"] == ["scored b"]


def test_admission_predicts_against_what_is_left_of_the_bound(gated):
    """The same predicted wait is admitted for a fresh request and refused for one that
    has already spent most of the bound before its images were queued."""
    slow = {1: 10.0, 2: 10.0, 4: 10.0}  # 10 s a call at every size; target 4
    held = gated(timings=slow, max_queue=100, max_queue_wait_s=60)
    assert held.batcher._standing_s() < 30
    held.hold("a")  # out: about 10 s left
    held.submit(list("bcdefghi"), queued=8)  # two calls behind it: j would wait about 30 s
    with pytest.raises(Unavailable, match="wait of about"):
        held.batcher.submit_many(["j"], time.monotonic() + 120, since=time.monotonic() - 45)
    assert held.batcher.depth == 8
    held.submit(["j"], queued=9)  # fresh: 30 s of its 60 s
    held.release()
    assert held.results == {i: [f"scored {i}"] for i in "abcdefghij"}


def test_an_old_image_goes_first_again_after_a_few_calls_at_most(gated):
    """A saturated closed loop of patient clients keeps the queue standing: newest first
    must not leave its oldest request waiting half the time bound, only a few calls."""
    held = gated(timings={1: 0.01, 2: 0.02, 4: 0.04}, max_queue=8, max_queue_wait_s=60)
    call = held.batcher.policy.call_estimate_s(held.batcher.policy.target)
    standing = held.batcher._standing_s()
    assert batching.STANDING_CALLS * call <= standing and batching.STANDING_MIN_S <= standing
    held.hold("a")
    _queue(held, "b")
    (p,) = held.batcher._queue
    assert p.first_at - p.queued == pytest.approx(batching.FIRST_AFTER_STANDING * standing)
    assert p.first_at - p.queued < 1  # far below half of 60 s
