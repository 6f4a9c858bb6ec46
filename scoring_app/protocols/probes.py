"""The routes around scoring: liveness, readiness, the OpenAPI document and
``GET /score``'s 405. Open (no key), with /score's error shape."""

from __future__ import annotations

from typing import TYPE_CHECKING

from werkzeug.wrappers import Request

from ..contract import LIVE_PATH, READY_PATH, SCORE_PATH
from ..dispatch import Answer, Route, json_answer
from ..errors import MethodNotAllowed
from . import openapi, score

if TYPE_CHECKING:
    from ..service import Service

_ALIVE = json_answer({"status": "alive"})
_OK = json_answer({"status": "ok"})
_READY = json_answer({"status": "ready"})


def routes(service: Service) -> list[Route]:
    def readyz(request: Request) -> Answer:
        service.require_ready()
        return _READY

    def swagger(request: Request) -> Answer:
        cfg = service.config
        return json_answer(openapi.document(cfg.model_name, cfg.model_version, cfg.max_batch_size))

    def score_get(request: Request) -> Answer:
        raise MethodNotAllowed(f"POST the image bytes to {SCORE_PATH}", ["POST"])

    get = ("GET",)
    return [Route("/", get, lambda request: _ALIVE, score.error_document),
            Route(LIVE_PATH, get, lambda request: _OK, score.error_document),
            Route(READY_PATH, get, readyz, score.error_document),
            Route("/swagger.json", get, swagger, score.error_document),
            Route(SCORE_PATH, get, score_get, score.error_document)]
