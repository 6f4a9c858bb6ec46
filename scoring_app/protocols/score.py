"""``POST /score``: the one handler, framework-free.

Called by ``http.lane.ScoreLane`` for every ``POST /score``; Flask never
sees the route (``GET /score``'s 405 is Flask's, in ``http.probes``). Order
of checks: key (401), media type (415), ``top_k`` (400), size (413, from
Content-Length before reading, then a bounded read), then content (400).

Every error on non-v2 routes is written by ``error_document``:
``{"error": {"code": "<short_code>", "message": "<what to fix>"}}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from werkzeug.wrappers import Request

from ..capture.wsgi import note
from ..errors import BadRequest, ScoringError, UnsupportedMediaType
from ..http import body, disconnect, errors, jsonio

ROUTE, METHOD = "/score", "POST"
INSTANCES = "instances"  # how an error names a JSON request's images: instances[1]
# Raw bytes are sniffed, not trusted to the header: these all mean "raw bytes".
# (curl --data-binary sends application/x-www-form-urlencoded by default.)
_RAW_TYPES = ("", "application/octet-stream", "application/x-www-form-urlencoded")


def error_document(error: ScoringError, items: str | None = None) -> dict[str, Any]:
    """The error as this protocol writes it; ``items`` names a multi-image
    request's images, so the message says which one failed."""
    message = error.message
    if items is not None and error.index is not None:
        message = f"{items}[{error.index}]: {message}"
    return {"error": {"code": error.code, "message": message}}


def _top_k(request: Request) -> int:
    raw = request.args.get("top_k", "5")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise BadRequest(f"top_k must be a positive integer, got {raw!r}")
    return value


def _instances(data: bytes, max_items: int) -> list[bytes]:
    """``{"instances": [{"b64": "..."}, ...]}`` -> the decoded images."""
    try:
        doc = jsonio.loads(data)
    except jsonio.DecodeError:  # also invalid UTF-8 and deep nesting ([[[[...)
        raise BadRequest('the body is not valid JSON; send {"instances": [{"b64": "..."}]}') from None
    instances = doc.get(INSTANCES) if isinstance(doc, dict) else None
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


def _document(service: Any, request: Request, mimetype: str, is_json: bool) -> dict[str, Any]:
    service.authenticate(request.headers.get("Authorization"))
    if not (is_json or mimetype in _RAW_TYPES or mimetype.startswith("image/")):
        raise UnsupportedMediaType(
            f"Content-Type {mimetype!r} is not supported; send image bytes "
            "(image/*, application/octet-stream) or application/json instances")
    top_k = _top_k(request)
    service.admit_early()
    data = body.read(request.stream, request.content_length, service.config.max_body_bytes)
    images = _instances(data, service.config.max_queue) if is_json else [data]
    note(request.environ, images=images)  # payload capture, when this request is sampled
    predictions = service.classify(images, top_k, disconnect.probe(request.environ))
    note(request.environ, predictions=predictions)
    model = {"name": service.config.model_name, "version": service.config.model_version}
    return {"model": model, "predictions": predictions if is_json else predictions[0]}


def handle(service: Any, environ: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    """``POST /score``'s status, JSON document and extra headers; never raises."""
    request = Request(environ)
    mimetype = request.mimetype
    is_json = mimetype == "application/json"
    try:
        return 200, _document(service, request, mimetype, is_json), {}
    except Exception as exc:  # noqa: BLE001 - every error is answered; bugs are logged
        error = errors.as_scoring_error(exc)
        return error.status, error_document(error, INSTANCES if is_json else None), error.headers
