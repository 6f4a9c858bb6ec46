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


def test_under_gevent_the_call_runs_in_a_native_thread_and_the_loop_keeps_going():
    done = subprocess.run([sys.executable, "-c", _UNDER_GEVENT], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    result = json.loads(done.stdout)
    assert result["on_gevent"] and result["pool_size"] == 3
    assert result["other_thread"]
    # 0.3 s call, a tick every 0.02 s: a blocked loop would tick at most once.
    assert result["ticks_during_call"] >= 5
    assert result["raised"] == "bad image"
    assert result["model_threads"] == 1 and not result["model_thread_is_loop"]
    assert result["model_raised"] == "bad image"
    # gevent prints escaping exceptions itself; offload hands them back instead.
    assert "Traceback" not in done.stderr, done.stderr
