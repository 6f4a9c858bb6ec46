"""The open inference protocol (KServe v2; Triton's HTTP API) beside /score.

The same service answers; only the framing differs (``v2_tensors``). Errors
take the protocol's shape, ``{"error": "<message>"}``, with /score's statuses
and headers, on every path under /v2 (unknown paths and methods included).
Health and readiness are open; model metadata and infer need the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from werkzeug.wrappers import Request

from ..capture.wsgi import note
from ..dispatch import STARTED, Answer, Route, json_answer
from ..errors import NotFound, ScoringError, UnsupportedMediaType
from ..http import body, disconnect
from .v2_tensors import HEADER_LENGTH, INPUT, OUTPUT, Tensor, encode_response, parse_request

if TYPE_CHECKING:
    from ..service import Service

PREFIX = "/v2"

EXTENSIONS = ["binary_tensor_data", "classification"]
PROTOCOL_VERSION = "2"  # the server metadata's "version": the protocol spoken
_TYPES = ("", "application/json", "application/octet-stream")


def speaks(path: str) -> bool:
    """Whether a request path is this protocol's (its errors take its shape)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_document(error: ScoringError, request: Request | None = None) -> dict[str, Any]:
    """The error as the protocol writes it, naming the image that failed."""
    message = error.message
    if error.index is not None:
        message = f"{INPUT}[{error.index}]: {message}"
    return {"error": message}


def routes(service: Service) -> list[Route]:
    """Each model route in both URL forms, with and without ``/versions/<version>``."""
    def route(rule: str, method: str, handler: Callable[..., Answer], keyed: bool = False) -> Route:
        return Route(PREFIX + rule, (method,), lambda request, **args: handler(service, request, **args),
                     error_document, keyed)

    table = [route("", "GET", server_metadata), route("/health/live", "GET", live),
             route("/health/ready", "GET", ready)]
    for base in ("/models/<name>", "/models/<name>/versions/<version>"):
        table += [route(base + "/ready", "GET", model_ready),
                  route(base, "GET", model_metadata, keyed=True),
                  route(base + "/infer", "POST", infer, keyed=True)]
    return table


def _model(service: Service, name: str, version: str | None) -> None:
    """404 unless ``name`` (and ``version``, if given) is the model served."""
    cfg = service.config
    if name != cfg.model_name or version not in (None, cfg.model_version):
        asked = name if version is None else f"{name} version {version}"
        raise NotFound(f"unknown model {asked!r}; this server serves "
                       f"{cfg.model_name!r} version {cfg.model_version!r}")


# -- health and metadata -------------------------------------------------------
def server_metadata(service: Service, request: Request) -> Answer:
    return json_answer({"name": "aks-gpu-scoring", "version": PROTOCOL_VERSION,
                        "extensions": EXTENSIONS})


def live(service: Service, request: Request) -> Answer:
    return json_answer({"live": True})


def ready(service: Service, request: Request) -> Answer:
    service.require_ready()
    return json_answer({"ready": True})


def model_ready(service: Service, request: Request, name: str, version: str | None = None) -> Answer:
    _model(service, name, version)
    service.require_ready()
    return json_answer({"name": name, "ready": True})


def model_metadata(service: Service, request: Request, name: str,
                   version: str | None = None) -> Answer:
    _model(service, name, version)
    classes = service.num_classes
    return json_answer({
        "name": name, "versions": [service.config.model_version],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32",
                     "shape": [-1, classes if classes is not None else -1]}]})


# -- infer ---------------------------------------------------------------------
def _scores_tensor(service: Service, rows: list[np.ndarray], top_k: int, binary: bool) -> Tensor:
    """FP32 ``[N, K]`` scores, or with ``top_k`` Triton's classification form:
    BYTES ``[N, top_k]`` of ``"score:index:label"``, best first."""
    if not top_k:
        scores = np.asarray(rows, dtype=np.float32)
        return Tensor(OUTPUT, "FP32", list(scores.shape), scores, binary)
    top = [service.top_classes(row, top_k) for row in rows]
    values = [f"{c['score']:f}:{c['index']}:{c['label']}".encode()
              for classes in top for c in classes]
    return Tensor(OUTPUT, "BYTES", [len(top), len(top[0])], values, binary)


def infer(service: Service, request: Request, name: str, version: str | None = None) -> Answer:
    _model(service, name, version)
    encoding = request.headers.get("Content-Encoding", "identity")
    if request.mimetype not in _TYPES or encoding != "identity":
        raise UnsupportedMediaType(
            f"Content-Type {request.mimetype!r} with Content-Encoding {encoding!r} is not "
            "supported; send application/json (or application/octet-stream with "
            f"{HEADER_LENGTH}), uncompressed")
    service.admit_early()
    data = body.read(request.stream, request.content_length, service.config.max_body_bytes)
    parsed = parse_request(data, request.headers.get(HEADER_LENGTH), service.max_images)
    note(request.environ, images=parsed.images)  # payload capture, when this request is sampled
    rows = service.raw_scores(parsed.images, disconnect.probe(request.environ),
                              request.environ.get(STARTED))
    note(request.environ, rows=rows)
    header = {"model_name": name, "model_version": service.config.model_version}
    if parsed.id is not None:
        header["id"] = parsed.id
    tensor = _scores_tensor(service, rows, parsed.output.classification, parsed.output.binary)
    content, json_length = encode_response(header, [tensor])
    if json_length is None:
        return Answer(content)
    return Answer(content, "application/octet-stream", ((HEADER_LENGTH, str(json_length)),))
