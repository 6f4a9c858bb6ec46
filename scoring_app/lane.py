"""``POST /score`` straight to the service, past Flask's per-request machinery.

The 2019 clients' one call is the service's hot path. Flask spends about 50 us
on each request before and after the view (request and app contexts, URL
matching, signals, hooks, the Response object), measured on this project's
2-vCPU machine against the same work on a bare werkzeug ``Request``: a tenth
of what the event loop spends on a tiny model's request at c=32 (README,
Performance).

``ScoreLane`` wraps the Flask app's WSGI callable, the way Flask documents
for middleware (``app.wsgi_app = ScoreLane(app.wsgi_app, service)``). It takes
``POST /score`` and nothing else, and answers it with the functions the Flask
view uses (``routes.score_document``, ``routes.scoring_error``,
``routes.unexpected_error``): same checks in the same order, same JSON, same
headers, same metrics. Every other request, ``GET /score``'s 405 included,
goes to Flask. tests/app/test_lane.py holds the two to the same answers.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

from . import jsonio, metrics, routes
from .errors import ScoringError

ROUTE, METHOD = "/score", "POST"


class ScoreLane:
    def __init__(self, app: Callable[..., Iterable[bytes]], service: Any):
        self.app = app  # the Flask app's own WSGI callable: everything else
        self.service = service

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != ROUTE or environ.get("REQUEST_METHOD") != METHOD:
            return self.app(environ, start_response)
        started = time.perf_counter()
        try:
            status, headers = 200, {}
            document = routes.score_document(self.service, Request(environ))
        except ScoringError as exc:
            status, document, headers = routes.scoring_error(exc)
        except Exception:  # noqa: BLE001 - logged; the client gets a JSON 500
            status, document, headers = routes.unexpected_error()
        body = jsonio.response_body(document)
        start_response(f"{status} {HTTP_STATUS_CODES[status]}",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))), *headers.items()])
        metrics.request_done(ROUTE, METHOD, status, time.perf_counter() - started)
        return [body]
