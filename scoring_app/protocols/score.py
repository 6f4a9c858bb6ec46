"""``POST /score``, the 2019 clients' call, and the error shape of every route outside /v2.

Raw image bytes answer one list of classes; JSON ``{"instances": [{"b64": ...}]}``
one list per instance. Checks in order, after the key (the dispatcher's): media
type (415), ``top_k`` (400), size (413, from Content-Length before reading, then
a bounded read), then content (400). Errors read
``{"error": {"code": "<short_code>", "message": "<what to fix>"}}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request

from ..capture.wsgi import note
from ..contract import SCORE_PATH
from ..dispatch import STARTED, Answer, Route, json_answer
from ..errors import BadRequest, ScoringError, UnsupportedMediaType
from ..http import body, disconnect, jsonio

if TYPE_CHECKING:
    from ..service import Service

INSTANCES = "instances"  # how an error names a JSON request's images: instances[1]
# Raw bytes are sniffed, not trusted to the header: these all mean "raw bytes".
# (curl --data-binary sends application/x-www-form-urlencoded by default.)
_RAW_TYPES = ("", "application/octet-stream", "application/x-www-form-urlencoded")
_JSON = "application/json"


def error_document(error: ScoringError, request: Request) -> dict[str, Any]:
    """The error as this protocol writes it; a JSON request's error names the
    instance that failed."""
    message = error.message
    if error.index is not None and request.mimetype == _JSON:
        message = f"{INSTANCES}[{error.index}]: {message}"
    return {"error": {"code": error.code, "message": message}}


def routes(service: Service) -> list[Route]:
    return [Route(SCORE_PATH, ("POST",), lambda request: score(service, request),
                  error_document, keyed=True)]


def score(service: Service, request: Request) -> Answer:
    mimetype = request.mimetype
    is_json = mimetype == _JSON
    if not (is_json or mimetype in _RAW_TYPES or mimetype.startswith("image/")):
        raise UnsupportedMediaType(
            f"Content-Type {mimetype!r} is not supported; send image bytes "
            "(image/*, application/octet-stream) or application/json instances")
    top_k = _top_k(request)
    service.admit_early()
    data = body.read(request.stream, request.content_length, service.config.max_body_bytes)
    images = _instances(data, service.max_images) if is_json else [data]
    note(request.environ, images=images)  # payload capture, when this request is sampled
    predictions = service.classify(images, top_k, disconnect.probe(request.environ),
                                   request.environ.get(STARTED))
    note(request.environ, predictions=predictions)
    model = {"name": service.config.model_name, "version": service.config.model_version}
    return json_answer({"model": model, "predictions": predictions if is_json else predictions[0]})


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
