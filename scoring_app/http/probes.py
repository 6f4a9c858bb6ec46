"""The routes Flask serves besides the v2 protocol: liveness, readiness, the
OpenAPI document, and ``GET /score``'s 405 (``POST /score`` never reaches
Flask: ``http.lane``). Plus the request metric for every route Flask serves
(the lane records ``POST /score``'s itself).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from .. import metrics
from ..errors import MethodNotAllowed, Unavailable
from . import openapi

probes = Blueprint("probes", __name__)


def service() -> Any:
    """The app's ``Service`` (``app.extensions["scoring"]``)."""
    return current_app.extensions["scoring"]


@probes.get("/")
def root():
    return jsonify({"status": "alive"})


@probes.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@probes.get("/readyz")
def readyz():
    why = service().readiness()
    if why is not None:
        raise NotReady(f"not ready: {why}")
    return jsonify({"status": "ready"})


class NotReady(Unavailable):
    code = "not_ready"

    def __init__(self, message: str):
        super().__init__(message, retry_after_s=5)


@probes.get("/swagger.json")
def swagger():
    cfg = service().config
    return jsonify(openapi.document(cfg.model_name, cfg.model_version, cfg.max_batch_size))


@probes.get("/score")
def score_get():
    raise MethodNotAllowed("POST the image bytes to /score", ["POST"])


# -- the request metric, for the routes Flask serves ----------------------------
def start_timer() -> None:
    g.started = time.perf_counter()


def record(response):
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics.request_done(route, request.method, response.status_code,
                         time.perf_counter() - g.get("started", time.perf_counter()))
    return response


METRIC_HOOKS = {start_timer, record}  # what ScoreLane does itself for POST /score
