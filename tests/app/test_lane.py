"""``POST /score`` through the app's one front door (``dispatch.Dispatcher``),
as every route. Each case below is answered once, and its status, error code,
headers, log and request metric are checked. A stand-in model, in-process."""

from __future__ import annotations

import base64
import json
import logging

import numpy as np
import pytest
from werkzeug.test import Client

from scoring_app import metrics
from scoring_app.app import create_app
from scoring_app.errors import BadImage
from scoring_app.dispatch import Dispatcher
from tests.app import media
from tests.app.conftest import SecretDir

KEY = "lane-test-key"
BROKEN = b"makes the stand-in model raise"


class StandInModel:
    sizes = [1, 2, 4]
    device = None  # not said: one model call at a time
    precision = None
    call_seconds: dict = {}
    num_classes = 3

    def load(self):
        return 0.01

    def warm_up(self):
        return 0.01

    def preprocess(self, data):
        if data[:3] != b"\xff\xd8\xff" and data != BROKEN:
            raise BadImage("not a JPEG")
        return data

    def predict(self, items):
        if BROKEN in items:
            raise RuntimeError("a bug in the model code")
        return np.array([[0.1, 0.7, 0.2]] * len(items))

    def postprocess(self, row, top_k):
        if top_k == 99:
            raise RuntimeError("a bug past the batcher")
        order = np.argsort(row)[::-1][:top_k]
        return [{"index": int(i), "score": float(row[i])} for i in order]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    keys = SecretDir(tmp_path_factory.mktemp("keys"))
    keys.write(primary=KEY)
    app = create_app({"model_dir": str(keys.path), "api_keys_dir": str(keys.path),
                      "max_body_bytes": 65536, "max_queue": 4}, model=StandInModel())
    service = app.extensions["scoring"]
    assert service.batcher.ready.wait(10)
    yield app
    service.batcher.stop()


def _instances(*bodies: bytes) -> bytes:
    return json.dumps({"instances": [{"b64": base64.b64encode(b).decode()} for b in bodies]}).encode()


AUTH = {"Authorization": f"Bearer {KEY}"}
RAW = {**AUTH, "Content-Type": "application/octet-stream"}
JSON = {**AUTH, "Content-Type": "application/json"}
# name: (query, headers, body, the status and error code it must get: so no
# case quietly turns into another, e.g. every one a 401)
CASES = {
    "raw image": ("", RAW, media.jpeg(), 200, None),
    "no content type": ("", AUTH, media.jpeg(), 200, None),
    "top_k": ("top_k=2", {**AUTH, "Content-Type": "image/jpeg"}, media.jpeg(), 200, None),
    "json instances": ("", JSON, _instances(media.jpeg(), media.jpeg()), 200, None),
    "no key": ("", {"Content-Type": "image/jpeg"}, media.jpeg(), 401, "unauthorized"),
    "wrong key": ("", {"Authorization": "Bearer nope"}, media.jpeg(), 401, "unauthorized"),
    "unsupported type": ("", {**AUTH, "Content-Type": "text/plain"}, b"hello", 415,
                         "unsupported_media_type"),
    "bad top_k": ("top_k=-1", RAW, media.jpeg(), 400, "bad_request"),
    "too large": ("", RAW, b"\xff\xd8\xff" + b"0" * 70000, 413, "payload_too_large"),
    "not an image": ("", RAW, b"GIF89a", 400, "bad_image"),
    "bad instance": ("", JSON, _instances(media.jpeg(), b"png?"), 400, "bad_image"),
    "bad json": ("", JSON, b"{", 400, "bad_request"),
    "deep json": ("", JSON, b"[" * 5000, 400, "bad_request"),
    "too many instances": ("", JSON, _instances(*[media.jpeg()] * 5), 400, "bad_request"),
    "model bug": ("", RAW, BROKEN, 500, "internal"),
    "bug past the model": ("top_k=99", RAW, media.jpeg(), 500, "internal"),
}
HEADERS = {401: {"WWW-Authenticate": 'Bearer realm="scoring"'}}


def _answer(wsgi, query, headers, body):
    response = Client(wsgi).post("/score", query_string=query, headers=headers, data=body)
    return response.status_code, dict(response.headers), response.get_data()


def _requests_counted(status: int) -> float:
    return metrics.REQUESTS.labels("/score", "POST", str(status))._value.get()  # noqa: SLF001


@pytest.mark.parametrize("case", CASES)
def test_post_score_answers_each_case_once_with_its_status_code_and_metric(app, case, caplog):
    assert isinstance(app.wsgi_app, Dispatcher)
    query, headers, body, status, code = CASES[case]
    counted = _requests_counted(status)
    with caplog.at_level(logging.ERROR):
        got_status, got_headers, got_body = _answer(app, query, headers, body)
    logged = [(r.name, bool(r.exc_info)) for r in caplog.records]
    assert got_status == status
    assert got_headers["Content-Type"] == "application/json"
    assert int(got_headers["Content-Length"]) == len(got_body)
    document = json.loads(got_body)
    if code is None:
        assert document["model"] == {"name": "model", "version": "1"}
    else:
        assert set(document) == {"error"} and document["error"]["code"] == code
        assert document["error"]["message"]
    for name, value in HEADERS.get(status, {}).items():
        assert got_headers[name] == value
    assert _requests_counted(status) == counted + 1  # counted once
    if status == 500:  # a server error is logged, with a traceback (the model's, or ours)
        assert any(exc_info for _, exc_info in logged), logged
    else:
        assert logged == []


def test_an_error_names_the_instance_it_is_about_once(app):
    """The error is made once (errors.ScoringError.at) and worded by the protocol."""
    _, _, body = _answer(app, "", JSON, _instances(media.jpeg(), b"png?"))
    assert json.loads(body)["error"]["message"] == "instances[1]: not a JPEG"
    _, _, body = _answer(app, "", RAW, b"png?")
    assert json.loads(body)["error"]["message"] == "not a JPEG"


def test_the_front_door_routes_post_score_and_everything_else(app):
    routes = []

    def counted(route, method, status):
        return metrics.REQUESTS.labels(route, method, str(status))._value.get()  # noqa: SLF001

    for route, method, status in [("/score", "POST", 200), ("/score", "GET", 405),
                                  ("unmatched", "POST", 404), ("/healthz", "GET", 200)]:
        routes.append(counted(route, method, status))
    assert Client(app).post("/score", headers=RAW, data=media.jpeg()).status_code == 200
    get = Client(app).get("/score")
    assert get.status_code == 405 and get.headers["Allow"] == "POST"
    assert Client(app).post("/score/", headers=RAW, data=media.jpeg()).status_code == 404
    assert Client(app).get("/healthz").status_code == 200
    after = [counted("/score", "POST", 200), counted("/score", "GET", 405),
             counted("unmatched", "POST", 404), counted("/healthz", "GET", 200)]
    assert after == [n + 1 for n in routes]


def test_options_names_the_methods_of_a_path_as_flask_did(app):
    answer = Client(app).open("/score", method="OPTIONS")
    assert answer.status_code == 200 and answer.get_data() == b""
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert Client(app).open("/nope", method="OPTIONS").status_code == 404
