"""Admission by time (SCORING_MAX_QUEUE_WAIT_MS) on a real gunicorn whose model
is slowed (tests/reliability/slow_wsgi.py: 0.1 s a call, batches of 4, so
about 40 images/s), with a queue bound far above what the time bound lets in.

Warm-up times the slowed calls, so the prediction starts right; what happens
while warm-up's timings are off (admitted on them, then refused as the served
calls correct them) is tested on the batcher itself (tests/app/test_batcher.py).
"""

from __future__ import annotations

import pytest

from tests.reliability import load
from tests.reliability.conftest import KEY, SLOW, slow_argv
from tests.app.conftest import Server

MAX_WAIT_MS = 300  # about 3 calls of 4 images ahead


@pytest.fixture(scope="module")
def timed_server(encoded_model_dir, tmp_path_factory):
    keys = tmp_path_factory.mktemp("timed-keys")
    (keys / "primary").write_text(KEY)
    srv = Server({**SLOW, "SCORING_MAX_QUEUE": "64", "SCORING_MAX_QUEUE_WAIT_MS": str(MAX_WAIT_MS),
                  "SCORING_MODEL_DIR": str(encoded_model_dir), "SCORING_API_KEYS_DIR": str(keys),
                  "TMPDIR": str(tmp_path_factory.mktemp("timed"))}, argv=slow_argv)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def test_overload_is_refused_by_predicted_wait_long_before_the_queue_is_full(timed_server):
    answers = load.open_loop(timed_server.url, KEY, rate=120, seconds=2)  # 3x capacity
    counts = load.count(answers)
    refused = [a for a in answers if a.status == 503]
    print(f"\nfigures: {len(answers)} requests at 120/s -> {counts}")
    assert set(counts) <= {200, 503}, counts
    assert refused and counts.get(200, 0) > 0
    assert all(a.code == "unavailable" and a.retry_after and a.retry_after.isdigit() for a in refused)
    # the time bound said no, at the door (the predicted wait) or after the image had waited
    # past it (a prediction the busy machine made wrong): the queue (64) never filled
    assert all("wait of about" in a.message or "past its bound" in a.message for a in refused), \
        {a.message for a in refused}
    assert any("wait of about" in a.message for a in refused)
    assert all(a.code == "ok" for a in answers if a.status == 200)
    after, _ = load.closed_loop(timed_server.url, KEY, clients=4, seconds=1)  # and it recovers
    assert load.count(after) == {200: len(after)}
