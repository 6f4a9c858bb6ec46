"""``POST /score`` through ``lane.ScoreLane`` answers exactly as through Flask.

The app's WSGI callable is the lane, which wraps Flask's own; each request
below goes to both, and status, headers, body and the request metric must be
the same. A stand-in model, in-process."""

from __future__ import annotations

import base64
import json
import logging

import numpy as np
import pytest
from werkzeug.test import Client

from scoring_app import lane, metrics
from scoring_app.app import create_app
from scoring_app.errors import BadImage
from tests.app import media
from tests.app.conftest import SecretDir

KEY = "lane-test-key"
BROKEN = b"makes the stand-in model raise"


class StandInModel:
    sizes = [1, 2, 4]
    call_seconds: dict = {}

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
# name: (query, headers, body, the status it must get: so no case quietly
# turns into another, e.g. every one a 401)
CASES = {
    "raw image": ("", RAW, media.jpeg(), 200),
    "no content type": ("", AUTH, media.jpeg(), 200),
    "top_k": ("top_k=2", {**AUTH, "Content-Type": "image/jpeg"}, media.jpeg(), 200),
    "json instances": ("", JSON, _instances(media.jpeg(), media.jpeg()), 200),
    "no key": ("", {"Content-Type": "image/jpeg"}, media.jpeg(), 401),
    "wrong key": ("", {"Authorization": "Bearer nope"}, media.jpeg(), 401),
    "unsupported type": ("", {**AUTH, "Content-Type": "text/plain"}, b"hello", 415),
    "bad top_k": ("top_k=-1", RAW, media.jpeg(), 400),
    "too large": ("", RAW, b"\xff\xd8\xff" + b"0" * 70000, 413),
    "not an image": ("", RAW, b"GIF89a", 400),
    "bad instance": ("", JSON, _instances(media.jpeg(), b"png?"), 400),
    "bad json": ("", JSON, b"{", 400),
    "too many instances": ("", JSON, _instances(*[media.jpeg()] * 5), 400),
    "model bug": ("", RAW, BROKEN, 500),
    "bug past the model": ("top_k=99", RAW, media.jpeg(), 500),
}


def _answer(wsgi, query, headers, body):
    response = Client(wsgi).post("/score", query_string=query, headers=headers, data=body)
    return response.status_code, dict(response.headers), response.get_data()


def _requests_counted(status: int) -> float:
    return metrics.REQUESTS.labels("/score", "POST", str(status))._value.get()  # noqa: SLF001


@pytest.mark.parametrize("case", CASES)
def test_the_lane_answers_as_flask_does(app, case, caplog):
    assert isinstance(app.wsgi_app, lane.ScoreLane)
    flask_only = app.wsgi_app.app
    query, headers, body, status = CASES[case]
    counted = [_requests_counted(status)]
    with caplog.at_level(logging.ERROR):
        through_lane = _answer(app, query, headers, body)
        lane_logged = [(r.name, r.getMessage(), bool(r.exc_info)) for r in caplog.records]
        counted.append(_requests_counted(status))
        caplog.clear()
        through_flask = _answer(flask_only, query, headers, body)
        flask_logged = [(r.name, r.getMessage(), bool(r.exc_info)) for r in caplog.records]
        counted.append(_requests_counted(status))
    assert through_lane[0] == status
    assert through_lane == through_flask
    assert lane_logged == flask_logged
    assert counted == [counted[0], counted[0] + 1, counted[0] + 2]  # each counted it once
    if status == 500:
        assert lane_logged, "a server error is logged"


def test_the_lane_takes_post_score_and_passes_everything_else_to_flask(app):
    seen = []

    def flask_spy(environ, start_response):
        seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        return app.wsgi_app.app(environ, start_response)

    spied = lane.ScoreLane(flask_spy, app.extensions["scoring"])
    assert Client(spied).post("/score", headers=RAW, data=media.jpeg()).status_code == 200
    assert seen == []
    get = Client(spied).get("/score")
    assert get.status_code == 405 and get.headers["Allow"] == "POST"
    assert Client(spied).post("/score/", headers=RAW, data=media.jpeg()).status_code == 404
    assert Client(spied).get("/healthz").status_code == 200
    assert seen == [("GET", "/score"), ("POST", "/score/"), ("GET", "/healthz")]
