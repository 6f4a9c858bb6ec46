"""offload.call and NativeThread.call: here outside gevent; under gevent, in a
native thread that leaves the event loop free (always the same one for a
NativeThread), with exceptions handed back to the caller."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from scoring_app import offload
ROOT = Path(__file__).resolve().parents[2]


def test_outside_gevent_the_call_runs_in_the_callers_thread():
    assert not offload.on_gevent()
    assert offload.call(threading.get_ident) == threading.get_ident()
    assert offload.NativeThread().call(threading.get_ident) == threading.get_ident()
    with pytest.raises(KeyError):
        offload.call({}.__getitem__, "missing")
    with pytest.raises(KeyError):
        offload.NativeThread().call({}.__getitem__, "missing")


# Runs in a fresh interpreter: monkey-patching must not leak into this one.
_UNDER_GEVENT = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import json, threading, time
    import gevent
    from scoring_app import offload

    offload.configure(3)
    native_sleep = monkey.get_original("time", "sleep")
    ticks = []

    def ticker():  # a greenlet: runs only while the loop is free
        for _ in range(10):
            ticks.append(time.monotonic())
            gevent.sleep(0.02)

    def blocking():  # holds its native thread, as a model call does
        native_sleep(0.3)
        return threading.get_ident()

    def bad():
        raise ValueError("bad image")

    loop_thread = threading.get_ident()
    t = gevent.spawn(ticker)
    gevent.sleep(0)
    started = time.monotonic()
    worker_thread = offload.call(blocking)
    ended = time.monotonic()
    try:
        offload.call(bad)
        raised = None
    except ValueError as exc:
        raised = str(exc)
    t.join()
    model = offload.NativeThread()
    model_threads = {model.call(threading.get_ident) for _ in range(20)}
    try:
        model.call(bad)
        model_raised = None
    except ValueError as exc:
        model_raised = str(exc)
    print(json.dumps({
        "model_threads": len(model_threads),
        "model_thread_is_loop": loop_thread in model_threads,
        "model_raised": model_raised,
        "on_gevent": offload.on_gevent(),
        "pool_size": gevent.get_hub().threadpool.maxsize,
        "other_thread": worker_thread != loop_thread,
        "ticks_during_call": sum(started < tick < ended for tick in ticks),
        "raised": raised,
    }))
""")


def _run_script(script: str) -> tuple[dict, str]:
    """Run ``script`` in a fresh interpreter (gevent patches a whole process): the JSON
    it printed, and its stderr."""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout), done.stderr


def test_under_gevent_the_call_runs_in_a_native_thread_and_the_loop_keeps_going():
    result, stderr = _run_script(_UNDER_GEVENT)
    assert result["on_gevent"] and result["pool_size"] == 3
    assert result["other_thread"]
    # 0.3 s call, a tick every 0.02 s: a blocked loop would tick at most once.
    assert result["ticks_during_call"] >= 5
    assert result["raised"] == "bad image"
    assert result["model_threads"] == 1 and not result["model_thread_is_loop"]
    assert result["model_raised"] == "bad image"
    # gevent prints escaping exceptions itself; offload hands them back instead.
    assert "Traceback" not in stderr, stderr


# A script's start: gevent's patches, a Batcher, the native calls it needs
# (``time.sleep`` blocking its thread, as a TensorFlow call does) and ``calls`` to record them.
_BATCHER_ON_GEVENT = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import json, threading, time
    import gevent
    from scoring_app.batching.batcher import Batcher

    native_sleep = monkey.get_original("time", "sleep")
    native_ident = monkey.get_original("threading", "get_ident")
    loop_thread = native_ident()
    calls = []
""")


# Eight requests arrive together at a quiet server whose model blocks its thread (as a
# TensorFlow call does). The first may go alone, on the loop's thread; the others must
# not each do the same in turn (eight calls of one): they are let run first, and queue.
_ARRIVE_TOGETHER = _BATCHER_ON_GEVENT + textwrap.dedent("""

    def predict(items):
        calls.append((len(items), native_ident() == loop_thread))
        native_sleep(0.01)
        return [f"scored {i}" for i in items]

    batcher = Batcher(predict, 8, 0.05, 16, warm_up=lambda: {1: 0.005, 2: 0.005, 4: 0.005, 8: 0.005},
                      sizes=[1, 2, 4, 8])
    batcher.start()
    batcher.ready.wait(10)
    jobs = [gevent.spawn(batcher.submit_many, [i], time.monotonic() + 30) for i in range(8)]
    gevent.joinall(jobs, timeout=30)
    print(json.dumps({"results": [job.value for job in jobs], "calls": calls}))
""")


def test_requests_that_arrive_together_are_batched_not_each_sent_alone():
    result, _ = _run_script(_ARRIVE_TOGETHER)
    assert result["results"] == [[f"scored {i}"] for i in range(8)]
    sizes = [size for size, _ in result["calls"]]
    assert sum(sizes) == 8 and len(sizes) <= 2, result["calls"]
    assert not any(on_loop for size, on_loop in result["calls"] if size > 1)  # batches: model thread


# Under gevent, two batched calls are out at once on two native threads of their
# own, neither the loop's: a full batch queued behind the first call does not wait for it.
_SIDE_BY_SIDE = _BATCHER_ON_GEVENT + textwrap.dedent("""

    def predict(items):
        started = time.monotonic()
        native_sleep(0.2)
        calls.append({"size": len(items), "thread": native_ident(), "on_loop": native_ident() == loop_thread,
                      "start": started, "end": time.monotonic()})
        return list(items)

    batcher = Batcher(predict, 4, 0.05, 16, warm_up=lambda: {1: 0.05, 2: 0.05, 4: 0.05},
                      sizes=[1, 2, 4], max_calls=2)
    batcher.start()
    batcher.ready.wait(10)
    batcher.policy.last = 4  # busy: no lone request goes alone
    jobs = [gevent.spawn(batcher.submit_many, [i], time.monotonic() + 30) for i in range(8)]
    gevent.joinall(jobs, timeout=30)
    print(json.dumps({"results": [job.value for job in jobs], "calls": calls}))
""")


def test_two_batches_are_scored_side_by_side_on_native_threads_of_their_own():
    result, _ = _run_script(_SIDE_BY_SIDE)
    assert result["results"] == [[i] for i in range(8)]
    first, second = sorted(result["calls"], key=lambda call: call["start"])
    assert (first["size"], second["size"]) == (4, 4)
    assert second["start"] < first["end"], result["calls"]  # out at the same time
    assert first["thread"] != second["thread"] and not first["on_loop"] and not second["on_loop"]


_ALONE = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import json, time
    from scoring_app.batching.batcher import Batcher

    native_ident = monkey.get_original("threading", "get_ident")
    loop_thread = native_ident()
    calls = []
    batcher = Batcher(lambda items: calls.append(native_ident() == loop_thread) or list(items), 8, 0.05, 16,
                      warm_up=lambda: {1: 0.01, 8: 0.02}, sizes=[1, 8])
    batcher.start()
    batcher.ready.wait(10)
    results = [batcher.submit_many([i], time.monotonic() + 30) for i in range(3)]
    print(json.dumps({"results": results, "on_loop": calls}))
""")


def test_a_lone_request_calls_the_model_on_the_loops_thread():
    assert _run_script(_ALONE)[0] == {"results": [[0], [1], [2]], "on_loop": [True] * 3}
