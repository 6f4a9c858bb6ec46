"""The OpenAPI 3.1 document served at ``/swagger.json``.

Kept next to the routes and checked by the tests against real responses, so
it describes what the server does, not what it was meant to do.
"""

from __future__ import annotations

from typing import Any

from ..contract import Var


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response = {"description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "required": True,
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
_BEARER = {"WWW-Authenticate": {"description": "`Bearer realm=\"scoring\"`.", "required": True,
                                "schema": {"type": "string", "pattern": "^Bearer"}}}
_STATUS = {"description": "Status.", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/Status"}}}}


# -- the open inference protocol (KServe v2), scoring_app/protocols/v2.py -----------------
def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _v2_json(description: str, schema: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": _ref(schema)}}}
    if headers:
        response["headers"] = headers
    return response


def _v2_error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return _v2_json(description, "V2Error", headers)


_HEADER_LENGTH = {"description": "Length of the JSON header at the start of the body; "
                                 "the tensors' raw bytes follow it (Triton's binary-data "
                                 "extension).", "schema": {"type": "string", "pattern": "^[0-9]+$"}}
_TENSOR_META = {"type": "object", "required": ["name", "datatype", "shape"],
                "properties": {"name": {"type": "string"}, "datatype": {"type": "string"},
                               "shape": {"type": "array", "items": {"type": "integer"}}}}
_V2_SCHEMAS = {
    "V2Error": {"type": "object", "required": ["error"], "additionalProperties": False,
                "properties": {"error": {"type": "string"}}},
    "V2Live": {"type": "object", "required": ["live"], "properties": {"live": {"const": True}}},
    "V2Ready": {"type": "object", "required": ["ready"], "properties": {"ready": {"const": True}}},
    "V2ModelReady": {"type": "object", "required": ["name", "ready"],
                     "properties": {"name": {"type": "string"}, "ready": {"const": True}}},
    "V2ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"],
                         "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                        "extensions": {"type": "array",
                                                       "items": {"type": "string"}}}},
    "V2ModelMetadata": {
        "type": "object", "required": ["name", "versions", "platform", "inputs", "outputs"],
        "additionalProperties": False,
        "properties": {"name": {"type": "string"},
                       "versions": {"type": "array", "items": {"type": "string"}},
                       "platform": {"type": "string"},
                       "inputs": {"type": "array", "items": _TENSOR_META},
                       "outputs": {"type": "array", "items": _TENSOR_META}}},
    "V2InferRequest": {
        "type": "object", "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {
                "binary_data_output": {"type": "boolean", "default": False}}},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["name", "datatype", "shape"],
                "properties": {
                    "name": {"const": "image"}, "datatype": {"const": "BYTES"},
                    "shape": {"type": "array", "minItems": 1, "maxItems": 2,
                              "items": {"type": "integer", "minimum": 0},
                              "description": "[N] or [N, 1]."},
                    "parameters": {"type": "object", "properties": {
                        "binary_data_size": {"type": "integer", "minimum": 0}}},
                    "data": {"type": "array", "description": "Each image, base64-encoded "
                             "(when the raw bytes are not appended instead).",
                             "items": {"type": "string", "contentEncoding": "base64"}}}}},
            "outputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"const": "scores"}, "parameters": {
                    "type": "object", "properties": {
                        "binary_data": {"type": "boolean"},
                        "classification": {
                            "type": "integer", "minimum": 0,
                            "description": "Top k as BYTES \"score:index:label\"."}}}}}}}},
    "V2InferResponse": {
        "type": "object", "required": ["model_name", "model_version", "outputs"],
        "additionalProperties": False,
        "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "datatype", "shape"],
                "additionalProperties": False,
                "properties": {
                    "name": {"const": "scores"}, "datatype": {"enum": ["FP32", "BYTES"]},
                    "shape": {"type": "array", "minItems": 2, "maxItems": 2,
                              "items": {"type": "integer", "minimum": 0}},
                    "parameters": {"type": "object", "required": ["binary_data_size"],
                                   "properties": {"binary_data_size": {
                                       "type": "integer", "minimum": 0}}},
                    "data": {"type": "array",
                             "items": {"type": ["number", "string"]}}}}}}},
}


def _v2_paths() -> dict[str, Any]:
    """Both URL forms of each model route (with and without ``/versions/{version}``)."""
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    version = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    unknown = _v2_error("Not the model (or version) this server serves.")
    unauthorized = _v2_error("Missing or wrong key.", _BEARER)
    not_ready = _v2_error("Loading, warming up or draining.", _RETRY_AFTER)
    metadata = {"summary": "Model metadata: the BYTES input, the FP32 [N, K] output.",
                "security": [{"bearer": []}],
                "responses": {"200": _v2_json("Metadata.", "V2ModelMetadata"),
                              "401": unauthorized, "404": unknown}}
    ready = {"summary": "200 once the model is loaded and warmed.",
             "responses": {"200": _v2_json("Ready.", "V2ModelReady"), "404": unknown,
                           "503": not_ready}}
    infer: dict[str, Any] = {
        "summary": "Score images (encoded, as one BYTES input).",
        "security": [{"bearer": []}],
        "parameters": [{"name": "Inference-Header-Content-Length", "in": "header",
                        "required": False, **_HEADER_LENGTH}],
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("V2InferRequest")},
            "application/octet-stream": {"schema": {
                "type": "string", "format": "binary",
                "description": "A V2InferRequest JSON header, then each element as a "
                               "4-byte little-endian length and the image's bytes."}}}},
        "responses": {
            "200": {"description": "JSON, or with binary_data outputs a JSON header "
                                   "(V2InferResponse) then the raw tensor bytes.",
                    "headers": {"Inference-Header-Content-Length": _HEADER_LENGTH},
                    "content": {"application/json": {"schema": _ref("V2InferResponse")},
                                "application/octet-stream": {
                                    "schema": {"type": "string", "format": "binary"}}}},
            "400": _v2_error("Bad request framing, not an image, truncated, empty or over "
                             "the pixel limit (the message names the element)."),
            "401": unauthorized, "404": unknown,
            "408": _v2_error("The body stopped arriving before it was complete."),
            "413": _v2_error(f"Body over {Var.MAX_BODY_BYTES}."),
            "415": _v2_error("Neither application/json nor application/octet-stream, "
                             "or compressed."),
            "503": _v2_error("Queue full or model not ready yet.", _RETRY_AFTER),
            "504": _v2_error(f"Not scored before {Var.REQUEST_TIMEOUT_MS}."),
        }}
    paths: dict[str, Any] = {
        "/v2": {"get": {"summary": "Server metadata.", "responses": {
            "200": _v2_json("Name, protocol version, extensions.", "V2ServerMetadata")}}},
        "/v2/health/live": {"get": {"summary": "200 while the process runs.", "responses": {
            "200": _v2_json("Live.", "V2Live")}}},
        "/v2/health/ready": {"get": {"summary": "As /readyz.", "responses": {
            "200": _v2_json("Ready.", "V2Ready"), "503": not_ready}}},
    }
    for base, params in (("/v2/models/{name}", [name]),
                         ("/v2/models/{name}/versions/{version}", [name, version])):
        paths[base] = {"get": {**metadata, "parameters": params}}
        paths[base + "/ready"] = {"get": {**ready, "parameters": params}}
        paths[base + "/infer"] = {"post": {**infer,
                                           "parameters": params + infer["parameters"]}}
    return paths


_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "additionalProperties": False,
              "properties": {"error": {
                  "type": "object", "required": ["code", "message"],
                  "additionalProperties": False,
                  "properties": {"code": {"type": "string"},
                                 "message": {"type": "string"}}}}},
    "Status": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"}}},
    "Model": {"type": "object", "required": ["name", "version"],
              "additionalProperties": False,
              "properties": {"name": {"type": "string"},
                             "version": {"type": "string"}}},
    "Class": {"type": "object", "required": ["label", "index", "score"],
              "additionalProperties": False,
              "properties": {"label": {"type": "string"},
                             "index": {"type": "integer", "minimum": 0},
                             "score": {"type": "number"}}},
    "Predictions": {"type": "array", "description": "Best first.",
                    "items": {"$ref": "#/components/schemas/Class"}},
    "ScoreResponse": {
        "type": "object", "required": ["model", "predictions"],
        "additionalProperties": False,
        "properties": {"model": {"$ref": "#/components/schemas/Model"},
                       "predictions": {"$ref": "#/components/schemas/Predictions"}}},
    "InstancesResponse": {
        "type": "object", "required": ["model", "predictions"],
        "additionalProperties": False,
        "properties": {"model": {"$ref": "#/components/schemas/Model"},
                       "predictions": {"type": "array", "description": "One per instance, in order.",
                                       "items": {"$ref": "#/components/schemas/Predictions"}}}},
    "InstancesRequest": {
        "type": "object", "required": ["instances"],
        "properties": {"instances": {
            "type": "array", "minItems": 1,
            "items": {"type": "object", "required": ["b64"],
                      "properties": {"b64": {"type": "string",
                                             "contentEncoding": "base64"}}}}}},
    **_V2_SCHEMAS,
}


def _paths() -> dict[str, Any]:
    """Every route's paths: /score's, the probes', then the v2 protocol's."""
    score_errors = {
        "400": _error("Not an image, truncated, empty, over the pixel limit, "
                      "bad JSON or bad base64."),
        "401": _error("Missing or wrong key.", _BEARER),
        "408": _error("The body stopped arriving before it was complete."),
        "413": _error(f"Body over {Var.MAX_BODY_BYTES}."),
        "415": _error("Content-Type is neither an image, "
                      "application/octet-stream nor application/json."),
        "503": _error("Queue full or model not ready yet.", _RETRY_AFTER),
        "504": _error(f"Not scored before {Var.REQUEST_TIMEOUT_MS}."),
    }
    return {
        "/score": {
            "post": {
                "summary": "Score images.",
                "security": [{"bearer": []}],
                "parameters": [{"name": "top_k", "in": "query", "required": False,
                                "schema": {"type": "integer", "minimum": 1, "default": 5}}],
                "requestBody": {"required": True, "content": {
                    "image/*": {"schema": {"type": "string", "format": "binary"}},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": {"$ref": "#/components/schemas/InstancesRequest"}}}},
                "responses": {
                    "200": {"description": "Raw bytes in: `predictions` is one list. "
                                           "JSON `instances` in: one list per instance.",
                            "content": {"application/json": {"schema": {"oneOf": [
                                {"$ref": "#/components/schemas/ScoreResponse"},
                                {"$ref": "#/components/schemas/InstancesResponse"}]}}}},
                    **score_errors},
            },
            "get": {"summary": "Not allowed (as the 2019 service answered).",
                    "responses": {"405": _error("Use POST.", {"Allow": {
                        "description": "`POST`", "required": True, "schema": {"type": "string"}}})}},
        },
        "/": {"get": {"summary": "Liveness, as Azure ML's server answered.",
                      "responses": {"200": _STATUS}}},
        "/healthz": {"get": {"summary": "200 while the process can serve at all.",
                             "responses": {"200": _STATUS}}},
        "/readyz": {"get": {"summary": "Ready: model loaded and warmed, not draining.",
                            "responses": {"200": _STATUS,
                                          "503": _error("Loading, warming up or draining.",
                                                        _RETRY_AFTER)}}},
        "/swagger.json": {"get": {"summary": "This document.", "responses": {
            "200": {"description": "OpenAPI 3.1.",
                    "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        **_v2_paths(),
    }


def document(model_name: str, model_version: str, max_batch: int) -> dict[str, Any]:
    """The document, with this deployment's model name and limits filled in."""
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Scoring service: {model_name}", "version": model_version,
                 "description": "Image classification with a TensorFlow SavedModel. "
                                f"Requests are batched (up to {max_batch} images per call)."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _SCHEMAS,
        },
        "paths": _paths(),
    }
