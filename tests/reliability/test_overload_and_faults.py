"""Overload and faults against one real gunicorn whose model is slowed
(conftest.slow_server: capacity about 4 images per 0.1 s, queue 8, deadline
3 s); the SIGTERM test stops a slow server of its own:

1. 3x the measured capacity, then normal load again;
2. a model that hangs past the deadline: 504s, slots freed, no wedge; at the
   default (two calls on a CPU, a server of its own), a full batch is served beside it;
3. the worker killed with -9 mid-batch: errors, not hangs; gunicorn replaces it;
4. SIGTERM under load: in-flight requests finish, new ones are refused, clean exit.

Assertions are on counts and statuses; the figures are printed (``-s``).
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import time

import pytest
import requests

from tests.app.test_http import metric
from tests.reliability import load, procs
from tests.reliability.conftest import KEY, SLOW, _slow_server

DEADLINE_S = int(SLOW["SCORING_REQUEST_TIMEOUT_MS"]) / 1000


def wait_for(predicate, what: str, timeout: float = 30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def model_calls(srv) -> float:
    return metric(srv.metrics(), "scoring_batch_size_count")


def queue_depth(srv) -> float:
    return metric(srv.metrics(), "scoring_queue_depth")


def test_overload_sheds_with_503_and_recovers(slow_server):
    url, workers = slow_server.url, procs.workers(slow_server.proc.pid)
    before, capacity = load.closed_loop(url, KEY, clients=8, seconds=2)
    assert load.count(before) == {200: len(before)}

    overload = load.open_loop(url, KEY, rate=3 * capacity, seconds=3)
    after, throughput = load.closed_loop(url, KEY, clients=8, seconds=2)

    counts = load.count(overload)
    shed = [a for a in overload if a.status == 503]
    served = [a for a in overload if a.status == 200]
    print(f"\nfigures: capacity {capacity:.1f}/s; overload {len(overload)} requests at "
          f"{3 * capacity:.1f}/s -> {counts}; median 503 in "
          f"{sorted(a.seconds for a in shed)[len(shed) // 2] * 1000:.0f} ms, median 200 in "
          f"{sorted(a.seconds for a in served)[len(served) // 2] * 1000:.0f} ms; "
          f"after: {throughput:.1f}/s, {load.count(after)}")
    assert shed and served, counts
    # accepted requests all finished within the deadline (else 504); nothing else failed
    assert set(counts) == {200, 503}, counts
    assert all(a.code == "unavailable" and a.retry_after.isdigit() for a in shed)
    assert all(a.code == "ok" for a in served), "a 200 carried another image's answer"
    assert load.count(after) == {200: len(after)} and all(a.code == "ok" for a in after)
    # Capacity comes back whole (the model here sleeps, so it does not drift with the
    # machine): a batch size that one stalled call made look slow is tried again.
    assert throughput > 0.8 * capacity, (throughput, capacity)
    assert queue_depth(slow_server) == 0
    assert procs.workers(slow_server.proc.pid).keys() == workers.keys(), "a worker restarted"


def test_hung_model_gives_504_frees_slots_and_does_not_wedge(slow_server):
    url = slow_server.url
    calls = model_calls(slow_server)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        stalled = pool.submit(load.post, url, KEY, 0, body=load.stall_jpeg(DEADLINE_S + 2))
        wait_for(lambda: model_calls(slow_server) > calls, "the stalled call")
        queued = [pool.submit(load.post, url, KEY, i) for i in range(8)]
        wait_for(lambda: queue_depth(slow_server) == 8, "a full queue")
        full = [load.post(url, KEY, i) for i in range(3)]
        timed_out = [f.result() for f in queued]
        depth_after_504 = queue_depth(slow_server)
        # the model is still stuck, but the freed slots take new requests
        later = [pool.submit(load.post, url, KEY, i) for i in range(4)]
        later = [f.result() for f in later]
        stalled = stalled.result()
    assert [(a.status, a.code) for a in full] == [(503, "unavailable")] * 3
    assert all(a.retry_after.isdigit() for a in full)
    assert [(a.status, a.code) for a in timed_out] == [(504, "deadline_exceeded")] * 8
    assert depth_after_504 == 0
    assert [(a.status, a.code) for a in later] == [(200, "ok")] * 4
    assert stalled.status == 504
    assert load.post(url, KEY, 1).code == "ok"


def test_at_the_default_a_full_batch_is_served_beside_a_hung_call_and_the_rest_time_out(
        slow_server_default):
    """SCORING_MODEL_CALLS=auto, two calls on this CPU: a hung call holds one model
    thread; a full batch (the target, 4) goes to the other at once, while fewer than
    that wait for the hung call and get their 504 at the deadline, freeing their slots."""
    srv = slow_server_default
    assert "up to 2 model calls at once" in srv.output()
    url, calls = srv.url, model_calls(srv)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        stalled = pool.submit(load.post, url, KEY, 0, body=load.stall_jpeg(DEADLINE_S + 2))
        wait_for(lambda: model_calls(srv) > calls, "the stalled call")
        beside = [f.result() for f in [pool.submit(load.post, url, KEY, i) for i in range(4)]]
        waiting = [f.result() for f in [pool.submit(load.post, url, KEY, i) for i in range(3)]]
        stalled = stalled.result()
    assert [(a.status, a.code) for a in beside] == [(200, "ok")] * 4  # behind it: 504s
    assert [(a.status, a.code) for a in waiting] == [(504, "deadline_exceeded")] * 3
    assert stalled.status == 504
    assert queue_depth(srv) == 0
    assert load.post(url, KEY, 1).code == "ok"


def test_worker_killed_mid_batch_errors_its_clients_and_is_replaced(slow_server):
    url, master = slow_server.url, slow_server.proc.pid
    [old] = procs.workers(master)
    calls = model_calls(slow_server)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        victims = [pool.submit(load.post, url, KEY, 0, body=load.stall_jpeg(10))]
        wait_for(lambda: model_calls(slow_server) > calls, "the batch in the model")
        victims += [pool.submit(load.post, url, KEY, i) for i in range(3)]
        wait_for(lambda: queue_depth(slow_server) == 3, "queued requests")
        os.kill(old, signal.SIGKILL)
        victims = [f.result() for f in victims]
    # an error at once (the connection drops), not a 60 s read timeout
    assert [(a.status, a.error) for a in victims] == [(0, "ConnectionError")] * 4
    slow_server.wait_ready()
    [new] = procs.workers(master)
    assert new != old and slow_server.proc.poll() is None
    answers, _ = load.closed_loop(url, KEY, clients=4, seconds=1)
    assert {a.code for a in answers} == {"ok"}
    assert f"Worker (pid:{old}) was sent SIGKILL" in slow_server.output()


def test_sigterm_under_load_finishes_in_flight_refuses_new_and_exits_cleanly(slow_server_to_stop):
    """The stalled request is still in the model when the listener closes
    (drain 1 s, stall 2.5 s): it must get its 200."""
    slow_server = slow_server_to_stop
    url, master = slow_server.url, slow_server.proc.pid
    [worker] = procs.workers(master)
    calls = model_calls(slow_server)
    refused_while_finishing = False
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        in_flight = pool.submit(load.post, url, KEY, 0, body=load.stall_jpeg(2.5))
        wait_for(lambda: model_calls(slow_server) > calls, "the request in the model")
        steady = pool.submit(load.closed_loop, url, KEY, 2, 2.5)
        time.sleep(0.3)
        slow_server.proc.send_signal(signal.SIGTERM)
        while not in_flight.done():  # the listener closes while the stalled one runs
            try:
                socket.create_connection(("127.0.0.1", slow_server.port), timeout=1).close()
            except ConnectionRefusedError:
                refused_while_finishing = True
            time.sleep(0.05)
        in_flight, (steady, _) = in_flight.result(), steady.result()
    assert slow_server.proc.wait(timeout=60) == 0
    assert (in_flight.status, in_flight.code) == (200, "ok")
    assert refused_while_finishing, "new connections were still accepted"
    answered = [a for a in steady if a.status]
    assert answered and all(a.code == "ok" for a in answered), load.count(steady)
    assert all(a.error == "ConnectionError" for a in steady if not a.status)
    output = slow_server.output()
    assert f"Worker exiting (pid: {worker})" in output  # not killed at the graceful timeout
    assert KEY not in output
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/healthz", timeout=5)


def test_sigterm_to_the_whole_process_group_starts_no_new_worker(encoded_model_dir, tmp_path):
    """Ctrl-C or ``kill -- -PGID`` reaches the workers beside the master: the drain
    must not replace them (a new one would load the model only to be stopped). The
    drain is long enough for the workers to be gone well before it ends."""
    (tmp_path / "keys").mkdir()
    srv = _slow_server(encoded_model_dir, tmp_path / "keys", tmp_path, SCORING_DRAIN_SECONDS="20")
    try:
        srv.wait_ready()
        assert srv.output().count("Booting worker") == 1
        os.killpg(srv.proc.pid, signal.SIGTERM)  # LocalServer gave it a session of its own
        assert srv.proc.wait(timeout=60) == 0
        output = srv.output()
        assert output.count("Booting worker") == 1, output
        # the metrics folder the master made for itself (under TMPDIR) went with it
        assert not list(tmp_path.glob("scoring-metrics-*"))
    finally:
        srv.stop()
