"""v2 statuses that need a model held still (503 while loading, 504 past the
deadline), in-process with test_inprocess's stand-in model, each answer
checked against the app's OpenAPI document."""

from __future__ import annotations

import base64
import threading

import pytest

from scoring_app.protocols import openapi
from scoring_app.app import create_app
from tests.app import media
from tests.app.openapi_check import check_response
from tests.app.test_inprocess import Answer, HeldModel

INFER = "/v2/models/{name}/infer"
BODY = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                    "data": [base64.b64encode(media.jpeg()).decode()]}]}


@pytest.fixture()
def held(tmp_path):
    model = HeldModel()
    app = create_app({"model_dir": str(tmp_path), "auth": "disabled", "model_name": "m",
                      "request_timeout_ms": 300, "max_batch_size": 2}, model=model)
    yield app, model, openapi.document("m", "1", 2)
    model.gate.set()
    app.extensions["scoring"].batcher.stop()


def _call(app, spec, method, route, path, **kw):
    answer = Answer(app.test_client().open(path, method=method, **kw))
    check_response(spec, method, route, answer)
    return answer


def test_loading_is_503_with_retry_after_then_ready(held):
    app, model, spec = held
    for route, path in (("/v2/health/ready", "/v2/health/ready"),
                        ("/v2/models/{name}/ready", "/v2/models/m/ready")):
        answer = _call(app, spec, "GET", route, path)
        assert answer.status_code == 503 and answer.headers["Retry-After"].isdigit()
        assert "loading" in answer.json()["error"]
    assert _call(app, spec, "POST", INFER, "/v2/models/m/infer", json=BODY).status_code == 503
    assert _call(app, spec, "GET", "/v2/health/live", "/v2/health/live").status_code == 200
    model.gate.set()
    assert app.extensions["scoring"].batcher.ready.wait(10)
    assert _call(app, spec, "GET", "/v2/health/ready", "/v2/health/ready").status_code == 200
    assert _call(app, spec, "POST", INFER, "/v2/models/m/infer", json=BODY).status_code == 200


def test_past_the_deadline_is_504(held):
    app, model, spec = held
    model.gate.set()
    assert app.extensions["scoring"].batcher.ready.wait(10)
    model.gate.clear()
    answers = []
    stuck = threading.Thread(target=lambda: answers.append(
        _call(app, spec, "POST", INFER, "/v2/models/m/infer", json=BODY)))
    stuck.start()
    stuck.join(10)
    model.gate.set()
    assert answers[0].status_code == 504
    assert "deadline" in answers[0].json()["error"]
