"""Hostile input over real HTTP, against the main server (tests/conftest.py:
two gunicorn workers, body limit 256 KiB): hypothesis fuzzes the image and
JSON paths, schemathesis the whole API from the service's own /swagger.json.

Every answer must be documented in /swagger.json and be a 200 or a 4xx (never
a 500); afterwards the same workers are alive (no crash, no restart) and their
memory has not grown past a generous bound. The last test checks that, so the
tests of this file run in order.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import subprocess
import sys

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.app import media
from tests.app.openapi_check import SpecClient
from tests.reliability import procs

KEY = "primary-key-1"  # the main server's (tests/conftest.py)
FUZZ = settings(max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
TRIED: collections.Counter = collections.Counter()  # status -> count, for the figures

SEEDS = [media.jpeg(media.RED), media.encode(media.solid(media.GREEN), "PNG"),
         media.animated_gif(), media.encode(media.solid(media.BLUE), "BMP"),
         media.encode(media.solid(media.RED), "WEBP"), media.encode(media.solid(media.RED), "TIFF"),
         media.png_header_only(100000, 100000), media.exif_rotated_jpeg()]


@pytest.fixture(scope="module")
def baseline(server):
    """The workers, and their memory, before any hostile input."""
    workers = procs.workers(server.proc.pid)
    return workers, procs.rss(workers)


@pytest.fixture(scope="module")
def client(server, spec, baseline):
    return SpecClient(server.url, spec, key=KEY)


def send(client: SpecClient, body: bytes, content_type: str | None, allowed=(200, 400)):
    """POST, check the answer against /swagger.json (which also refuses any 500)."""
    response = client.score(body, content_type=content_type)
    TRIED[response.status_code] += 1
    assert response.status_code in allowed, response.text
    return response


@st.composite
def mutated_images(draw) -> bytes:
    """A valid image of some format, broken: truncated, bytes overwritten,
    random bytes spliced in, or a valid header with a random body."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    how = draw(st.sampled_from(["truncate", "overwrite", "splice", "header"]))
    if how == "truncate":
        return bytes(data[:draw(st.integers(0, len(data) - 1))])
    if how == "overwrite":
        for at, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1),
                                                 st.integers(0, 255)), min_size=1, max_size=16)):
            data[at] = value
        return bytes(data)
    at = draw(st.integers(0, len(data)))
    if how == "splice":
        return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=512)) + bytes(data[at:])
    return bytes(data[:draw(st.integers(2, 64))]) + draw(st.binary(max_size=4096))


IMAGE_TYPES = st.sampled_from(["image/jpeg", "image/png", "application/octet-stream", None])


@FUZZ
@given(body=st.one_of(st.binary(max_size=4096), mutated_images()), content_type=IMAGE_TYPES)
def test_fuzzed_image_bytes_get_200_or_400(client, body, content_type):
    response = send(client, body, content_type)
    if response.status_code == 400:
        assert response.json()["error"]["code"] in ("bad_image", "too_many_pixels")


JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=5),
                           max_leaves=40)
B64_ITEMS = st.one_of(
    st.builds(lambda b: {"b64": base64.b64encode(b).decode()}, mutated_images()),
    st.builds(lambda t: {"b64": t}, st.text(max_size=64)),         # bad base64 (mostly)
    st.dictionaries(st.sampled_from(["b64", "B64", "bytes", ""]), JSON_VALUES, max_size=3),
    JSON_VALUES)
JSON_DOCS = st.one_of(
    JSON_VALUES,                                                   # not the shape at all
    st.builds(lambda v: {"instances": v}, JSON_VALUES),            # instances of a wrong type
    st.builds(lambda items: {"instances": items}, st.lists(B64_ITEMS, max_size=6)))


@FUZZ
@given(doc=JSON_DOCS)
def test_fuzzed_json_instances_get_200_or_400(client, doc):
    body = json.dumps(doc).encode()
    response = send(client, body, "application/json")
    if response.status_code == 200:
        assert len(response.json()["predictions"]) == len(doc["instances"])


@settings(FUZZ, max_examples=100)
@given(body=st.binary(max_size=2048))
def test_fuzzed_bytes_sent_as_json_get_400(client, body):
    send(client, body, "application/json", allowed=(400,))


def _nested(depth: int) -> bytes:
    return b'{"instances": ' + b"[" * depth + b"]" * depth + b"}"


HUGE = {
    "deeply nested arrays": b"[" * 100_000,
    "deeply nested instances": _nested(50_000),
    "deeply nested objects": b'{"a":' * 40_000 + b"1" + b"}" * 40_000,
    "10000 instances": json.dumps({"instances": [{"b64": "AAAA"}] * 10_000}).encode(),
    "a 30000-element array": json.dumps({"instances": list(range(30_000))}).encode(),
    "a long bad base64 string": json.dumps({"instances": [{"b64": "A" * 200_001}]}).encode(),
    "a 100 kB key": json.dumps({"k" * 100_000: 1}).encode(),
    "UTF-16 with a BOM": '{"instances": [{"b64": 1}]}'.encode("utf-16"),
    "a number with 100000 digits": b'{"instances": [' + b"9" * 100_000 + b"]}",
}


@pytest.mark.parametrize("name", list(HUGE))
def test_huge_and_deep_json_is_400(client, name):
    assert len(HUGE[name]) <= media.MAX_BODY
    send(client, HUGE[name], "application/json", allowed=(400,))


def test_schemathesis_finds_nothing_against_swagger_json(server, baseline, tmp_path):
    """The API as documented, fuzzed (positive and negative cases), with the key."""
    checks = ("not_a_server_error,status_code_conformance,content_type_conformance,"
              "response_headers_conformance,response_schema_conformance,"
              "negative_data_rejection,ignored_auth,unsupported_method")
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "schemathesis"), "run",
         server.url + "/swagger.json", "--url", server.url, "-H", f"Authorization: Bearer {KEY}",
         "--checks", checks, "--max-examples", "40", "--seed", "3", "--workers", "2",
         "--generation-database", "none", "--no-color",
         "--report", "ndjson", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    statuses = collections.Counter()
    [events] = tmp_path.glob("*.ndjson")
    for line in events.read_text().splitlines():
        statuses.update(str(r["status_code"]) for r in _responses(json.loads(line)))
    TRIED.update({int(s): n for s, n in statuses.items()})
    assert sum(statuses.values()) > 50 and not any(s.startswith("5") for s in statuses), statuses


def _responses(event):
    """Every HTTP response recorded in one schemathesis ndjson event."""
    if isinstance(event, dict):
        if isinstance(event.get("status_code"), int):
            yield event
        for value in event.values():
            yield from _responses(value)
    elif isinstance(event, list):
        for value in event:
            yield from _responses(value)


def test_no_worker_restarted_and_memory_stayed_bounded(server, baseline):
    workers, rss_before = baseline
    assert procs.workers(server.proc.pid).keys() == workers.keys(), "a worker died or restarted"
    rss_after = procs.rss(workers)
    print(f"\nfigures: hostile inputs answered {dict(sorted(TRIED.items()))}; worker RSS MiB "
          + ", ".join(f"{rss_before[p] / procs.MIB:.0f} -> {rss_after[p] / procs.MIB:.0f}"
                      for p in workers))
    assert sum(TRIED.values()) > 500
    for pid in workers:
        assert rss_after[pid] < 1.5 * rss_before[pid] + 64 * procs.MIB, (pid, rss_before, rss_after)
    assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
