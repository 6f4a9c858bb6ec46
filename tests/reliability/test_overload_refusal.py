"""Overload is refused at the cost of a request's headers, and served and refused
latency are told apart from the server's side (scoring_request_duration_seconds by
status class), on the real gunicorn worker with the slowed model (slow_wsgi)."""
from __future__ import annotations

import concurrent.futures
import time

import requests

from tests.app.test_http import metric
from tests.reliability import load
from tests.reliability.conftest import KEY, SLOW

QUEUE = int(SLOW["SCORING_MAX_QUEUE"])


def _wait_depth(srv, n: int) -> None:
    for _ in range(300):
        if metric(srv.metrics(), "scoring_queue_depth") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"the queue never held {n} images")


def test_a_full_queue_refuses_before_the_body_is_read_or_decoded(slow_server):
    """With the model held and the queue full, a body that is not an image gets the 503
    (what overload costs it: the headers), not the 400 that decoding it would give."""
    url = slow_server.url
    with concurrent.futures.ThreadPoolExecutor(QUEUE + 1) as pool:
        stall = pool.submit(load.post, url, KEY, 0, 60, load.stall_jpeg(2))
        time.sleep(0.3)  # its call is out
        queued = [pool.submit(load.post, url, KEY, i) for i in range(QUEUE)]
        _wait_depth(slow_server, QUEUE)
        refused = requests.post(url + "/score", data=b"not an image at all", timeout=30,
                                headers={"Authorization": f"Bearer {KEY}"})
        v2 = requests.post(url + "/v2/models/model/infer", data=b"{not json", timeout=30,
                           headers={"Authorization": f"Bearer {KEY}",
                                    "Content-Type": "application/json"})
        answers = [stall.result(), *(f.result() for f in queued)]
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "unavailable" and refused.headers["Retry-After"]
    assert v2.status_code == 503, v2.text
    assert all(a.status == 200 for a in answers), load.count(answers)

    # the request-duration histogram carries the status class: an operator reads served
    # (2xx) latency under overload without the quick 503s pulling it down
    text = slow_server.metrics()
    count = "scoring_request_duration_seconds_count"
    served = metric(text, count, route="/score", status_class="2xx")
    shed = metric(text, count, route="/score", status_class="5xx")
    assert served >= len(answers) and shed >= 1
    assert served + shed <= metric(text, count, route="/score")
