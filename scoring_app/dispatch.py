"""The service's one front door: a WSGI app over a table of routes.

Every request passes here once, whatever its protocol: the route is matched
(werkzeug's routing), the Bearer key checked when the route needs one, the
route's handler called, any exception turned into one ``ScoringError`` and
written in the route's protocol's error shape, the deployment header added and
the request metric recorded. Handlers are codecs (``protocols/``): they parse a
request, call the service and encode its answer; they never write an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request

from . import metrics
from .contract import DEPLOYMENT_HEADER
from .errors import ScoringError
from .http import errors, jsonio

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Headers = Sequence[tuple[str, str]]
#: An error as a protocol writes it: the JSON document for ``error``, asked by ``request``.
ErrorShape = Callable[[ScoringError, Request], Any]
#: The metric's route label for a request that matched no route (one label for all of them).
UNMATCHED = "unmatched"
#: The environ key of the request's start: time.monotonic() when its headers had been read
#: and it reached the dispatcher (the request metric's start, and the queue bound's).
STARTED = "scoring.started"


@dataclass(slots=True)  # not frozen: a frozen dataclass costs a setattr call per field, per answer
class Answer:
    """What a handler returns: the body as it goes on the wire, and its headers."""

    body: bytes
    content_type: str = "application/json"
    headers: Headers = ()
    status: int = 200


def json_answer(document: Any, status: int = 200, headers: Headers = ()) -> Answer:
    return Answer(jsonio.response_body(document), headers=headers, status=status)


@dataclass(frozen=True)
class Route:
    """One entry of the table. ``handler`` takes the request and the rule's
    arguments; ``keyed``: the key is checked before the handler runs."""

    rule: str
    methods: tuple[str, ...]
    handler: Callable[..., Answer]
    errors: ErrorShape
    keyed: bool = False


class Dispatcher:
    """The WSGI app. ``authenticate`` raises ``Unauthorized`` for a missing or wrong
    ``Authorization`` header; ``error_shape_for`` picks the shape of an error on a
    path that matched no route; ``deployment``: the header's value (empty: none)."""

    def __init__(self, routes: Iterable[Route], authenticate: Callable[[str | None], None],
                 error_shape_for: Callable[[str], ErrorShape], deployment: str = ""):
        routes = list(routes)
        self._map = Map([Rule(r.rule, methods=list(r.methods), endpoint=r) for r in routes])
        # Fixed paths are looked up in a dict first; the Map answers the rest. GET's
        # rules answer HEAD too, as werkzeug's do.
        self._fixed: dict[tuple[str, str], Route] = {}
        for route in routes:
            if "<" not in route.rule:
                for method in (*route.methods, *(("HEAD",) if "GET" in route.methods else ())):
                    self._fixed[(method, route.rule)] = route
        self._authenticate = authenticate
        self._error_shape_for = error_shape_for
        self._extra: tuple[tuple[str, str], ...] = (
            ((DEPLOYMENT_HEADER, deployment),) if deployment else ())

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        started = environ[STARTED] = time.monotonic()
        method = environ.get("REQUEST_METHOD", "GET")
        request = Request(environ)
        route: Route | None = None
        try:
            if method == "OPTIONS":
                route, answer = self._options(environ)
            else:
                route, args = self._match(method, environ)
                if route.keyed:
                    self._authenticate(environ.get("HTTP_AUTHORIZATION"))
                answer = route.handler(request, **args)
        except RequestRedirect as redirect:  # a path with "//" in it, as werkzeug routes it
            answer = Answer(b"", "text/plain", (("Location", redirect.new_url),), redirect.code)
        except Exception as exc:  # every error is answered; a bug is logged
            answer = self._error(exc, route, request)
        start_response(_status_line(answer.status),
                       [("Content-Type", answer.content_type),
                        ("Content-Length", str(len(answer.body))), *answer.headers, *self._extra])
        metrics.request_done(route.rule if route is not None else UNMATCHED, method, answer.status,
                             time.monotonic() - started)
        return [b"" if method == "HEAD" else answer.body]

    def _match(self, method: str, environ: Environ) -> tuple[Route, Mapping[str, Any]]:
        route = self._fixed.get((method, environ.get("PATH_INFO", "")))
        if route is not None:
            return route, {}
        matched, args = self._map.bind_to_environ(environ).match(method=method)
        assert isinstance(matched, Route)
        return matched, args

    def _options(self, environ: Environ) -> tuple[Route, Answer]:
        """``OPTIONS`` on a route's path: its methods, with no body (as Flask answered)."""
        adapter = self._map.bind_to_environ(environ)
        methods = list(adapter.allowed_methods())
        if not methods:
            raise NotFound()
        route, _ = adapter.match(method=methods[0])
        assert isinstance(route, Route)
        allow = ", ".join(dict.fromkeys([*methods, "OPTIONS"]))
        return route, Answer(b"", "text/html; charset=utf-8", (("Allow", allow),))

    def _error(self, exc: Exception, route: Route | None, request: Request) -> Answer:
        error = errors.as_scoring_error(exc)
        shape = route.errors if route is not None else self._error_shape_for(request.path)
        return json_answer(shape(error, request), error.status, tuple(error.headers.items()))


def _status_line(status: int) -> str:
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Client Closed Request')}"

