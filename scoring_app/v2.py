"""The open inference protocol (KServe v2; Triton's HTTP API) next to /score.

The same service answers: the key check, the body limit, the batcher and the
domain errors are /score's; only the framing differs (``v2_tensors``). Errors
take the protocol's shape, ``{"error": "<message>"}``, with /score's statuses
and headers. Health and readiness are open, as /readyz is; model metadata and
infer need the Bearer key. Unknown paths and methods under /v2 get v2-shaped
404 and 405 answers.
"""

from __future__ import annotations

import logging

import numpy as np
from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException, NotFound

from . import routes
from .errors import ScoringError, Unavailable, UnsupportedMediaType
from .v2_tensors import HEADER_LENGTH, INPUT, OUTPUT, Tensor, encode_response, parse_request

log = logging.getLogger(__name__)

v2 = Blueprint("v2", __name__, url_prefix="/v2")

EXTENSIONS = ["binary_tensor_data", "classification"]
PROTOCOL_VERSION = "2"  # the server metadata's "version": the protocol spoken
_TYPES = ("", "application/json", "application/octet-stream")


_service = routes._service  # noqa: SLF001 - one way to reach the app's Service


def _error(status: int, message: str, headers=None):
    response = jsonify({"error": message})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _model(name: str, version: str | None) -> None:
    """404 unless ``name`` (and ``version``, if given) is the model served."""
    cfg = _service().config
    if name != cfg.model_name or version not in (None, cfg.model_version):
        asked = name if version is None else f"{name} version {version}"
        raise NotFound(f"unknown model {asked!r}; this server serves "
                       f"{cfg.model_name!r} version {cfg.model_version!r}")


def _keyed_model(name: str, version: str | None):
    """The key first (401), then the model (404): the service, for a keyed route."""
    service = _service()
    service.authenticate(request.headers.get("Authorization"))
    _model(name, version)
    return service


# -- health and metadata -------------------------------------------------------
@v2.get("")
def server_metadata():
    return jsonify({"name": "aks-gpu-scoring", "version": PROTOCOL_VERSION,
                    "extensions": EXTENSIONS})


@v2.get("/health/live")
def live():
    return jsonify({"live": True})


def _ready() -> None:
    why = _service().readiness()
    if why is not None:
        raise Unavailable(f"not ready: {why}", retry_after_s=5)


@v2.get("/health/ready")
def ready():
    _ready()
    return jsonify({"ready": True})


@v2.get("/models/<name>/ready")
@v2.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    _model(name, version)
    _ready()
    return jsonify({"name": name, "ready": True})


@v2.get("/models/<name>")
@v2.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    service = _keyed_model(name, version)
    classes = service.model.signature.num_classes
    return jsonify({
        "name": name, "versions": [service.config.model_version],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32",
                     "shape": [-1, classes if classes is not None else -1]}]})


# -- infer ---------------------------------------------------------------------
def _scores_tensor(rows: list, top_k: int, binary: bool) -> Tensor:
    """FP32 ``[N, K]`` scores, or with ``top_k`` Triton's classification form:
    BYTES ``[N, top_k]`` of ``"score:index:label"``, best first."""
    if not top_k:
        scores = np.asarray(rows, dtype=np.float32)
        return Tensor(OUTPUT, "FP32", list(scores.shape), scores, binary)
    model = _service().model
    top = [model.postprocess(row, top_k) for row in rows]
    values = [f"{c['score']:f}:{c['index']}:{c['label']}".encode()
              for classes in top for c in classes]
    return Tensor(OUTPUT, "BYTES", [len(top), len(top[0])], values, binary)


@v2.post("/models/<name>/infer")
@v2.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
    service = _keyed_model(name, version)
    encoding = request.headers.get("Content-Encoding", "identity")
    if request.mimetype not in _TYPES or encoding != "identity":
        raise UnsupportedMediaType(
            f"Content-Type {request.mimetype!r} with Content-Encoding {encoding!r} is not "
            "supported; send application/json (or application/octet-stream with "
            f"{HEADER_LENGTH}), uncompressed")
    body = routes._read_body(request, service.config.max_body_bytes)  # noqa: SLF001 - /score's bounded read
    parsed = parse_request(body, request.headers.get(HEADER_LENGTH), service.config.max_queue)
    try:
        rows = service.predict(parsed.images)
    except ScoringError as exc:
        if exc.index is not None:
            exc.message = f"{INPUT}[{exc.index}]: {exc.message}"
        raise
    header = {"model_name": name, "model_version": service.config.model_version}
    if parsed.id is not None:
        header["id"] = parsed.id
    tensor = _scores_tensor(rows, parsed.output.classification, parsed.output.binary)
    content, json_length = encode_response(header, [tensor])
    if json_length is None:
        return Response(content, mimetype="application/json")
    return Response(content, mimetype="application/octet-stream",
                    headers={HEADER_LENGTH: str(json_length)})


# -- errors: the protocol's shape ----------------------------------------------
@v2.errorhandler(ScoringError)
def _scoring_error(exc: ScoringError):
    return _error(exc.status, exc.message, exc.headers)


@v2.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    allowed = getattr(exc, "valid_methods", None)
    return _error(exc.code or 500, exc.description or exc.name,
                  {"Allow": ", ".join(allowed)} if allowed else None)


@v2.app_errorhandler(404)
@v2.app_errorhandler(405)
def _routing_error(exc: HTTPException):
    """Routing fails before any blueprint is chosen: paths under /v2 still get
    the protocol's shape, all others /score's."""
    if request.path == "/v2" or request.path.startswith("/v2/"):
        return _http_error(exc)
    return routes.handle_http_error(exc)


@v2.errorhandler(Exception)
def _unexpected(exc: Exception):
    log.exception("unexpected error")
    return _error(500, "internal error; it has been logged")
