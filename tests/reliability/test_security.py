"""Secrets stay secret and a missing key fails closed, on the main server
(tests/conftest.py), after everything the suite has sent it so far:
no key (valid, rotated or presented) in any log line, error body or metric;
an emptied or vanished keys directory means 401 for everyone, never open."""

from __future__ import annotations

import base64
import os

import pytest
import requests

from tests.app import media
from tests.app.conftest import wait_for_key_recheck
from tests.app.openapi_check import SpecClient
from tests.reliability import procs

CANARY = "canary-presented-key-4f1d9b"


def every_key_written(secret_dir) -> set[str]:
    """Every key the suite has put in the Secret directory, rotations included."""
    return {f.read_text() for f in secret_dir.path.glob("..2026_*/*") if f.read_text()}


@pytest.fixture()
def client(server, spec):
    return SpecClient(server.url, spec, key="primary-key-1")


def _all_401(client, keys) -> bool:
    return all(client.score(media.jpeg(), key=k).status_code == 401 for k in keys for _ in range(3))


def test_emptied_or_vanished_keys_directory_fails_closed(client, secret_dir):
    keys = ["primary-key-1", "secondary-key-1"]
    assert client.score(media.jpeg()).status_code == 200
    secret_dir.rotate(primary="", secondary="")
    try:
        assert _all_401(client, keys + [""])
    finally:
        secret_dir.rotate(primary="primary-key-1", secondary="secondary-key-1")
    assert client.score(media.jpeg()).status_code == 200
    gone = secret_dir.path.with_name("gone")
    os.rename(secret_dir.path, gone)
    wait_for_key_recheck()
    try:
        assert _all_401(client, keys)
    finally:
        os.rename(gone, secret_dir.path)
    wait_for_key_recheck()
    assert client.score(media.jpeg()).status_code == 200


@pytest.mark.parametrize("authorization", [
    f"Bearer {CANARY}", CANARY, f"Basic {base64.b64encode(CANARY.encode()).decode()}",
    f"Bearer  {CANARY} ", f"bearer {CANARY}x", f"Bearer primary-key-1{CANARY}",
])
def test_a_401_never_echoes_the_presented_key(client, authorization):
    response = client.request("POST", "/score", key=None, data=media.jpeg(),
                              headers={"Authorization": authorization})
    assert response.status_code == 401
    assert CANARY not in response.text and "primary-key" not in response.text
    assert CANARY not in str(response.headers)


def test_an_oversized_key_is_refused_without_echo(server):
    """Past gunicorn's header limit (8190 bytes) gunicorn answers itself, before the app."""
    response = requests.post(server.url + "/score", data=media.jpeg(), timeout=10,
                             headers={"Authorization": "Bearer " + CANARY * 400})
    assert 400 <= response.status_code < 500
    assert CANARY not in response.text


def test_no_key_in_the_log_or_a_metric_label(server, client, secret_dir):
    """Last of the file: the log holds everything since the server started."""
    assert client.score(media.jpeg()).status_code == 200
    assert client.score(media.jpeg(), key=CANARY).status_code == 401
    metrics = server.metrics()
    assert 'status="401"' in metrics and 'status="200"' in metrics
    secrets = every_key_written(secret_dir) | {CANARY}
    assert {"primary-key-1", "secondary-key-1"} <= secrets
    assert procs.secrets_in(metrics, secrets) == []
    assert procs.secrets_in(server.output(), secrets) == []
