"""Any exception a request raises -> one ``ScoringError``, in one place.

Domain errors pass as they are; werkzeug's routing errors (404, 405) become
the equivalent domain error; anything else is a bug: logged with its
traceback here, and the client gets a 500 that tells it nothing more. Each
protocol then renders the one error in its own shape (``protocols.score``,
``protocols.v2``); nothing on the way out changes it.
"""

from __future__ import annotations

import logging

from werkzeug.exceptions import HTTPException

from ..errors import MethodNotAllowed, ScoringError

log = logging.getLogger("scoring_app.http")


class HTTPError(ScoringError):
    """Another of werkzeug's HTTP errors, with its own status and code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code = status, code


def as_scoring_error(exc: BaseException) -> ScoringError:
    """Call from an ``except``: the error to answer with (logged if it is ours)."""
    if isinstance(exc, ScoringError):
        if exc.status >= 500 and exc.status not in (503, 504):
            log.error("request failed: %s", exc.message)
        return exc
    if isinstance(exc, HTTPException):
        allowed = getattr(exc, "valid_methods", None)
        message = exc.description or exc.name
        if allowed:
            return MethodNotAllowed(message, list(allowed))
        return HTTPError(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"), message)
    log.exception("unexpected error")
    return ScoringError("internal error; it has been logged")
