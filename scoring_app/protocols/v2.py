"""The open inference protocol (KServe v2; Triton's HTTP API) next to /score.

The same service answers: the key check, the body reader (``http.body``), the
JSON parser (``http.jsonio``), the batcher and the domain errors are /score's;
only the framing differs (``v2_tensors``). Errors take the protocol's shape,
``{"error": "<message>"}`` (``error_document``), with /score's statuses and
headers; the app's error handler uses it for every path under /v2, unknown
paths and methods included. Health and readiness are open, as /readyz is;
model metadata and infer need the Bearer key.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify, request

from ..capture.wsgi import note
from ..errors import NotFound, ScoringError, Unavailable, UnsupportedMediaType
from ..http import body, disconnect
from ..http.probes import service as _service
from .v2_tensors import HEADER_LENGTH, INPUT, OUTPUT, Tensor, encode_response, parse_request

PREFIX = "/v2"
v2 = Blueprint("v2", __name__, url_prefix=PREFIX)

EXTENSIONS = ["binary_tensor_data", "classification"]
PROTOCOL_VERSION = "2"  # the server metadata's "version": the protocol spoken
_TYPES = ("", "application/json", "application/octet-stream")


def speaks(path: str) -> bool:
    """Whether a request path is this protocol's (its errors take its shape)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_document(error: ScoringError) -> dict[str, Any]:
    """The error as the protocol writes it, naming the image that failed."""
    message = error.message
    if error.index is not None:
        message = f"{INPUT}[{error.index}]: {message}"
    return {"error": message}


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
    classes = service.model.num_classes
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
    service.admit_early()
    data = body.read(request.stream, request.content_length, service.config.max_body_bytes)
    parsed = parse_request(data, request.headers.get(HEADER_LENGTH), service.config.max_queue)
    note(request.environ, images=parsed.images)  # payload capture, when this request is sampled
    rows = service.raw_scores(parsed.images, disconnect.probe(request.environ))
    note(request.environ, rows=rows)
    header = {"model_name": name, "model_version": service.config.model_version}
    if parsed.id is not None:
        header["id"] = parsed.id
    tensor = _scores_tensor(rows, parsed.output.classification, parsed.output.binary)
    content, json_length = encode_response(header, [tensor])
    if json_length is None:
        return Response(content, mimetype="application/json")
    return Response(content, mimetype="application/octet-stream",
                    headers={HEADER_LENGTH: str(json_length)})
