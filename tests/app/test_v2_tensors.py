"""The open inference protocol's framing (scoring_app/protocols/v2_tensors.py), checked
against Triton's own client library: what tritonclient builds, the parser
reads; what the encoder writes, tritonclient reads back."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.http._utils import _get_inference_request
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from scoring_app.errors import BadRequest
from scoring_app.protocols.v2_tensors import (INPUT, OUTPUT, RequestedOutput, Tensor, encode_response,
                                    pack_bytes, parse_request, unpack_bytes)

IMAGES = [b"\xff\xd8 first image \x00\x01", b"", b"\x89PNG second\x00" * 3]


def _triton_body(images, *, binary_in=True, outputs=None, shape=None, request_id=""):
    """The body and Inference-Header-Content-Length tritonclient would send."""
    data = np.array(images, dtype=np.object_)
    if shape is not None:
        data = data.reshape(shape)
    tensor = httpclient.InferInput(INPUT, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data, binary_data=binary_in)
    body, header_length = _get_inference_request(
        inputs=[tensor], request_id=request_id, outputs=outputs, sequence_id=0,
        sequence_start=False, sequence_end=False, priority=0, timeout=None,
        custom_parameters=None)
    return body, None if header_length is None else str(header_length)


def test_bytes_framing_matches_tritons():
    raw = serialize_byte_tensor(np.array(IMAGES, dtype=np.object_)).item()
    assert pack_bytes(IMAGES) == raw
    assert unpack_bytes(raw, "x") == IMAGES
    assert list(deserialize_bytes_tensor(pack_bytes(IMAGES))) == IMAGES


@pytest.mark.parametrize("raw,needle", [
    (b"\x05\x00\x00\x00abc", "claims 5 bytes; only 3"),
    (b"\x01\x00\x00\x00a\x02\x00", "2 stray bytes"),
])
def test_bad_bytes_framing_is_400(raw, needle):
    with pytest.raises(BadRequest, match=needle):
        unpack_bytes(raw, "input")


@pytest.mark.parametrize("shape", [None, [3, 1]])
def test_tritonclient_binary_request_is_read(shape):
    body, header_length = _triton_body(IMAGES, shape=shape, request_id="r-1")
    assert header_length is not None
    parsed = parse_request(body, header_length, max_images=8)
    assert parsed.images == IMAGES and parsed.id == "r-1"
    # no outputs named: tritonclient asks for every output in binary form
    assert parsed.output == RequestedOutput(binary=True)


def test_tritonclient_json_request_carries_base64_images():
    encoded = [base64.b64encode(i) for i in IMAGES]
    outputs = [httpclient.InferRequestedOutput(OUTPUT, binary_data=False, class_count=3)]
    body, header_length = _triton_body(encoded, binary_in=False, outputs=outputs)
    assert header_length is None
    parsed = parse_request(body, header_length, max_images=8)
    assert parsed.images == IMAGES
    assert parsed.output == RequestedOutput(binary=False, classification=3)


def _json(inputs=None, **doc):
    tensor = {"name": INPUT, "datatype": "BYTES", "shape": [1], "data": ["QUJD"]}
    return json.dumps({"inputs": [tensor] if inputs is None else inputs, **doc}).encode()


def _tensor(**fields):
    return [{"name": INPUT, "datatype": "BYTES", "shape": [1], "data": ["QUJD"], **fields}]


@pytest.mark.parametrize("body,header_length,needle", [
    (b"{not json", None, "not valid JSON"),
    (b'{"inputs": []}', None, "exactly one input"),
    (b"[]", None, '"inputs"'),
    (_json(), "999", "Inference-Header-Content-Length is '999'"),
    (_json(), "x", "Inference-Header-Content-Length is 'x'"),
    (_json() + b"\x00\x00", str(len(_json())), "2 bytes after the JSON header belong to no input"),
    (_json(_tensor(name="input_1")), None, "unknown input 'input_1'"),
    (_json(_tensor(datatype="FP32")), None, "datatype 'FP32'"),
    (_json(_tensor(shape=[1, 2])), None, "shape [1, 2]"),
    (_json(_tensor(shape=[0], data=[])), None, "no image"),
    (_json(_tensor(shape=[2])), None, "shape [2] but 1 elements"),
    (_json(_tensor(shape=[9], data=["QUJD"] * 9)), None, "at most 8 images"),
    (_json(_tensor(data=["not base64!"])), None, "image[0] is not a base64 string"),
    (_json(_tensor(data=[3])), None, "image[0] is not a base64 string"),
    (_json([{"name": INPUT, "datatype": "BYTES", "shape": [1]}]), None, "neither data"),
    (_json(_tensor(parameters={"binary_data_size": 4})), "0", "not valid JSON"),
    (_json(outputs=[{"name": "probabilities"}]), None, "one output, 'scores'"),
    (_json(outputs=[{"name": OUTPUT}, {"name": OUTPUT}]), None, "list it once"),
    (_json(outputs=[{"name": OUTPUT, "parameters": {"classification": -1}}]), None, "classification"),
    (_json(outputs=[{"name": OUTPUT, "parameters": {"binary_data": "yes"}}]), None, "binary_data"),
    (_json(parameters={"binary_data_output": 1}), None, "binary_data_output"),
    (_json(id=5), None, "id must be a string"),
])
def test_bad_requests_are_400_saying_what_is_wrong(body, header_length, needle):
    with pytest.raises(BadRequest) as caught:
        parse_request(body, header_length, max_images=8)
    assert needle in caught.value.message


def test_binary_data_size_past_the_body_is_400():
    head = _json(_tensor(parameters={"binary_data_size": 100}))
    with pytest.raises(BadRequest, match="binary_data_size 100 does not fit the 8 bytes"):
        parse_request(head + pack_bytes([b"abcd"]), str(len(head)), max_images=8)


def test_nested_json_data_is_flattened():
    body = _json(_tensor(shape=[2, 1], data=[["QUJD"], ["REVG"]]))
    assert parse_request(body, None, 8).images == [b"ABC", b"DEF"]


@pytest.mark.parametrize("binary", [True, False])
def test_responses_read_back_by_tritonclient(binary):
    scores = np.array([[0.1, 0.9], [0.7, 0.3]], dtype=np.float32)
    labels = [b"0.900000:1:b", b"0.700000:0:a"]
    header = {"model_name": "m", "model_version": "1", "id": "r"}
    for tensor, expected in ((Tensor(OUTPUT, "FP32", [2, 2], scores, binary), scores),
                             (Tensor(OUTPUT, "BYTES", [2, 1], labels, binary),
                              np.array(labels, dtype=np.object_).reshape(2, 1))):
        body, header_length = encode_response(header, [tensor])
        assert (header_length is not None) == binary
        result = httpclient.InferResult.from_response_body(body, header_length=header_length)
        got = result.as_numpy(OUTPUT)
        if tensor.datatype == "BYTES" and not binary:  # JSON strings come back as str
            got = np.vectorize(str.encode, otypes=[object])(got)
        assert got.shape == expected.shape
        assert (got == expected).all()
        assert result.get_response()["id"] == "r"
