"""Domain errors. Each one knows the HTTP status and short code it means, so
the HTTP layer maps them without knowing where they came from."""

from __future__ import annotations


class ScoringError(Exception):
    """Base: ``status`` and ``code`` go to the client with ``message``."""

    status = 500
    code = "internal"
    index: int | None = None  # which image of a multi-image request, if known

    def __init__(self, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ScoringError):
    status, code = 400, "bad_request"


class BadImage(ScoringError):
    """Not an image, truncated, empty or one the model cannot decode."""
    status, code = 400, "bad_image"


class TooManyPixels(ScoringError):
    """A decompression bomb, or just an image over SCORING_MAX_IMAGE_PIXELS."""
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


class DeadlineExceeded(ScoringError):
    status, code = 504, "deadline_exceeded"


class UnsupportedModel(Exception):
    """The SavedModel's signature is not one this service can serve.
    Raised at start, never during a request."""
