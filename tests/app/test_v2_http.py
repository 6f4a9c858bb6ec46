"""The open inference protocol against the real gunicorn server (the session's
`server`: model "colours" version "7", two workers), spoken by Triton's own
client, `tritonclient[http]`, and by plain requests checked against
/swagger.json."""

from __future__ import annotations

import base64
import json

import jsonschema
import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from scoring_app.protocols.v2_tensors import HEADER_LENGTH
from tests.app import media
from tests.app.test_http import metric



def auth() -> dict[str, str]:
    """A fresh dict per call: tritonclient's infer() adds its framing header to
    the dict it is given, which would leak into the next request."""
    return {"Authorization": "Bearer primary-key-1"}


COLOURS = [("red", media.RED), ("green", media.GREEN), ("blue", media.BLUE)]
LABELS = ["black", "white", "red", "green", "blue", "yellow"]  # the demo model's order
INFER = "/v2/models/{name}/infer"


@pytest.fixture()
def triton(server):
    client = httpclient.InferenceServerClient(url=server.url.removeprefix("http://"))
    yield client
    client.close()


def _inputs(images: list[bytes], binary: bool) -> list[httpclient.InferInput]:
    """JSON cannot carry raw bytes: without binary_data, images go base64-encoded."""
    data = np.array(images if binary else [base64.b64encode(i) for i in images],
                    dtype=np.object_)
    tensor = httpclient.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(data, binary_data=binary)
    return [tensor]


# -- tritonclient ------------------------------------------------------------
def test_health_needs_no_key_and_metadata_needs_one(triton):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("colours") and triton.is_model_ready("colours", "7")
    assert not triton.is_model_ready("resnet50")
    assert set(triton.get_server_metadata()["extensions"]) >= {"binary_tensor_data",
                                                                "classification"}
    meta = triton.get_model_metadata("colours", headers=auth())
    assert meta["versions"] == ["7"]
    assert meta["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "scores", "datatype": "FP32", "shape": [-1, 6]}]
    with pytest.raises(InferenceServerException) as caught:
        triton.get_model_metadata("colours")
    assert caught.value.status() == "401"


def test_one_image_with_default_outputs(triton):
    result = triton.infer("colours", _inputs([media.jpeg(media.RED)], binary=True),
                          headers=auth())
    scores = result.as_numpy("scores")
    assert scores.dtype == np.float32 and scores.shape == (1, 6)
    assert LABELS[int(scores[0].argmax())] == "red"
    assert result.get_response()["model_version"] == "7"


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_a_batch_in_order_in_every_wire_form(triton, binary_in, binary_out):
    images = [media.jpeg(colour) for _, colour in COLOURS]
    outputs = [httpclient.InferRequestedOutput("scores", binary_data=binary_out)]
    result = triton.infer("colours", _inputs(images, binary_in), outputs=outputs,
                          headers=auth(), model_version="7", request_id="batch-1")
    scores = result.as_numpy("scores")
    assert scores.shape == (3, 6)
    assert [LABELS[i] for i in scores.argmax(axis=1)] == [name for name, _ in COLOURS]
    assert np.allclose(scores.sum(axis=1), 1, atol=1e-3)  # the demo model ends in softmax
    assert result.get_response()["id"] == "batch-1"


@pytest.mark.parametrize("binary_out", [True, False])
def test_classification_gives_top_k_labels(triton, binary_out):
    images = [media.jpeg(media.GREEN), media.jpeg(media.BLUE)]
    outputs = [httpclient.InferRequestedOutput("scores", binary_data=binary_out, class_count=2)]
    result = triton.infer("colours", _inputs(images, True), outputs=outputs, headers=auth())
    top = result.as_numpy("scores")
    assert top.shape == (2, 2)
    rows = [[(e.decode() if isinstance(e, bytes) else e).split(":") for e in row] for row in top]
    assert [row[0][2] for row in rows] == ["green", "blue"]
    assert all(LABELS[int(index)] == label for row in rows for _, index, label in row)
    assert all(float(row[0][0]) >= float(row[1][0]) for row in rows)


def test_a_bad_image_is_a_400_naming_it(triton):
    images = [media.jpeg(), media.BAD_INPUTS["truncated jpeg"][0]]
    with pytest.raises(InferenceServerException) as caught:
        triton.infer("colours", _inputs(images, True), headers=auth())
    assert caught.value.status() == "400"
    assert caught.value.message().startswith("image[1]:")


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer wrong-key"}])
def test_a_missing_or_wrong_key_is_a_401(triton, headers):
    with pytest.raises(InferenceServerException) as caught:
        triton.infer("colours", _inputs([media.jpeg()], True), headers=headers)
    assert caught.value.status() == "401"
    assert "key" in caught.value.message()


@pytest.mark.parametrize("name,version", [("resnet50", ""), ("colours", "8")])
def test_an_unknown_model_or_version_is_a_404(triton, name, version):
    with pytest.raises(InferenceServerException) as caught:
        triton.infer(name, _inputs([media.jpeg()], True), model_version=version, headers=auth())
    assert caught.value.status() == "404"
    assert "'colours' version '7'" in caught.value.message()


# -- every answer against /swagger.json --------------------------------------
@pytest.mark.parametrize("route", ["/v2", "/v2/health/live", "/v2/health/ready"])
def test_server_routes_are_open_and_documented(api, route):
    assert api.request("GET", route, key=None).status_code == 200


@pytest.mark.parametrize("route,path,key,status", [
    ("/v2/models/{name}", "/v2/models/colours", "default", 200),
    ("/v2/models/{name}", "/v2/models/colours", None, 401),
    ("/v2/models/{name}", "/v2/models/other", "default", 404),
    ("/v2/models/{name}/versions/{version}", "/v2/models/colours/versions/7", "default", 200),
    ("/v2/models/{name}/versions/{version}", "/v2/models/colours/versions/1", "default", 404),
    ("/v2/models/{name}/ready", "/v2/models/colours/ready", None, 200),
    ("/v2/models/{name}/versions/{version}/ready", "/v2/models/colours/versions/7/ready", None, 200),
    ("/v2/models/{name}/ready", "/v2/models/other/ready", None, 404),
])
def test_model_routes_are_documented(api, route, path, key, status):
    assert api.request("GET", route, path=path, key=key).status_code == status


def _infer_json(images: list[bytes], **doc) -> dict:
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                        "data": [base64.b64encode(i).decode() for i in images]}], **doc}


def test_json_infer_is_documented(api):
    body = _infer_json([media.jpeg(media.BLUE)], id="x",
                       outputs=[{"name": "scores", "parameters": {"classification": 1}}])
    response = api.request("POST", INFER, path="/v2/models/colours/infer", json=body)
    assert response.json()["outputs"][0]["data"][0].endswith(":4:blue")


def test_binary_infer_header_is_documented(api, spec):
    head = json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                                   "parameters": {"binary_data_size": 4 + len(media.jpeg())}}],
                       "outputs": [{"name": "scores", "parameters": {"binary_data": True}}]})
    body = head.encode() + len(media.jpeg()).to_bytes(4, "little") + media.jpeg()
    response = api.request("POST", INFER, path="/v2/models/colours/infer", data=body,
                           headers={HEADER_LENGTH: str(len(head)),
                                    "Content-Type": "application/octet-stream"})
    size = int(response.headers[HEADER_LENGTH])
    header = json.loads(response.content[:size])
    jsonschema.Draft202012Validator(spec["components"]["schemas"]["V2InferResponse"]
                                    ).validate(header)
    raw = response.content[size:]
    assert header["outputs"][0]["parameters"]["binary_data_size"] == len(raw) == 6 * 4
    assert LABELS[int(np.frombuffer(raw, "<f4").argmax())] == "red"


@pytest.mark.parametrize("name", ["truncated jpeg", "pdf", "png claiming 100000x100000", "empty body"])
def test_bad_images_are_documented_400s(api, name):
    body = _infer_json([media.jpeg(), media.BAD_INPUTS[name][0]])
    response = api.request("POST", INFER, path="/v2/models/colours/infer", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("image[1]:")


@pytest.mark.parametrize("kw,status", [
    ({"data": b"\0" * (media.MAX_BODY + 1)}, 413),
    ({"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415),
    ({"json": _infer_json([media.jpeg()]), "headers": {"Content-Encoding": "gzip"}}, 415),
    ({"data": b"{nope"}, 400),
    ({"json": _infer_json([media.jpeg()]), "key": "wrong"}, 401),
])
def test_other_errors_keep_scores_statuses(api, kw, status):
    response = api.request("POST", INFER, path="/v2/models/colours/infer", **kw)
    assert response.status_code == status
    assert isinstance(response.json()["error"], str)


def test_routing_errors_under_v2_have_its_shape_and_others_keep_theirs(server):
    wrong_method = requests.get(server.url + "/v2/models/colours/infer", timeout=10)
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["Allow"]
    assert isinstance(wrong_method.json()["error"], str)
    assert isinstance(requests.get(server.url + "/v2/repository/index", timeout=10)
                      .json()["error"], str)
    assert requests.get(server.url + "/nope", timeout=10).json()["error"]["code"] == "not_found"


def test_infer_is_counted_under_its_route_template(server, triton):
    route = "/v2/models/<name>/infer"
    before = server.metrics()
    triton.infer("colours", _inputs([media.jpeg()], True), headers=auth())
    with pytest.raises(InferenceServerException):
        triton.infer("colours", _inputs([b"not an image"], True), headers=auth())
    after = server.metrics()
    for status in ("200", "400"):
        assert (metric(after, "scoring_requests_total", route=route, status=status)
                - metric(before, "scoring_requests_total", route=route, status=status)) == 1
    assert (metric(after, "scoring_request_duration_seconds_count", route=route)
            - metric(before, "scoring_request_duration_seconds_count", route=route)) == 2
