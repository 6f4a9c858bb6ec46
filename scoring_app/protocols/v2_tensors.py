"""Open inference protocol (KServe v2) tensors on the wire: parse an infer
request, encode an infer response. Pure functions, no Flask, so the framing is
tested on its own.

Two wire forms, both from the protocol and Triton's binary-data extension:
- plain JSON: each tensor's elements under ``data``;
- JSON header + raw bytes: the ``Inference-Header-Content-Length`` header
  says how many leading bytes of the body are JSON; a tensor whose
  ``parameters.binary_data_size`` is set has that many bytes of the rest, in
  tensor order. BYTES elements in raw form are each a 4-byte little-endian
  length followed by the bytes.

This service takes one BYTES input of encoded images. JSON strings cannot
carry raw image bytes, so in the plain JSON form each element is the image
base64-encoded (what MLServer calls the ``base64`` content type); in the raw
form it is the image's bytes as they are.

Every shape the parser accepts is bounded before it is walked: JSON by
``http.jsonio`` (/score's parser, with its nesting limit), ``data`` at most as
deep as the declared shape and at most as long as its element count,
``binary_data_size`` and every element's length against the bytes the body
really has, the element count against ``max_images``. Nothing recurses on
the client's input.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import struct
from typing import Any, cast

import numpy as np

from ..errors import BadRequest
from ..http import jsonio

INPUT = "image"
OUTPUT = "scores"
HEADER_LENGTH = "Inference-Header-Content-Length"
_LENGTH = struct.Struct("<I")


@dataclasses.dataclass(frozen=True)
class RequestedOutput:
    """``binary``: send as raw bytes. ``classification``: top-k as BYTES
    ``"score:index:label"`` (Triton's classification extension), 0 = scores."""
    binary: bool
    classification: int = 0


@dataclasses.dataclass(frozen=True)
class InferRequest:
    id: str | None
    images: list[bytes]
    output: RequestedOutput


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One output: FP32 values as a float32 array, BYTES values as bytes."""
    name: str
    datatype: str
    shape: list[int]
    values: np.ndarray | list[bytes]
    binary: bool

    def raw(self) -> bytes:
        if self.datatype == "BYTES":
            return pack_bytes(cast("list[bytes]", self.values))
        return np.ascontiguousarray(self.values, dtype="<f4").tobytes()

    def json_data(self) -> list:
        if self.datatype == "BYTES":
            return [v.decode("utf-8") for v in self.values]
        return np.asarray(self.values, dtype=np.float32).ravel().tolist()


# -- BYTES elements in raw form ----------------------------------------------
def pack_bytes(elements: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def unpack_bytes(raw: bytes, what: str, max_elements: int | None = None) -> list[bytes]:
    """Length-prefixed elements -> the elements; 400 if the framing is off or
    there are more than ``max_elements``."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if max_elements is not None and len(elements) == max_elements:
            raise BadRequest(f"{what}: more than the {max_elements} elements its shape declares")
        if offset + 4 > len(raw):
            raise BadRequest(f"{what}: {len(raw) - offset} stray bytes where a "
                             "4-byte element length was expected")
        (size,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + size > len(raw):
            raise BadRequest(f"{what}: element {len(elements)} claims {size} bytes; "
                             f"only {len(raw) - offset} are left")
        elements.append(raw[offset:offset + size])
        offset += size
    return elements


# -- request ---------------------------------------------------------------------
def _split(body: bytes, header_length: str | None) -> tuple[Any, bytes]:
    if header_length is None:
        json_part, raw = body, b""
    else:
        try:
            size = int(header_length)
        except ValueError:
            size = -1
        if not 0 <= size <= len(body):
            raise BadRequest(f"{HEADER_LENGTH} is {header_length!r}; it must be the "
                             f"length of the JSON header, 0..{len(body)}")
        json_part, raw = body[:size], body[size:]
    try:
        return jsonio.loads(json_part), raw
    except jsonio.DecodeError:  # also invalid UTF-8 and deep nesting ([[[[...)
        raise BadRequest("the inference request header is not valid JSON") from None


def _parameters(owner: dict[str, Any], what: str) -> dict[str, Any]:
    """``owner``'s ``parameters`` object ({} when absent); 400 if it is not one."""
    params = owner.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise BadRequest(f"{what}parameters must be an object")
    return params


def _flatten(data: Any, shape: list[int]) -> list:
    """``data`` flat, or nested as ``shape`` (both are allowed): its elements,
    in order. 400 if it nests deeper than the shape or holds more elements
    than the shape declares (so a hostile ``data`` costs no more than a valid
    one)."""
    count = math.prod(shape)
    if not isinstance(data, list):
        return [data]
    flat: list = []
    for item in data:
        if not isinstance(item, list):
            flat.append(item)
        elif len(shape) == 2 and all(not isinstance(x, list) for x in item):
            flat.extend(item)
        else:
            raise BadRequest(f"input {INPUT!r}: data nests deeper than its shape {shape}")
        if len(flat) > count:
            break
    return flat


def _images(tensor: Any, raw: bytes, max_images: int) -> tuple[list[bytes], int]:
    """The input tensor's images, and how many raw bytes it used."""
    if not isinstance(tensor, dict) or tensor.get("name") != INPUT:
        name = tensor.get("name") if isinstance(tensor, dict) else tensor
        raise BadRequest(f"unknown input {name!r}; this model takes one BYTES "
                         f"input named {INPUT!r}")
    if tensor.get("datatype") != "BYTES":
        raise BadRequest(f"input {INPUT!r} has datatype {tensor.get('datatype')!r}; "
                         "send BYTES (the encoded images)")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape)
            or len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1)):
        raise BadRequest(f"input {INPUT!r} has shape {shape!r}; send [N] or [N, 1]")
    count = math.prod(shape)
    if count == 0:
        raise BadRequest(f"input {INPUT!r} holds no image")
    if count > max_images:
        raise BadRequest(f"at most {max_images} images per request")
    size = _parameters(tensor, f"input {INPUT!r}: ").get("binary_data_size")
    if size is not None:
        if type(size) is not int or not 0 <= size <= len(raw):
            raise BadRequest(f"input {INPUT!r}: binary_data_size {size!r} does not fit "
                             f"the {len(raw)} bytes after the JSON header")
        images = unpack_bytes(raw[:size], f"input {INPUT!r}", count)
        used = size
    elif "data" in tensor:
        images, used = [], 0
        elements = _flatten(tensor["data"], shape)
        if len(elements) > count:
            raise BadRequest(f"input {INPUT!r} has shape {shape} but more elements")
        for i, element in enumerate(elements):
            try:
                images.append(base64.b64decode(element, validate=True))
            except (binascii.Error, ValueError, TypeError):
                raise BadRequest(f"{INPUT}[{i}] is not a base64 string (in JSON, "
                                 "each BYTES element is the image, base64-encoded)") from None
    else:
        raise BadRequest(f"input {INPUT!r} has neither data nor binary_data_size")
    if len(images) != count:
        raise BadRequest(f"input {INPUT!r} has shape {shape} but {len(images)} elements")
    return images, used


def _output(doc: dict, default_binary: bool) -> RequestedOutput:
    requested = doc.get("outputs")
    if requested is None:
        return RequestedOutput(default_binary)
    item = requested[0] if isinstance(requested, list) and len(requested) == 1 else None
    name = item.get("name") if isinstance(item, dict) else None
    if not isinstance(item, dict) or name != OUTPUT:
        raise BadRequest(f"this model has one output, {OUTPUT!r}: list it once in "
                         "outputs, or leave outputs out")
    params = _parameters(item, f"output {OUTPUT!r}: ")
    binary = params.get("binary_data", default_binary)
    top_k = params.get("classification", 0)
    if type(binary) is not bool or type(top_k) is not int or top_k < 0:
        raise BadRequest(f"output {OUTPUT!r}: binary_data must be true or false and "
                         "classification a count >= 0")
    return RequestedOutput(binary, top_k)


def parse_request(body: bytes, header_length: str | None, max_images: int) -> InferRequest:
    """The body of ``POST .../infer`` -> what to score and how to answer; 400 otherwise."""
    doc, raw = _split(body, header_length)
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise BadRequest('send {"inputs": [{"name": "image", "datatype": "BYTES", '
                         '"shape": [N], ...}]}')
    if len(doc["inputs"]) != 1:
        raise BadRequest(f"this model takes exactly one input, {INPUT!r}; "
                         f"got {len(doc['inputs'])}")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("id must be a string")
    params = _parameters(doc, "")
    default_binary = params.get("binary_data_output", False)
    if type(default_binary) is not bool:
        raise BadRequest("parameters.binary_data_output must be true or false")
    images, used = _images(doc["inputs"][0], raw, max_images)
    if used != len(raw):
        raise BadRequest(f"{len(raw) - used} bytes after the JSON header belong to no "
                         "input (binary_data_size must add up to them)")
    return InferRequest(request_id, images, _output(doc, default_binary))


# -- response -----------------------------------------------------------------
def encode_response(header: dict[str, Any], tensors: list[Tensor]) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when raw bytes follow it."""
    outputs, raw = [], []
    for t in tensors:
        entry: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        if t.binary:
            raw.append(t.raw())
            entry["parameters"] = {"binary_data_size": len(raw[-1])}
        else:
            entry["data"] = t.json_data()
        outputs.append(entry)
    head = jsonio.dumps({**header, "outputs": outputs})
    if not raw:
        return head, None
    return head + b"".join(raw), len(head)
