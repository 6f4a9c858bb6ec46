"""The OpenAPI 3.1 document served at ``/swagger.json``.

Kept next to the routes and checked by the tests against real responses, so
it describes what the server does, not what it was meant to do.
"""

from __future__ import annotations

from typing import Any


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response = {"description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if headers:
        response["headers"] = headers
    return response


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.",
                                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
_BEARER = {"WWW-Authenticate": {"description": "`Bearer realm=\"scoring\"`.",
                                "schema": {"type": "string", "pattern": "^Bearer"}}}
_STATUS = {"description": "Status.", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/Status"}}}}


def document(model_name: str, model_version: str, max_batch: int) -> dict[str, Any]:
    """The document, with this deployment's model name and limits filled in."""
    score_errors = {
        "400": _error("Not an image, truncated, empty, over the pixel limit, "
                      "bad JSON or bad base64."),
        "401": _error("Missing or wrong key.", _BEARER),
        "413": _error("Body over SCORING_MAX_BODY_BYTES."),
        "415": _error("Content-Type is neither an image, "
                      "application/octet-stream nor application/json."),
        "503": _error("Queue full or model not ready yet.", _RETRY_AFTER),
        "504": _error("Not scored before SCORING_REQUEST_TIMEOUT_MS."),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Scoring service: {model_name}", "version": model_version,
                 "description": "Image classification with a TensorFlow SavedModel. "
                                f"Requests are batched (up to {max_batch} images per call)."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
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
            },
        },
        "paths": {
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
                            "description": "`POST`", "schema": {"type": "string"}}})}},
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
        },
    }
