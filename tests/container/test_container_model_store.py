"""modelStore blob for real: the init container the stack declares runs in the image the
stack declares, against Azurite (HTTPS, OAuth) and a stand-in Entra token endpoint, with
azure-identity's workload identity credential, into a directory the scoring container
then serves read-only, both under the rendered pod spec (issue 18; issue 20's harness)."""
from __future__ import annotations

import os
import shutil

import pytest
import requests

from scoring_app.model_store import manifest as mf
from scoring_tools.publish_model import publish
from tests.app import media
from tests.container import runtime
from tests.container.conftest import KEYS, secret_volume
from tests.model_store.azurite import TENANT, Azurite
from tests.model_store.fake_entra import FakeEntra

pytestmark = pytest.mark.slow
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TOKEN_PATH = "/var/run/secrets/azure/tokens/azure-identity-token"  # where AKS's webhook puts it
CA_PATH = "/etc/ssl/test-ca.pem"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    emulator = Azurite(tmp_path_factory.mktemp("azurite")).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def _readable_copy(src, folder):
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    dst = folder / src.name
    shutil.copy(src, dst)
    dst.chmod(0o644)
    return dst


def test_the_init_container_fetches_and_the_scoring_container_serves(
        blob_image, blob_stack, azurite, encoded_model_dir, tmp_path, keys):
    pod = runtime.pod_of(blob_stack)
    [init] = pod["initContainers"]
    [scoring] = pod["containers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    container = azurite.container("models")
    container.create_container()
    prefix, digest = publish(encoded_model_dir, container, "resnet50")
    assert digest == env["SCORING_MODEL_DIGEST"]  # the stack's digest is the publisher's
    assert env["SCORING_MODEL_URI"].endswith(f"/models/{prefix}")

    # the emptyDir both containers share; owned as the kubelet's fsGroup makes it writable
    shared = tmp_path / "model-volume"
    shared.mkdir()
    os.chown(shared, pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"])
    shared.chmod(0o770)
    public = tmp_path / "public"
    token = public / "azure-identity-token"
    public.mkdir(mode=0o755)
    token.write_text("projected-service-account-token")
    token.chmod(0o644)
    ca = _readable_copy(azurite.cert, tmp_path / "ca")

    # the URI's host is Azurite's here; the digest is the spec's, unchanged
    init_spec = {**init, "env": [
        {"name": k, "value": v} for k, v in {
            **env, "SCORING_MODEL_URI": f"{azurite.account_url}/models/{prefix}",
            # what the webhook injects, and this test's CA
            "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_TENANT_ID": TENANT,
            "AZURE_FEDERATED_TOKEN_FILE": TOKEN_PATH, "REQUESTS_CA_BUNDLE": CA_PATH}.items()]}
    mounts = ["--mount", f"type=bind,source={token},target={TOKEN_PATH},readonly",
              "--mount", f"type=bind,source={ca},target={CA_PATH},readonly"]
    with FakeEntra(azurite.cert, azurite.key, CLIENT_ID, "projected-service-account-token") as entra:
        init_spec["env"].append({"name": "AZURE_AUTHORITY_HOST", "value": entra.authority})
        fetcher = runtime.Container(blob_image, pod, init_spec, {"model": shared},
                                    extra_args=mounts, network="host")
        try:
            code = fetcher.run_to_end()
            log = fetcher.logs()
        finally:
            fetcher.remove()
    assert code == 0, log
    assert "model fetch: verified" in log
    fetched = shared / "model"
    assert mf.build(fetched) == mf.build(encoded_model_dir)

    server = runtime.Container(blob_image, pod, scoring,
                               {"model": shared, secret_volume(pod, scoring): keys.path})
    try:
        server.start().wait_started()
        answer = requests.post(server.url() + "/score", data=media.jpeg(media.BLUE), timeout=30,
                               headers={"Authorization": f"Bearer {KEYS['primary']}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] == "blue"
        metrics = requests.get(server.url("metrics") + "/metrics", timeout=10).text
        assert "scoring_model_fetch_bytes " in metrics and "scoring_model_fetch_bytes 0.0" not in metrics
    finally:
        server.remove()


def test_a_tampered_model_stops_the_init_container_in_one_line(
        blob_image, blob_stack, azurite, encoded_model_dir, tmp_path):
    pod = runtime.pod_of(blob_stack)
    [init] = pod["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    container = azurite.container("tampered")
    container.create_container()
    prefix, _ = publish(encoded_model_dir, container, "resnet50")
    container.upload_blob(f"{prefix}/saved_model.pb", b"x" * 10, overwrite=True)
    shared = tmp_path / "model-volume"
    shared.mkdir()
    os.chown(shared, pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"])
    token = tmp_path / "tok" / "azure-identity-token"
    token.parent.mkdir(mode=0o755)
    token.write_text("t")
    token.chmod(0o644)
    ca = _readable_copy(azurite.cert, tmp_path / "ca")
    with FakeEntra(azurite.cert, azurite.key, CLIENT_ID, "t") as entra:
        spec = {**init, "env": [{"name": k, "value": v} for k, v in {
            **env, "SCORING_MODEL_URI": f"{azurite.account_url}/tampered/{prefix}",
            "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_TENANT_ID": TENANT,
            "AZURE_FEDERATED_TOKEN_FILE": TOKEN_PATH, "REQUESTS_CA_BUNDLE": CA_PATH,
            "AZURE_AUTHORITY_HOST": entra.authority}.items()]}
        fetcher = runtime.Container(blob_image, pod, spec, {"model": shared}, network="host",
                                    extra_args=["--mount", f"type=bind,source={token},target={TOKEN_PATH},readonly",
                                                "--mount", f"type=bind,source={ca},target={CA_PATH},readonly"])
        try:
            code = fetcher.run_to_end()
            log = fetcher.logs()
        finally:
            fetcher.remove()
    assert code == 1
    assert log.strip().splitlines()[-1].startswith(
        "model fetch failed: saved_model.pb: size 10 in blob storage")
    assert os.listdir(shared) == []  # nothing for the scoring container to load
