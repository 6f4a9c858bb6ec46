"""The hostile-input table of test_hostile_input.py, against v2 infer
(``POST /v2/models/{name}/infer``) on the same server: every body the /score
table posts, and its fuzzed images inside valid tensors in both wire forms,
plus nested, oversized and inconsistent tensors and fuzzed v2 documents.

Every answer must be documented in /swagger.json and be a 200 or a 4xx, never
a 5xx (SpecClient checks both), and v2's errors keep the protocol's shape.
"""

from __future__ import annotations

import base64
import json
import struct

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.app import media
from tests.app.openapi_check import SpecClient
from tests.reliability import procs
from tests.reliability.test_hostile_input import FUZZ, HUGE, IMAGE_TYPES, JSON_DOCS, JSON_VALUES, KEY, \
    mutated_images

ROUTE, PATH = "/v2/models/{name}/infer", "/v2/models/colours/infer"
HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_IMAGES = 256  # the main server's SCORING_MAX_QUEUE (the default)


@pytest.fixture(scope="module")
def workers(server):
    return procs.workers(server.proc.pid)


@pytest.fixture(scope="module")
def client(server, spec, workers):
    return SpecClient(server.url, spec, key=KEY)


def infer(client: SpecClient, body: bytes, headers=None, allowed=(200, 400)) -> requests.Response:
    response = client.request("POST", ROUTE, path=PATH, data=body, headers=headers or {})
    assert response.status_code in allowed, response.text
    if response.status_code != 200:
        assert isinstance(response.json()["error"], str)  # the protocol's shape, not /score's
    return response


def tensor(**fields) -> dict:
    return {"name": "image", "datatype": "BYTES", "shape": [1], **fields}


def json_body(*inputs, **doc) -> bytes:
    return json.dumps({"inputs": list(inputs), **doc}).encode()


def binary_body(images: list[bytes], **fields) -> tuple[bytes, dict]:
    raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
    head = json_body(tensor(shape=[len(images)], parameters={"binary_data_size": len(raw)}, **fields))
    return head + raw, {HEADER_LENGTH: str(len(head)), "Content-Type": "application/octet-stream"}


@FUZZ
@given(image=st.one_of(st.binary(max_size=4096), mutated_images()), binary=st.booleans())
def test_fuzzed_images_inside_valid_tensors_get_200_or_400(client, image, binary):
    if binary:
        body, headers = binary_body([image])
    else:
        body, headers = json_body(tensor(data=[base64.b64encode(image).decode()])), {}
    infer(client, body, headers)


@settings(FUZZ, max_examples=100)
@given(body=st.one_of(st.binary(max_size=4096), mutated_images()), content_type=IMAGE_TYPES)
def test_the_score_tables_raw_bodies_get_a_4xx(client, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    infer(client, body, headers, allowed=(400, 415))


@settings(FUZZ, max_examples=100)
@given(doc=JSON_DOCS)
def test_the_score_tables_json_documents_get_400(client, doc):
    infer(client, json.dumps(doc).encode(), allowed=(400,))


@pytest.mark.parametrize("name", list(HUGE))
def test_the_score_tables_huge_and_deep_json_is_400(client, name):
    infer(client, HUGE[name], allowed=(400,))


B64 = base64.b64encode(media.jpeg()).decode()
TENSORS = {
    # nested: deeper than its shape, or past the JSON parser's nesting limit
    "data nested past the shape": json_body(tensor(data=[[[B64]]])),
    "data nested 500 deep": json_body(tensor(data=json.loads("[" * 500 + "]" * 500))),
    "data nested 100000 deep": (b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": '
                                + b"[" * 100_000 + b"]" * 100_000 + b"}]}"),
    "parameters nested 100000 deep": b'{"inputs": [], "parameters": ' + b'{"a":' * 40_000 + b"1"
                                     + b"}" * 40_000 + b"}",
    # oversized: more images than a request may hold, declared or sent
    "shape of 10^12": json_body(tensor(shape=[10 ** 12], data=[B64])),
    "shape past the queue": json_body(tensor(shape=[MAX_IMAGES + 1], data=["AAAA"] * (MAX_IMAGES + 1))),
    "30000 elements for shape [1]": json_body(tensor(data=["AAAA"] * 30_000)),
    "10000 inputs": json_body(*[{}] * 10_000),
    "10000 outputs": json_body(tensor(data=["AAAA"]), outputs=[{}] * 10_000),
    # inconsistent: shape, elements and sizes that disagree
    "shape [3], one element": json_body(tensor(shape=[3], data=[B64])),
    "shape [2, 2]": json_body(tensor(shape=[2, 2], data=[[B64, B64], [B64, B64]])),
    "shape of booleans": json_body(tensor(shape=[True], data=[B64])),
    "negative shape": json_body(tensor(shape=[-1], data=[B64])),
    "no data, no binary_data_size": json_body(tensor()),
    "parameters not an object": json_body(tensor(data=[B64], parameters=[1])),
    "request parameters not an object": json_body(tensor(data=[B64]), parameters="binary"),
    "output parameters not an object": json_body(tensor(data=[B64]), outputs=[{"name": "scores", "parameters": 7}]),
    "negative classification": json_body(tensor(data=[B64]), outputs=[{"name": "scores", "parameters": {"classification": -1}}]),
    "id not a string": json_body(tensor(data=[B64]), id=["x"]),
    "datatype FP32": json_body(tensor(datatype="FP32", data=[1.0])),
}
BINARY = {
    "binary_data_size past the body": (json_body(tensor(parameters={"binary_data_size": 10 ** 9})), 0),
    "an element claiming 4 GiB": (json_body(tensor(parameters={"binary_data_size": 8})),
                                  struct.pack("<I", 2 ** 32 - 1) + b"abcd"),
    "two elements for shape [1]": (json_body(tensor(parameters={"binary_data_size": 8})), b"\0" * 8),
    "bytes no input claims": (json_body(tensor(parameters={"binary_data_size": 4})), b"\0" * 4 + b"extra"),
}


@pytest.mark.parametrize("name", list(TENSORS))
def test_nested_oversized_and_inconsistent_tensors_are_400(client, name):
    assert len(TENSORS[name]) <= media.MAX_BODY
    infer(client, TENSORS[name], allowed=(400,))


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_framing_that_does_not_add_up_is_400(client, name):
    head, raw = BINARY[name]
    raw = raw if isinstance(raw, bytes) else b""
    infer(client, head + raw, {HEADER_LENGTH: str(len(head))}, allowed=(400,))


@pytest.mark.parametrize("length", ["-1", "x", "99999999", "7.0", "0x10"])
def test_a_bad_header_length_is_400(client, length):
    infer(client, json_body(tensor(data=[B64])), {HEADER_LENGTH: length}, allowed=(400,))


V2_FIELD = st.one_of(JSON_VALUES, st.just([1]), st.just(["image"]), st.just({"binary_data_size": 3}))


@FUZZ
@given(name=st.one_of(st.just("image"), V2_FIELD), datatype=st.one_of(st.just("BYTES"), V2_FIELD),
       shape=st.one_of(st.lists(st.integers(-2, 2 ** 40), max_size=3), V2_FIELD),
       data=st.one_of(st.lists(st.sampled_from([B64, "AAAA", "?"]), max_size=4), V2_FIELD),
       parameters=st.one_of(st.none(), V2_FIELD), outputs=st.one_of(st.none(), V2_FIELD))
def test_fuzzed_v2_documents_get_200_or_400(client, name, datatype, shape, data, parameters, outputs):
    doc = {"inputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data,
                       **({} if parameters is None else {"parameters": parameters})}]}
    if outputs is not None:
        doc["outputs"] = outputs
    infer(client, json.dumps(doc).encode())


def test_the_workers_that_took_all_of_it_are_the_same_and_ready(server, workers):
    assert procs.workers(server.proc.pid).keys() == workers.keys(), "a worker died or restarted"
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
