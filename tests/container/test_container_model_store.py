"""modelStore blob for real: the init container the stack declares runs in the image the
stack declares, against Azurite (HTTPS, OAuth) and a stand-in Entra token endpoint, with
azure-identity's workload identity credential, into a directory the scoring container
then serves read-only, both under the rendered pod spec."""
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
from tests.model_store.azurite import TENANT
from tests.model_store.fake_entra import FakeEntra
from tests.model_store.test_scan import _save_serving

pytestmark = pytest.mark.slow
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
TOKEN_PATH = "/var/run/secrets/azure/tokens/azure-identity-token"  # where AKS's webhook puts it
CA_PATH = "/etc/ssl/test-ca.pem"


def _readable_copy(src, folder):
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    dst = folder / src.name
    shutil.copy(src, dst)
    dst.chmod(0o644)
    return dst


def _published(azurite, name: str, model_dir):
    container = azurite.container(name)
    container.create_container()
    return container, *publish(model_dir, container, "resnet50")


def _run_init(blob_image, pod, azurite, uri_path: str, work, **extra_env):
    """The stack's init container, as the kubelet runs it, into a fresh emptyDir under `work`:
    the webhook's token and variables, this test's CA, and the URI's host Azurite's (the
    digest stays the spec's). Returns the exit code, the log and the emptyDir."""
    [init] = pod["initContainers"]
    # the emptyDir both containers share; owned as the kubelet's fsGroup makes it writable
    shared = work / "model-volume"
    shared.mkdir(parents=True)
    os.chown(shared, pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"])
    shared.chmod(0o770)
    token = work / "public" / "azure-identity-token"
    token.parent.mkdir(mode=0o755)
    token.write_text("projected-service-account-token")
    token.chmod(0o644)
    ca = _readable_copy(azurite.cert, work / "ca")
    mounts = ["--mount", f"type=bind,source={token},target={TOKEN_PATH},readonly",
              "--mount", f"type=bind,source={ca},target={CA_PATH},readonly"]
    with FakeEntra(azurite.cert, azurite.key, CLIENT_ID, "projected-service-account-token") as entra:
        env = {**{e["name"]: e["value"] for e in init["env"]},
               "SCORING_MODEL_URI": f"{azurite.account_url}/{uri_path}",
               "SCORING_MODEL_STORAGE_SUFFIX": azurite.endpoint,
               "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_TENANT_ID": TENANT,
               "AZURE_FEDERATED_TOKEN_FILE": TOKEN_PATH, "REQUESTS_CA_BUNDLE": CA_PATH,
               "AZURE_AUTHORITY_HOST": entra.authority, **extra_env}
        spec = {**init, "env": [{"name": k, "value": v} for k, v in env.items()]}
        fetcher = runtime.Container(blob_image, pod, spec, {"model": shared}, extra_args=mounts,
                                    network="host")
        try:
            code = fetcher.run_to_end()
            log = fetcher.logs()
        finally:
            fetcher.remove()
    return code, log, shared


def test_the_init_container_fetches_and_the_scoring_container_serves(
        blob_image, blob_stack, azurite, encoded_model_dir, tmp_path, keys):
    pod = runtime.pod_of(blob_stack)
    [init] = pod["initContainers"]
    [scoring] = pod["containers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    _, prefix, digest = _published(azurite, "models", encoded_model_dir)
    assert digest == env["SCORING_MODEL_DIGEST"]  # the stack's digest is the publisher's
    assert env["SCORING_MODEL_URI"].endswith(f"/models/{prefix}")
    code, log, shared = _run_init(blob_image, pod, azurite, f"models/{prefix}", tmp_path)
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
    container, prefix, _ = _published(azurite, "tampered", encoded_model_dir)
    container.upload_blob(f"{prefix}/saved_model.pb", b"x" * 10, overwrite=True)
    code, log, shared = _run_init(blob_image, pod, azurite, f"tampered/{prefix}", tmp_path)
    assert code == 1
    assert log.strip().splitlines()[-1].startswith(
        "model fetch failed: 'saved_model.pb': size 10 in blob storage")
    assert os.listdir(shared) == []  # nothing for the scoring container to load


def test_with_modelscan_on_the_image_refuses_a_file_reading_model_and_passes_a_clean_one(
        blob_image, blob_stack, azurite, encoded_model_dir, tmp_path):
    """modelScan: true in the image itself: modelscan and the TensorFlow it parses the graph
    with, under the init container's read-only root, its user and its memory limit."""
    import tensorflow as tf
    pod = runtime.pod_of(blob_stack)
    model = _save_serving(tmp_path / "reads-files", lambda: tf.io.write_file(
        "/tmp/copy", tf.io.read_file("/var/run/secrets/azure/tokens/azure-identity-token")))
    _, bad, bad_digest = _published(azurite, "flagged", model)
    code, log, shared = _run_init(blob_image, pod, azurite, f"flagged/{bad}", tmp_path / "bad",
                                  SCORING_MODEL_DIGEST=bad_digest, SCORING_MODEL_SCAN="true")
    assert code == 2, log
    last = log.strip().splitlines()[-1]
    assert last.startswith("model fetch failed: model scan (modelscan 0.8.8) flagged the model")
    assert "'ReadFile'" in last and "'WriteFile'" in last
    assert os.listdir(shared) == []
    _, good, _ = _published(azurite, "clean", encoded_model_dir)
    code, log, shared = _run_init(blob_image, pod, azurite, f"clean/{good}", tmp_path / "good",
                                  SCORING_MODEL_SCAN="true")
    assert code == 0, log
    assert "model scan (modelscan 0.8.8): clean" in log
    assert mf.build(shared / "model") == mf.build(encoded_model_dir)
