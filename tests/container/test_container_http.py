"""The black-box HTTP tests against the real image, run as the rendered
Deployment runs it: uid 10001, read-only root filesystem, every capability
dropped, no privilege escalation, /tmp an emptyDir of its size limit, the API
keys a Secret volume, the Deployment's environment and ports."""
from __future__ import annotations

import socket
import subprocess
import time

import pytest
import requests

from tests.app import media
from tests.container import runtime
from tests.container.conftest import KEYS, model_mount, start


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def score(container, body: bytes, key: str | None = KEYS["primary"], **kw) -> requests.Response:
    headers = {"Content-Type": "image/jpeg", **(auth(key) if key else {})}
    return requests.post(container.url() + "/score", data=body, headers=headers, timeout=60, **kw)


@pytest.mark.parametrize("kind", ["startupProbe", "readinessProbe", "livenessProbe"])
def test_the_deployments_probes_pass(baked, kind):
    """The kubelet's httpGet, made from outside on the probe's own port and path."""
    assert baked.probe(kind).status_code == 200


@pytest.mark.parametrize("route", ["/", "/healthz", "/readyz", "/swagger.json"])
def test_open_routes(baked, route):
    assert requests.get(baked.url() + route, timeout=10).status_code == 200


def test_scores_a_jpeg_with_the_deployments_model_name(baked, scoring):
    env = {e["name"]: e.get("value") for e in scoring["env"]}
    answer = score(baked, media.jpeg(media.RED))
    # SCORING_DEPLOYMENT_NAME from the pod's label (the downward API), back as the header
    assert answer.headers["azureml-model-deployment"] == "blue"
    body = answer.json()
    assert body["model"] == {"name": env["SCORING_MODEL_NAME"], "version": env["SCORING_MODEL_VERSION"]}
    assert body["predictions"][0]["label"] == "red"
    assert score(baked, media.jpeg(media.BLUE)).json()["predictions"][0]["label"] == "blue"


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_missing_or_wrong_key_is_401(baked, key):
    response = score(baked, media.jpeg(), key=key)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_secondary_key_is_valid(baked):
    assert score(baked, media.jpeg(), key=KEYS["secondary"]).status_code == 200


def test_key_rotated_on_the_mounted_files_is_honoured(baked, keys):
    keys.rotate(primary="container-primary-2", secondary=KEYS["secondary"])
    try:
        assert score(baked, media.jpeg(), key=KEYS["primary"]).status_code == 401
        assert score(baked, media.jpeg(), key="container-primary-2").status_code == 200
    finally:
        keys.rotate(**KEYS)
    assert score(baked, media.jpeg()).status_code == 200


def test_get_score_is_405_with_allow_post(baked):
    response = requests.get(baked.url() + "/score", timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_body_over_the_default_limit_is_413(baked, scoring):
    env = {e["name"]: e.get("value") for e in scoring["env"]}
    assert "SCORING_MAX_BODY_BYTES" not in env, "the Deployment sets the limit: test that value"
    limit = 10 * 1024 * 1024  # docs/contract.md / docs/service.md: the default of SCORING_MAX_BODY_BYTES
    response = score(baked, b"\xff" * (limit + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"]
    assert score(baked, media.jpeg()).status_code == 200  # nothing broken by it


def test_metrics_port_serves_the_scoring_families(baked):
    score(baked, media.jpeg())
    text = requests.get(baked.url("metrics") + "/metrics", timeout=10).text
    assert 'scoring_requests_total{' in text and 'route="/score"' in text
    # the public port does not serve them
    assert requests.get(baked.url() + "/metrics", timeout=10).status_code == 404


def test_the_image_without_a_model_serves_a_mounted_one(blob_image, pod, scoring, keys,
                                                          encoded_model_dir):
    """The Blob path: an image built with an empty `model` context, the model mounted where
    SCORING_MODEL_DIR points (the model-store issue's fetch step will fill that directory)."""
    container = start(blob_image, pod, scoring, keys,
                      extra_args=model_mount(scoring, encoded_model_dir))
    try:
        assert score(container, media.jpeg(media.GREEN)).json()["predictions"][0]["label"] == "green"
    finally:
        container.remove()


def _open_request(url: str, body: bytes) -> socket.socket:
    """A /score request whose body is only half sent: in flight until `_finish`."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (f"POST /score HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
            f"Authorization: Bearer {KEYS['primary']}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    sock.sendall(head + body[: len(body) // 2])
    return sock


def _finish(sock: socket.socket, body: bytes) -> bytes:
    sock.sendall(body[len(body) // 2:])
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    sock.close()
    return b"".join(chunks)


def test_sigterm_drains_and_exits_within_the_grace_period(baked_image, pod, scoring, keys):
    """SIGTERM as the kubelet sends it once the preStop sleep is over: /readyz turns 503 at once,
    a request in flight and one sent during the drain are answered, and the process exits 0
    by itself within the grace period the Deployment leaves after the preStop pause."""
    grace = pod["terminationGracePeriodSeconds"] - scoring["lifecycle"]["preStop"]["sleep"]["seconds"]
    container = start(baked_image, pod, scoring, keys)
    try:
        body = media.jpeg(media.RED)
        in_flight = _open_request(container.url(), body)
        runtime.run([runtime.DOCKER, "kill", "--signal", "TERM", container.name], "docker kill")
        for _ in range(100):  # bounded: the drain begins at once
            if requests.get(container.url() + "/readyz", timeout=5).status_code == 503:
                break
            time.sleep(0.05)
        assert requests.get(container.url() + "/readyz", timeout=5).status_code == 503
        assert score(container, body).status_code == 200  # still accepted while draining
        answer = _finish(in_flight, body)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
        try:
            waited = runtime.run([runtime.DOCKER, "wait", container.name], "docker wait", grace)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {grace} s after SIGTERM: the kubelet would kill it\n"
                        f"{container.logs()}")
        assert waited.strip() == "0", container.logs()
        assert container.inspect()["State"]["OOMKilled"] is False
    finally:
        container.remove()
