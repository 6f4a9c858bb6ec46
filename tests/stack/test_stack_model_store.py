"""Models as data under mocks (issue 18): the storage account's security settings, the
content-addressed prefix, the pods' identity and its one grant, the init container, and
no storage key anywhere; modelStore image keeps today's baked-in model."""
from __future__ import annotations

import json

import mock_run
from stack_harness import plain_strings, unwrap

from infra import model_store as ms
from scoring_app.model_store import manifest as mf

ACCOUNT = "azure-native:storage:StorageAccount"
CONTAINER = "azure-native:storage:BlobContainer"
BLOB_SERVICE = "azure-native:storage:BlobServiceProperties"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
FEDERATION = "azure-native:managedidentity:FederatedIdentityCredential"
ROLE = "azure-native:authorization:RoleAssignment"
COMMAND = "command:local:Command"
READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"  # Storage Blob Data Reader (Azure built-in roles)
CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"  # Storage Blob Data Contributor


def _digest(model_dir) -> str:
    return mf.digest(mf.encode(mf.build(model_dir)))


def test_the_account_takes_entra_id_only_over_tls12_with_soft_delete(stack_run):
    account = stack_run.inputs(ACCOUNT)
    assert account["allowSharedKeyAccess"] is False
    assert account["allowBlobPublicAccess"] is False
    assert account["enableHttpsTrafficOnly"] is True
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["defaultToOAuthAuthentication"] is True
    assert account["allowCrossTenantReplication"] is False
    assert 3 <= len(account["accountName"]) <= 24 and account["accountName"].isalnum()
    assert account["accountName"] == account["accountName"].lower()
    service = stack_run.inputs(BLOB_SERVICE)
    assert service["blobServicesName"] == "default"
    assert service["deleteRetentionPolicy"] == {"enabled": True, "days": ms.SOFT_DELETE_DAYS}
    assert service["containerDeleteRetentionPolicy"] == {"enabled": True, "days": ms.SOFT_DELETE_DAYS}
    container = stack_run.inputs(CONTAINER)
    assert container["containerName"] == "models" and container["publicAccess"] == "None"


def test_the_model_is_published_under_its_content_addressed_prefix(stack_run, model_dir):
    digest = _digest(model_dir)
    publish = stack_run.inputs(COMMAND, "models-publish")
    assert publish["create"].startswith(".venv/bin/python -m scoring_tools.publish_model ")
    assert f"--name resnet50 --expect-sha256 {digest}" in publish["create"]
    assert digest in publish["triggers"]
    account = stack_run.inputs(ACCOUNT)["accountName"]
    uri = stack_run.outputs["modelUri"]["value"]
    assert uri == f"https://{account}.blob.core.windows.net/models/resnet50/{digest}"
    # the deployer writes, through its own login, to this container only
    writer = stack_run.inputs(ROLE, "models-deployer-write")
    assert writer["principalId"] == mock_run.DEPLOYER_OID
    assert writer["roleDefinitionId"].endswith(f"/roleDefinitions/{CONTRIBUTOR}")
    assert writer["scope"].endswith("/models-container")
    assert "models-deployer-write" in stack_run.one(COMMAND, "models-publish")["options"]["dependsOn"]


def test_the_pods_identity_is_federated_with_the_scoring_service_account(stack_run):
    identity = stack_run.inputs(IDENTITY, "models-identity")
    assert identity["resourceGroupName"]
    federation = stack_run.inputs(FEDERATION, "models-federation")
    assert federation["issuer"] == mock_run.OIDC_ISSUER
    assert federation["subject"] == "system:serviceaccount:scoring:scoring"
    assert federation["audiences"] == ["api://AzureADTokenExchange"]
    assert federation["resourceName"] == "models-identity"
    [account] = [o for o in stack_run.kubernetes_objects() if o["kind"] == "ServiceAccount"
                 and o["metadata"]["name"] == "scoring"]
    assert account["metadata"]["annotations"] == {
        "azure.workload.identity/client-id": mock_run.MODELS_CLIENT_ID}
    template = stack_run.inputs("kubernetes:apps/v1:Deployment")["spec"]["template"]
    assert template["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert template["spec"]["serviceAccountName"] == "scoring"


def test_read_on_the_models_container_and_nothing_wider(stack_run):
    grants = [unwrap(r["inputs"]) for r in stack_run.all_of(ROLE)
              if unwrap(r["inputs"])["principalId"] == mock_run.MODELS_OID]
    assert len(grants) == 1
    [grant] = grants
    assert grant["roleDefinitionId"] == (
        f"/subscriptions/{mock_run.SUBSCRIPTION}/providers/Microsoft.Authorization/"
        f"roleDefinitions/{READER}")
    assert grant["scope"] == "/mock/azure-native:storage:BlobContainer/models-container"
    assert grant["principalType"] == "ServicePrincipal"


def test_the_init_container_fetches_the_digest_the_stack_published(stack_run, model_dir):
    spec = stack_run.pod_spec("Deployment")
    [init] = spec["initContainers"]
    [scoring] = spec["containers"]
    assert init["image"] == scoring["image"]  # the same image, its own command
    assert init["command"] == ["python3", "-m", "scoring_app.model_store.fetch"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env == {"SCORING_MODEL_URI": stack_run.outputs["modelUri"]["value"],
                   "SCORING_MODEL_DIGEST": _digest(model_dir),
                   "SCORING_MODEL_DIR": ms.MODEL_PATH}
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "model", "mountPath": ms.MOUNT} in init["volumeMounts"]
    assert {"name": "model", "mountPath": ms.MOUNT, "readOnly": True} in scoring["volumeMounts"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "model"]
    total = sum(e.size for e in mf.build(model_dir))
    assert volume == {"name": "model", "emptyDir": {"sizeLimit": ms.PublishedModel(
        "resnet50", str(model_dir), _digest(model_dir), total).volume_size_limit}}
    annotations = stack_run.inputs("kubernetes:apps/v1:Deployment")["spec"]["template"]["metadata"]
    assert annotations["annotations"]["scoring/model-sha256"] == _digest(model_dir)
    # the token reaches the init container only, not the container that serves the internet
    assert annotations["annotations"]["azure.workload.identity/skip-containers"] == "scoring"
    # the pod waits for the upload, the federation and the grant
    depends = stack_run.one("kubernetes:apps/v1:Deployment", "scoring-blue-deploy")["options"]["dependsOn"]
    assert {"models-publish", "models-federation", "models-pods-read"} <= set(depends)


def test_volume_size_and_fetch_budget_follow_the_model():
    small = ms.PublishedModel("m", "/x", "a" * 64, 100 << 20)
    big = ms.PublishedModel("m", "/x", "a" * 64, 2 << 30)
    assert small.volume_size_limit == "164Mi"
    assert big.volume_size_limit == f"{2048 + 64}Mi"
    assert big.fetch_budget_s > small.fetch_budget_s >= ms.FETCH_FIXED_BUDGET_S


def test_a_changed_model_dir_leaves_the_image_untouched(runs):
    dev, remodelled = runs["dev"], runs["remodelled"]
    image = lambda run: run.inputs("docker-build:index:Image")  # noqa: E731
    assert image(dev)["tags"] == image(remodelled)["tags"]
    assert image(dev)["context"] == image(remodelled)["context"]
    assert image(dev)["context"]["named"]["model"]["location"] == "infra/no_model"
    assert dev.outputs["modelUri"]["value"] != remodelled.outputs["modelUri"]["value"]
    env = lambda run: {e["name"]: e["value"] for e in run.pod_spec("Deployment")["initContainers"][0]["env"]}  # noqa: E731
    assert env(dev)["SCORING_MODEL_DIGEST"] != env(remodelled)["SCORING_MODEL_DIGEST"]


def test_model_store_image_bakes_the_model_in_as_before(runs, model_dir):
    baked = runs["baked"]
    image = baked.inputs("docker-build:index:Image")
    assert image["context"]["named"]["model"]["location"].endswith(model_dir.name)
    assert image["tags"] != runs["dev"].inputs("docker-build:index:Image")["tags"]
    assert not baked.all_of(ACCOUNT) and not baked.all_of(CONTAINER)
    spec = baked.pod_spec("Deployment")
    assert "initContainers" not in spec
    assert "modelUri" not in baked.outputs
    labels = baked.inputs("kubernetes:apps/v1:Deployment")["spec"]["template"]["metadata"]["labels"]
    assert "azure.workload.identity/use" not in labels


KEY_WORDS = ("AccountKey=", "SharedAccessSignature", "sig=", "listKeys", "listStorageAccountKeys",
             "DefaultEndpointsProtocol")


def test_no_storage_key_in_any_input_output_or_call(stack_run, runs):
    for run in (stack_run, runs["variant"], runs["baked"]):
        every = [*plain_strings([r["inputs"] for r in run.resources]),
                 *plain_strings(run.outputs), *plain_strings(run.data["calls"])]
        assert every
        assert not [s for s in every if any(word.lower() in s.lower() for word in KEY_WORDS)]
        assert not any("listStorageAccount" in c["token"] or "listAccountSas" in c["token"]
                       for c in run.data["calls"])
        for obj in run.kubernetes_objects():  # nothing in the cluster names the account's keys
            assert "AccountKey" not in json.dumps(obj)


def test_a_model_uri_is_read_where_it_lives_and_its_signature_required(runs):
    from conftest import EXTERNAL_MODEL
    run = runs["external"]
    assert not run.all_of(ACCOUNT) and not run.all_of(COMMAND + "x")  # nothing of theirs declared
    assert not [r for r in run.all_of(COMMAND) if r["name"] == "models-publish"]
    [grant] = [unwrap(r["inputs"]) for r in run.all_of(ROLE)
               if unwrap(r["inputs"])["principalId"] == mock_run.MODELS_OID]
    assert grant["scope"] == EXTERNAL_MODEL["modelUriScope"]
    assert grant["roleDefinitionId"].endswith(READER)
    spec = run.pod_spec("Deployment")
    [init] = spec["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["SCORING_MODEL_URI"] == EXTERNAL_MODEL["modelUri"]
    assert env["SCORING_MODEL_DIGEST"] == EXTERNAL_MODEL["modelDigest"]
    assert env["SCORING_MODEL_PUBLIC_KEY"] == f"{ms.SIGNER_MOUNT}/{ms.SIGNER_KEY}"
    assert {"name": "model-signer", "mountPath": ms.SIGNER_MOUNT, "readOnly": True} in init["volumeMounts"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "model-signer"]
    assert volume["configMap"]["name"] == ms.SIGNER_CONFIG_MAP
    [config_map] = [o for o in run.kubernetes_objects() if o["kind"] == "ConfigMap"
                    and o["metadata"]["name"] == ms.SIGNER_CONFIG_MAP]
    assert config_map["data"][ms.SIGNER_KEY].strip() == EXTERNAL_MODEL["modelPublicKey"]
    assert [v for v in spec["volumes"] if v["name"] == "model"][0]["emptyDir"] == {"sizeLimit": "4Gi"}
    assert run.outputs["modelUri"]["value"] == EXTERNAL_MODEL["modelUri"]
    # the stack's own image is still the app alone
    assert run.inputs("docker-build:index:Image")["tags"] == runs["dev"].inputs("docker-build:index:Image")["tags"]


def test_the_model_scan_is_on_only_where_the_stack_turns_it_on(stack_run, runs):
    """modelScan: true (the variant) sets SCORING_MODEL_SCAN on the init container; the
    stack files leave it unset, and the fetch's default is off."""
    init_env = lambda run: {e["name"]: e["value"] for e in  # noqa: E731
                            run.pod_spec("Deployment")["initContainers"][0]["env"]}
    assert init_env(runs["variant"])["SCORING_MODEL_SCAN"] == "true"
    assert "SCORING_MODEL_SCAN" not in init_env(stack_run)
    # the scoring container never sees it: the scan is the init container's
    for run in (stack_run, runs["variant"]):
        assert "SCORING_MODEL_SCAN" not in {
            e["name"] for e in run.pod_spec("Deployment")["containers"][0]["env"]}


def test_no_signer_no_signature_check(stack_run):
    [init] = stack_run.pod_spec("Deployment")["initContainers"]
    assert "SCORING_MODEL_PUBLIC_KEY" not in {e["name"] for e in init["env"]}
