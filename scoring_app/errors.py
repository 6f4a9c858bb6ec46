"""Domain errors. Each one knows the HTTP status and short code it means, so
the HTTP layer maps them without knowing where they came from.

An error is made once, where it is found, and never changed afterwards: each
protocol's renderer (``protocols/score.py``, ``protocols/v2.py``) words it for
its wire, e.g. the image's place in the request (``index``) as
``instances[1]: ...`` or ``image[1]: ...``.
"""

from __future__ import annotations

import copy


class ScoringError(Exception):
    """Base: ``status`` and ``code`` go to the client with ``message``."""

    status = 500
    code = "internal"
    index: int | None = None  # which image of a multi-image request, if known

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def at(self, index: int) -> "ScoringError":
        """This error, for the image at ``index`` of the request: a copy, so an
        error shared by several waiters (one batch call) is never rewritten."""
        located = copy.copy(self)
        located.index = index
        return located


class BadRequest(ScoringError):
    status, code = 400, "bad_request"


class BadImage(ScoringError):
    """Not an image, truncated, empty or one the model cannot decode."""
    status, code = 400, "bad_image"


class TooManyPixels(ScoringError):
    """A decompression bomb, or just an image over Var.MAX_IMAGE_PIXELS."""
    status, code = 400, "too_many_pixels"


class Unauthorized(ScoringError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, {"WWW-Authenticate": 'Bearer realm="scoring"'})


class RequestTimeout(ScoringError):
    """The body stopped arriving (the connection's read timed out, or it broke)."""
    status, code = 408, "request_timeout"


class PayloadTooLarge(ScoringError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ScoringError):
    status, code = 415, "unsupported_media_type"


class Unavailable(ScoringError):
    """Queue full or model not ready yet: the client should come back."""
    status, code = 503, "unavailable"

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message, {"Retry-After": str(retry_after_s)})


class NotReady(Unavailable):
    """Loading, warming up, draining or failed to warm up: the readiness probes' 503."""
    code = "not_ready"

    def __init__(self, why: str):
        super().__init__(f"not ready: {why}", retry_after_s=5)


class DeadlineExceeded(ScoringError):
    status, code = 504, "deadline_exceeded"


class ClientClosed(ScoringError):
    """The client closed its connection while its image waited: nobody reads this answer.
    499 is nginx's status for it (not an IANA one); it shows in the request metrics."""
    status, code = 499, "client_closed_request"


class NotFound(ScoringError):
    """No such route, or (v2) no such model name or version."""
    status, code = 404, "not_found"


class MethodNotAllowed(ScoringError):
    status, code = 405, "method_not_allowed"

    def __init__(self, message: str, allowed: list[str]):
        super().__init__(message, {"Allow": ", ".join(allowed)})


class UnsupportedModel(Exception):
    """The SavedModel's signature is not one this service can serve.
    Raised at start, never during a request."""
