"""Payload capture from real gunicorn servers into Azurite (HTTPS, OAuth), each with the
pod's credential: azure-identity's WorkloadIdentityCredential exchanging a projected token
at a stand-in Entra endpoint (tests/model_store/fake_entra.py), as in the cluster."""
from __future__ import annotations

import base64
import json
import signal
import uuid

import pytest
import requests

from tests.app import media
from tests.app.conftest import Server
from tests.capture.standins import wait_until
from tests.model_store.azurite import TENANT
from tests.model_store.fake_entra import FakeEntra

pytestmark = pytest.mark.slow
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
ASSERTION = "projected-service-account-token"
KEY = {"Authorization": "Bearer primary-key-1"}


@pytest.fixture(scope="module")
def entra(azurite):
    with FakeEntra(azurite.cert, azurite.key, CLIENT_ID, ASSERTION) as endpoint:
        yield endpoint


def _start(azurite, entra, model_dir, secret_dir, tmp_path, deployment, **env):
    captures = azurite.container(f"captures{uuid.uuid4().hex[:8]}")
    captures.create_container()
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(ASSERTION)
    server = Server({
        "SCORING_MODEL_DIR": str(model_dir), "SCORING_MODEL_NAME": "colours",
        "SCORING_MODEL_VERSION": "3", "SCORING_API_KEYS_DIR": str(secret_dir.path),
        "SCORING_WORKERS": "1", "SCORING_DEPLOYMENT_NAME": deployment, "TMPDIR": str(tmp_path),
        "SCORING_CAPTURE_URI": f"{azurite.account_url}/{captures.container_name}",
        "AZURE_AUTHORITY_HOST": entra.authority, "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "REQUESTS_CA_BUNDLE": str(azurite.cert), **env})
    return server.wait_ready(), captures


def _records(captures) -> dict[str, list[dict]]:
    """Blob name -> its records."""
    return {blob.name: [json.loads(line) for line in
                        captures.download_blob(blob.name).readall().splitlines()]
            for blob in captures.list_blobs()}


def _score(server, image, request_id):
    answer = requests.post(server.url + "/score", data=image, timeout=60,
                           headers={**KEY, "x-request-id": request_id})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == request_id
    return answer


@pytest.fixture(scope="module")
def streaming(azurite, entra, encoded_model_dir, secret_dir, tmp_path_factory):
    """Images off, blocks cut after half a second."""
    server, captures = _start(azurite, entra, encoded_model_dir, secret_dir,
                              tmp_path_factory.mktemp("capture"), "green",
                              SCORING_CAPTURE_BLOCK_SECONDS="0.5")
    yield server, captures
    server.stop()


def test_sampled_records_arrive_partitioned_without_images(streaming):
    server, captures = streaming
    sent = {f"part-{i}": _score(server, media.jpeg(media.RED), f"part-{i}").json() for i in range(6)}
    wait_until(lambda: {r["request_id"] for rs in _records(captures).values() for r in rs} >= set(sent),
               "six records in blob storage")
    for name, rows in _records(captures).items():
        parts = name.split("/")
        assert parts[0] == "green" and len(parts) == 6 and parts[5].endswith(".jsonl")
        assert [len(p) for p in parts[1:5]] == [4, 2, 2, 2]
        for row in rows:
            assert row["time"].startswith("-".join(parts[1:4]) + "T" + parts[4])  # its own hour
            assert row["deployment"] == "green" and row["model"]["name"] == "colours"
            assert [i["format"] for i in row["inputs"]] == ["jpeg"]
            assert not any("image_b64" in i for i in row["inputs"])
            if row["request_id"] in sent:
                assert row["predictions"] == [sent[row["request_id"]]["predictions"]]
    assert "scoring_capture_records_total" in server.metrics()


def test_azurite_down_loses_records_but_no_request(streaming, azurite):
    server, captures = streaming
    # SIGINT: Azurite saves its metadata first (it autosaves only every few seconds), so the
    # container made just before is still there when it comes back; "down" is the point here
    azurite.stop(signal.SIGINT)
    try:
        for i in range(10):
            _score(server, media.jpeg(media.BLUE), f"down-{i}")
        wait_until(lambda: _metric(server, "scoring_capture_upload_failures_total") >= 1,
                   "an upload failure counted", timeout=120)
        assert _metric(server, 'scoring_capture_dropped_records_total{reason="upload_failed"}') >= 1
    finally:
        azurite.start()
    _score(server, media.jpeg(media.RED), "after-1")
    wait_until(lambda: any(r["request_id"] == "after-1" for rs in _records(captures).values()
                           for r in rs), "capture resumed once blob storage is back", timeout=120)


def _metric(server, name: str) -> float:
    for line in server.metrics().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_images_kept_when_asked_and_sigterm_flushes(azurite, entra, encoded_model_dir, secret_dir,
                                                    tmp_path):
    """Blocks that would wait an hour: only the shutdown's flush uploads them."""
    server, captures = _start(azurite, entra, encoded_model_dir, secret_dir, tmp_path, "shadow",
                              SCORING_CAPTURE_IMAGES="true", SCORING_CAPTURE_BLOCK_SECONDS="3600",
                              SCORING_DRAIN_SECONDS="0")
    try:
        images = {f"img-{i}": media.jpeg(colour) for i, colour in
                  enumerate((media.RED, media.GREEN, media.BLUE))}
        for request_id, image in images.items():
            _score(server, image, request_id)
        assert list(captures.list_blobs()) == []
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=60) == 0
    finally:
        server.stop()
    rows = [r for rs in _records(captures).values() for r in rs]
    assert {r["request_id"]: base64.b64decode(r["inputs"][0]["image_b64"]) for r in rows} == images
    assert all(r["deployment"] == "shadow" for r in rows)
