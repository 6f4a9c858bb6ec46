"""HTTP layer: parse requests, call the service, map domain errors to JSON.

Order of checks on ``POST /score``: key (401), media type (415), size (413,
from Content-Length before reading, then a bounded read), then content (400).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Request

from . import jsonio, metrics, openapi
from .errors import (BadRequest, PayloadTooLarge, RequestTimeout, ScoringError,
                     UnsupportedMediaType)

log = logging.getLogger(__name__)

api = Blueprint("api", __name__)
probes = Blueprint("probes", __name__)

_CHUNK = 64 * 1024
# Raw bytes are sniffed, not trusted to the header: these all mean "raw bytes".
# (curl --data-binary sends application/x-www-form-urlencoded by default.)
_RAW_TYPES = ("", "application/octet-stream", "application/x-www-form-urlencoded")


def _service():
    return current_app.extensions["scoring"]


def error_document(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str, headers=None):
    return _json_response(status, error_document(code, message), headers)


def _json_response(status: int, document: dict, headers=None):
    response = jsonify(document)
    response.status_code = status
    response.headers.update(headers or {})
    return response


# -- probes -------------------------------------------------------------------
@probes.get("/")
def root():
    return jsonify({"status": "alive"})


@probes.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@probes.get("/readyz")
def readyz():
    why = _service().readiness()
    if why is not None:
        return error_response(503, "not_ready", f"not ready: {why}", {"Retry-After": "5"})
    return jsonify({"status": "ready"})


@probes.get("/swagger.json")
def swagger():
    cfg = _service().config
    return jsonify(openapi.document(cfg.model_name, cfg.model_version, cfg.max_batch_size))


# -- scoring -------------------------------------------------------------------
def _read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes; 413 as soon as the body is known to be larger,
    408 when it stops arriving (each read times out after gunicorn's keepalive:
    scoring_app/worker.py)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is {request.content_length} bytes; "
                              f"the limit is {limit} bytes")
    chunks, size = [], 0
    while True:
        try:
            chunk = request.stream.read(min(_CHUNK, limit + 1 - size))
        except OSError:  # timed out, or the client went away
            raise RequestTimeout("the request body stopped arriving before it was complete") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")


def _top_k(request: Request) -> int:
    raw = request.args.get("top_k", "5")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BadRequest(f"top_k must be a positive integer, got {raw!r}")
    return value


def _instances(body: bytes, max_items: int) -> list[bytes]:
    """``{"instances": [{"b64": "..."}, ...]}`` -> the decoded images."""
    try:
        doc = jsonio.loads(body)
    except jsonio.DecodeError:  # also invalid UTF-8 and deep nesting ([[[[...)
        raise BadRequest('the body is not valid JSON; send {"instances": [{"b64": "..."}]}') from None
    instances = doc.get("instances") if isinstance(doc, dict) else None
    if not isinstance(instances, list) or not instances:
        raise BadRequest('send {"instances": [{"b64": "..."}, ...]} with at least one instance')
    if len(instances) > max_items:
        raise BadRequest(f"at most {max_items} instances per request")
    images = []
    for i, instance in enumerate(instances):
        b64 = instance.get("b64") if isinstance(instance, dict) else None
        if not isinstance(b64, str):
            raise BadRequest(f'instances[{i}] must be an object with a "b64" string')
        try:
            images.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError):
            raise BadRequest(f"instances[{i}].b64 is not valid base64") from None
    return images


def score_document(service, request: Request) -> dict:
    """``POST /score``'s answer (raises ``ScoringError``s). Called by the view
    below and, for the same requests, by ``lane.ScoreLane``, which skips Flask."""
    service.authenticate(request.headers.get("Authorization"))
    mimetype = request.mimetype
    is_json = mimetype == "application/json"
    if not (is_json or mimetype in _RAW_TYPES or mimetype.startswith("image/")):
        raise UnsupportedMediaType(
            f"Content-Type {mimetype!r} is not supported; send image bytes "
            "(image/*, application/octet-stream) or application/json instances")
    top_k = _top_k(request)
    body = _read_body(request, service.config.max_body_bytes)
    images = _instances(body, service.config.max_queue) if is_json else [body]
    try:
        predictions = service.score(images, top_k)
    except ScoringError as exc:
        if is_json and exc.index is not None:
            exc.message = f"instances[{exc.index}]: {exc.message}"
        raise
    model = {"name": service.config.model_name, "version": service.config.model_version}
    return {"model": model, "predictions": predictions if is_json else predictions[0]}


@api.post("/score")
def score():
    return jsonify(score_document(_service(), request))


@api.get("/score")
def score_get():
    return error_response(405, "method_not_allowed",
                          "POST the image bytes to /score", {"Allow": "POST"})


# -- errors and metrics -----------------------------------------------------
def scoring_error(exc: ScoringError) -> tuple[int, dict, dict[str, str]]:
    """A domain error's status, JSON document and headers (logged if it is ours)."""
    if exc.status >= 500 and exc.status not in (503, 504):
        log.error("request failed: %s", exc.message)
    return exc.status, error_document(exc.code, exc.message), exc.headers


def unexpected_error() -> tuple[int, dict, dict[str, str]]:
    """Call from an ``except``: logs the traceback; the client learns nothing of it."""
    log.exception("unexpected error")
    return 500, error_document("internal", "internal error; it has been logged"), {}


def handle_scoring_error(exc: ScoringError):
    return _json_response(*scoring_error(exc))


def handle_http_error(exc: HTTPException):
    code = (exc.name or "error").lower().replace(" ", "_")
    allowed = getattr(exc, "valid_methods", None)
    return error_response(exc.code or 500, code, exc.description or exc.name,
                          {"Allow": ", ".join(allowed)} if allowed else None)


def handle_unexpected(exc: Exception):
    return _json_response(*unexpected_error())


def start_timer():
    g.started = time.perf_counter()


def record(response):
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics.request_done(route, request.method, response.status_code,
                         time.perf_counter() - g.get("started", time.perf_counter()))
    return response
