"""HTTP statuses that need a model held still (503 not ready / queue full,
504), through the real app with a stand-in model, in-process. Answers are
checked against the app's own OpenAPI document."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from scoring_app.protocols import openapi
from scoring_app.app import create_app
from tests.app import media
from tests.app.openapi_check import check_response


class HeldModel:
    """Stands in for ScoringModel; ``gate`` holds warm-up and predict."""

    sizes = [1, 2]
    device = None  # not said: one model call at a time
    precision = None
    call_seconds: dict = {}  # not timed: the batch policy stays uncalibrated
    num_classes = 2

    def __init__(self):
        self.gate = threading.Event()
        self.calls = threading.Semaphore(0)

    def load(self):
        return 0.01

    def warm_up(self):
        self.gate.wait()
        return 0.01

    def preprocess(self, data):
        return data

    def predict(self, items):
        self.calls.release()
        self.gate.wait()
        return np.tile([0.1, 0.9], (len(items), 1))

    def postprocess(self, row, top_k):
        return [{"label": "x", "index": 1, "score": float(row[1])}][:top_k]


@pytest.fixture()
def held(tmp_path):
    model = HeldModel()
    app = create_app({"model_dir": str(tmp_path), "auth": "disabled", "max_queue": 1,
                      "request_timeout_ms": 300, "max_batch_size": 2}, model=model)
    spec = openapi.document("m", "1", 2)
    yield app, model, spec
    model.gate.set()
    app.extensions["scoring"].batcher.stop()


class Answer:
    """Just what check_response reads, from a Flask test response."""

    def __init__(self, response):
        self.status_code = response.status_code
        self.headers = response.headers
        self.text = response.get_data(as_text=True)
        self.json = response.get_json


def _post(app, spec):
    answer = Answer(app.test_client().post("/score", data=media.jpeg()))
    check_response(spec, "POST", "/score", answer)
    return answer


def test_not_ready_is_503_then_auth_disabled_serves_without_a_key(held):
    app, model, spec = held
    answer = Answer(app.test_client().get("/readyz"))
    check_response(spec, "GET", "/readyz", answer)
    assert answer.status_code == 503
    assert _post(app, spec).status_code == 503
    model.gate.set()
    assert app.extensions["scoring"].batcher.ready.wait(10)
    assert app.test_client().get("/readyz").status_code == 200
    assert _post(app, spec).status_code == 200


def test_queue_full_is_503_and_deadline_is_504(held):
    app, model, spec = held
    model.gate.set()
    assert app.extensions["scoring"].batcher.ready.wait(10)
    model.gate.clear()
    answers = []
    busy = threading.Thread(target=lambda: answers.append(_post(app, spec)))
    busy.start()
    assert model.calls.acquire(timeout=10)          # one request is in the model
    queued = threading.Thread(target=lambda: answers.append(_post(app, spec)))
    queued.start()
    service = app.extensions["scoring"]
    while service.batcher.depth < 1:
        time.sleep(0.01)
    full = _post(app, spec)                          # the queue (1) is taken
    assert full.status_code == 503 and full.headers["Retry-After"].isdigit()
    queued.join(10)
    busy.join(10)
    assert sorted(a.status_code for a in answers) == [504, 504]
    assert all(a.json()["error"]["code"] == "deadline_exceeded" for a in answers)
    model.gate.set()
    assert _post(app, spec).status_code == 200      # slots were freed


def test_both_protocols_hand_the_request_start_to_the_queue_bound(held, monkeypatch):
    """The queue's time bound counts from the request's start (the dispatcher's clock),
    not from when its images were queued: each protocol passes that start on."""
    app, model, _ = held
    model.gate.set()
    service = app.extensions["scoring"]
    assert service.batcher.ready.wait(10)
    seen = []
    submit = service.batcher.submit_many

    def spy(items, deadline, gone=None, since=None):
        seen.append((since, time.monotonic()))
        return submit(items, deadline, gone, since)

    monkeypatch.setattr(service.batcher, "submit_many", spy)
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["eA=="]}]}
    client = app.test_client()
    before = time.monotonic()
    assert client.post("/score", data=media.jpeg()).status_code == 200
    assert client.post(f"/v2/models/{service.config.model_name}/infer", json=body).status_code == 200
    assert len(seen) == 2
    for since, submitted in seen:
        assert since is not None and before <= since <= submitted
    assert seen[0][0] < seen[1][0]  # each request its own start
