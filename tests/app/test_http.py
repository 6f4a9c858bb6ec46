"""The contract's HTTP API against a real gunicorn (string-input model, two
workers), every answer checked against /swagger.json."""

from __future__ import annotations

import base64
import concurrent.futures
import re

import pytest
import requests
from openapi_spec_validator import validate

from tests.app import media


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? ([0-9.e+-]+|NaN)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(3))
    return total


def test_swagger_is_a_valid_openapi_document(spec):
    validate(spec)
    assert spec["info"]["version"] == "7"


@pytest.mark.parametrize("route", ["/", "/healthz", "/readyz", "/swagger.json"])
def test_probes_need_no_key(api, route):
    assert api.request("GET", route, key=None).status_code == 200


def test_get_score_is_405_with_allow_post(api):
    response = api.request("GET", "/score", key=None)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_unknown_route_is_a_json_404(server):
    response = requests.get(server.url + "/nope", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_raw_jpeg_scores_top_k_with_model_name_and_version(api):
    body = api.score(media.jpeg(media.RED)).json()
    assert body["model"] == {"name": "colours", "version": "7"}
    assert [p["label"] for p in body["predictions"]][:1] == ["red"]
    assert len(body["predictions"]) == 5
    scores = [p["score"] for p in body["predictions"]]
    assert scores == sorted(scores, reverse=True)


def test_no_content_type_is_raw_bytes_as_2019_clients_sent(api):
    assert api.score(media.jpeg(media.BLUE), content_type=None).json()[
        "predictions"][0]["label"] == "blue"


@pytest.mark.parametrize("top_k,expected", [("1", 1), ("3", 3), ("100", 6)])
def test_top_k(api, top_k, expected):
    response = api.score(media.jpeg(), params={"top_k": top_k})
    assert len(response.json()["predictions"]) == expected


@pytest.mark.parametrize("top_k", ["0", "-2", "abc"])
def test_bad_top_k_is_400(api, top_k):
    assert api.score(media.jpeg(), params={"top_k": top_k}).status_code == 400


def test_json_instances_answer_in_order(api):
    images = [media.jpeg(media.GREEN), media.jpeg(media.RED), media.jpeg(media.BLUE)]
    body = {"instances": [{"b64": base64.b64encode(i).decode()} for i in images]}
    response = api.request("POST", "/score", json=body, params={"top_k": 2})
    predictions = response.json()["predictions"]
    assert [p[0]["label"] for p in predictions] == ["green", "red", "blue"]
    assert all(len(p) == 2 for p in predictions)


@pytest.mark.parametrize("body,needle", [
    (b"{not json", "not valid JSON"),
    (b'{"instances": []}', "at least one"),
    (b'{"instances": [{"b64": 3}]}', "instances[0]"),
    (b'{"instances": [{"b64": "@@@"}]}', "instances[0].b64"),
    (b'["b64"]', "instances"),
])
def test_bad_json_is_400(api, body, needle):
    response = api.score(body, content_type="application/json")
    assert response.status_code == 400
    assert needle in response.json()["error"]["message"]


def test_one_bad_instance_names_its_index(api):
    images = [media.jpeg(), media.BAD_INPUTS["truncated jpeg"][0]]
    body = {"instances": [{"b64": base64.b64encode(i).decode()} for i in images]}
    response = api.request("POST", "/score", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("instances[1]:")


@pytest.mark.parametrize("name", list(media.BAD_INPUTS))
def test_input_table(api, name):
    body, content_type, statuses, label = media.BAD_INPUTS[name]
    response = api.score(body, content_type=content_type)
    assert response.status_code == statuses["encoded"], response.text
    if response.status_code == 200 and label:
        assert response.json()["predictions"][0]["label"] == label


# -- auth -------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "Bearer", "Bearer wrong-key", "Basic cHJpbWFyeQ==",
                                    "primary-key-1", "Bearer primary-key-1x"])
def test_missing_or_wrong_key_is_401_with_www_authenticate(api, header):
    headers = {"Authorization": header} if header else {}
    response = api.request("POST", "/score", key=None, data=media.jpeg(), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_401_comes_before_reading_the_body(api):
    response = api.request("POST", "/score", key="wrong", data=b"\0" * (media.MAX_BODY + 1))
    assert response.status_code == 401


def test_secondary_key_works(api):
    assert api.score(media.jpeg(), key="secondary-key-1").status_code == 200


def test_rotated_key_is_honoured_without_restart(api, secret_dir):
    secret_dir.rotate(primary="primary-key-2", secondary="secondary-key-1")
    try:
        assert api.score(media.jpeg(), key="primary-key-1").status_code == 401
        assert api.score(media.jpeg(), key="primary-key-2").status_code == 200
        assert api.score(media.jpeg(), key="secondary-key-1").status_code == 200
    finally:
        secret_dir.rotate(primary="primary-key-1", secondary="secondary-key-1")
    assert api.score(media.jpeg(), key="primary-key-1").status_code == 200


# -- concurrency and metrics -------------------------------------------------
def test_parallel_requests_get_their_own_results_in_batches(server, api):
    colours = {"red": media.RED, "green": media.GREEN, "blue": media.BLUE,
               "white": (250, 250, 250), "black": (5, 5, 5), "yellow": (240, 220, 20)}
    jobs = [name for name in colours for _ in range(8)]
    before = server.metrics()

    def one(name):
        client = type(api)(api.base_url, api.spec, api.key)  # a connection per thread
        return name, client.score(media.jpeg(colours[name])).json()["predictions"][0]["label"]

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, jobs))
    assert all(expected == got for expected, got in results), results

    after = server.metrics()
    requests_ok = (metric(after, "scoring_requests_total", route="/score", status="200")
                   - metric(before, "scoring_requests_total", route="/score", status="200"))
    assert requests_ok == len(jobs)  # counted once, across both workers
    images = (metric(after, "scoring_batch_size_sum") - metric(before, "scoring_batch_size_sum"))
    calls = (metric(after, "scoring_batch_size_count") - metric(before, "scoring_batch_size_count"))
    assert images == len(jobs)
    assert calls < images, "no batch held more than one image"


def test_metrics_document_every_family_and_hold_no_key(server, api):
    api.score(media.jpeg())
    text = server.metrics()
    for family in ("scoring_requests_total", "scoring_request_duration_seconds_bucket",
                   "scoring_queue_depth", "scoring_batch_size_bucket",
                   "scoring_model_call_seconds_bucket", "scoring_model_load_seconds",
                   "scoring_model_warmup_seconds"):
        assert re.search(rf"^{family}(\{{| )", text, re.MULTILINE), family
    assert metric(text, "scoring_model_load_seconds") > 0
    assert metric(text, "scoring_workers_ready") == 2
    assert "primary-key" not in text and "secondary-key" not in text
    assert 'route="/nope"' not in text  # unmatched paths share one label


def test_metrics_are_not_on_the_public_port(server):
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 404
