"""The app's WSGI entry: ``POST /score`` to its handler, everything else to Flask.

The 2019 clients' one call is the service's busiest route, and Flask's
per-request machinery (request and app contexts, URL matching, signals,
hooks, the Response object) is a sizeable share of a small model's request
(docs/performance.md). So ``POST /score`` has one handler,
``protocols.score.handle``, with no Flask in it, and Flask serves every other
route (``GET /score``'s 405 included).

``ScoreLane`` wraps the Flask app's WSGI callable, the way Flask documents
for middleware (``app.wsgi_app = ScoreLane(app.wsgi_app, service)``).

Adding a hook (auth, tracing, a header on every answer, a metric): put it
*around* this lane, as WSGI middleware on ``app.wsgi_app`` after
``create_app`` has installed the lane, so it sees every request. A Flask
``before_request``/``after_request``/``teardown_request`` hook would not see
``POST /score``; ``check_flask_hooks`` makes ``create_app`` refuse to start
with one it does not know, instead of letting it silently skip the route.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES

from .. import metrics
from ..protocols import score
from . import jsonio


class ScoreLane:
    def __init__(self, app: Callable[..., Iterable[bytes]], service: Any):
        self.app = app  # the Flask app's own WSGI callable: everything else
        self.service = service

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != score.ROUTE or environ.get("REQUEST_METHOD") != score.METHOD:
            return self.app(environ, start_response)
        started = time.perf_counter()
        status, document, headers = score.handle(self.service, environ)
        body = jsonio.response_body(document)
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'Client Closed Request')}",
                       [("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))), *headers.items()])
        metrics.request_done(score.ROUTE, score.METHOD, status, time.perf_counter() - started)
        return [body]


def check_flask_hooks(flask_app: Any, known: set[Callable]) -> None:
    """Refuse Flask request hooks other than ``known`` (the ones the lane does
    itself: the request metric): they would skip ``POST /score``."""
    hooks = [*flask_app.before_request_funcs.items(), *flask_app.after_request_funcs.items(),
             *flask_app.teardown_request_funcs.items()]
    unknown = [fn for _, fns in hooks for fn in fns if fn not in known]
    if unknown:
        names = ", ".join(getattr(fn, "__qualname__", repr(fn)) for fn in unknown)
        raise RuntimeError(f"Flask request hooks {names} would not see POST /score "
                           "(scoring_app/http/lane.py): add them as WSGI middleware "
                           "around app.wsgi_app instead")
