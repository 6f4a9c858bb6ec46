"""Models as data under mocks: the storage account's security settings, the
content-addressed prefix, the pods' identity and its one grant, the init container, and
no storage key anywhere; modelStore image keeps today's baked-in model."""
from __future__ import annotations

import json
import re
import shlex
import sys

import pytest

import mock_run
from stack_harness import REPO, plain_strings, unwrap
from test_stack_config import dev_values, load  # noqa: F401 (a fixture)

from infra import model_store as ms
from scoring_app.model_store import manifest as mf
from scoring_app.contract import FETCHED_MODEL_PATH, MODEL_VOLUME_PATH, Var

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
    # the interpreter that ran the program (the test's), from the repository's root
    argv = shlex.split(publish["create"])
    assert argv[:3] == [sys.executable, "-m", "scoring_tools.publish_model"], argv
    assert argv[-4:] == ["--name", "resnet50", "--expect-sha256", digest]
    assert publish["dir"] == str(REPO)
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
    assert env == {Var.MODEL_URI: stack_run.outputs["modelUri"]["value"],
                   Var.MODEL_DIGEST: _digest(model_dir),
                   Var.MODEL_DIR: FETCHED_MODEL_PATH}
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "model", "mountPath": MODEL_VOLUME_PATH} in init["volumeMounts"]
    assert {"name": "model", "mountPath": MODEL_VOLUME_PATH, "readOnly": True} in scoring["volumeMounts"]
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
    assert env(dev)[Var.MODEL_DIGEST] != env(remodelled)[Var.MODEL_DIGEST]


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
    for run in (stack_run, runs["variant"], runs["baked"], runs["external"], runs["mixed-plus"]):
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
    [grant] = [r for r in run.all_of(ROLE) if unwrap(r["inputs"])["principalId"] == mock_run.MODELS_OID]
    assert unwrap(grant["inputs"])["scope"] == EXTERNAL_MODEL["modelUriScope"]
    assert unwrap(grant["inputs"])["roleDefinitionId"].endswith(READER)
    # named from its container now; the name it had as the stack's only grant is its alias,
    # so a stack made before per-deployment models keeps this assignment (no replacement)
    assert grant["name"] == "models-read-theirmodels-published"
    assert grant["options"]["aliases"] == ["models-pods-read"]
    spec = run.pod_spec("Deployment")
    [init] = spec["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env[Var.MODEL_URI] == EXTERNAL_MODEL["modelUri"]
    assert env[Var.MODEL_DIGEST] == EXTERNAL_MODEL["modelDigest"]
    assert env[Var.MODEL_PUBLIC_KEY] == f"{ms.SIGNER_MOUNT}/{ms.SIGNER_KEY}"
    assert {"name": "model-signer", "mountPath": ms.SIGNER_MOUNT, "readOnly": True} in init["volumeMounts"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "model-signer"]
    assert volume["configMap"] == {"name": ms.SIGNER_CONFIG_MAP,
                                   "items": [{"key": "blue.pem", "path": ms.SIGNER_KEY}]}
    [config_map] = [o for o in run.kubernetes_objects() if o["kind"] == "ConfigMap"
                    and o["metadata"]["name"] == ms.SIGNER_CONFIG_MAP]
    assert config_map["data"] == {"blue.pem": EXTERNAL_MODEL["modelPublicKey"] + "\n"}
    assert [v for v in spec["volumes"] if v["name"] == "model"][0]["emptyDir"] == {"sizeLimit": "4Gi"}
    assert run.outputs["modelUri"]["value"] == EXTERNAL_MODEL["modelUri"]
    # the stack's own image is still the app alone
    assert run.inputs("docker-build:index:Image")["tags"] == runs["dev"].inputs("docker-build:index:Image")["tags"]


def test_the_model_scan_is_on_only_where_the_stack_turns_it_on(stack_run, runs):
    """modelScan: true (the variant) sets the scan variable on the init container; the
    stack files leave it unset, and the fetch's default is off."""
    init_env = lambda run: {e["name"]: e["value"] for e in  # noqa: E731
                            run.pod_spec("Deployment")["initContainers"][0]["env"]}
    assert init_env(runs["variant"])[Var.MODEL_SCAN] == "true"
    assert Var.MODEL_SCAN not in init_env(stack_run)
    # the scoring container never sees it: the scan is the init container's
    for run in (stack_run, runs["variant"]):
        assert Var.MODEL_SCAN not in {
            e["name"] for e in run.pod_spec("Deployment")["containers"][0]["env"]}


def test_no_signer_no_signature_check(stack_run):
    [init] = stack_run.pod_spec("Deployment")["initContainers"]
    assert Var.MODEL_PUBLIC_KEY not in {e["name"] for e in init["env"]}


# --- modelUri per deployment: blue on the stack's model, green on someone else's ------------

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def _fetches(run) -> dict[str, dict]:
    """deployment -> what its pods fetch: the init container's env, the digest annotation,
    the model volume, the signer volume and the Deployment's dependencies."""
    out = {}
    for r in run.all_of(DEPLOYMENT):
        name = unwrap(r["inputs"])["metadata"]["labels"]["aks-gpu-scoring/deployment"]
        template = unwrap(r["inputs"])["spec"]["template"]
        [init] = template["spec"]["initContainers"]
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        out[name] = {"env": {e["name"]: e["value"] for e in init["env"]},
                     "annotation": template["metadata"]["annotations"]["scoring/model-sha256"],
                     "size": volumes["model"]["emptyDir"]["sizeLimit"],
                     "signer": volumes.get("model-signer", {}).get("configMap"),
                     "dependsOn": set(r["options"]["dependsOn"])}
    return out


def _reads(run) -> dict[str, dict]:
    """Pulumi name -> inputs of every grant to the pods' identity."""
    return {r["name"]: unwrap(r["inputs"]) for r in run.all_of(ROLE)
            if unwrap(r["inputs"])["principalId"] == mock_run.MODELS_OID}


def test_blue_on_the_stacks_model_green_on_a_model_published_elsewhere(runs, model_dir):
    from conftest import EXTERNAL_MODEL, MIXED_OVERRIDES
    run = runs["mixed"]
    green = MIXED_OVERRIDES["deployments"]["green"]
    fetch = _fetches(run)
    account = run.inputs(ACCOUNT)["accountName"]  # blue's model: published by the stack
    blue_uri = f"https://{account}.blob.core.windows.net/models/resnet50/{_digest(model_dir)}"
    assert fetch["blue"]["env"] == {Var.MODEL_URI: blue_uri,
                                    Var.MODEL_DIGEST: _digest(model_dir),
                                    Var.MODEL_DIR: FETCHED_MODEL_PATH}
    assert fetch["green"]["env"] == {Var.MODEL_URI: green["modelUri"],
                                     Var.MODEL_DIGEST: green["modelDigest"],
                                     Var.MODEL_DIR: FETCHED_MODEL_PATH,
                                     Var.MODEL_PUBLIC_KEY: f"{ms.SIGNER_MOUNT}/{ms.SIGNER_KEY}"}
    assert fetch["blue"]["annotation"] == _digest(model_dir)
    assert fetch["green"]["annotation"] == green["modelDigest"]
    assert fetch["green"]["size"] == "4Gi"  # modelSizeLimit's default: the size is not known here
    # only green checks a signature, with its own key
    assert fetch["blue"]["signer"] is None
    assert fetch["green"]["signer"] == {"name": ms.SIGNER_CONFIG_MAP,
                                        "items": [{"key": "green.pem", "path": ms.SIGNER_KEY}]}
    [config_map] = [o for o in run.kubernetes_objects() if o["kind"] == "ConfigMap"]
    assert config_map["data"] == {"green.pem": EXTERNAL_MODEL["modelPublicKey"] + "\n"}
    # one upload (blue's), and each Deployment waits for its own model's grant
    assert [r["name"] for r in run.all_of(COMMAND) if "publish" in r["name"]] == ["models-publish"]
    assert {"models-publish", "models-pods-read", "models-federation"} <= fetch["blue"]["dependsOn"]
    assert {"models-read-theirmodels-published", "models-federation"} <= fetch["green"]["dependsOn"]
    assert not {"models-publish", "models-pods-read"} & fetch["green"]["dependsOn"]
    assert "scoring-model-signer" in fetch["green"]["dependsOn"]  # its key is there first
    assert "scoring-model-signer" not in fetch["blue"]["dependsOn"]
    # the deployments output names each one's own model
    out = run.outputs["deployments"]["value"]
    assert {n: d["modelUri"] for n, d in out.items()} == {"blue": blue_uri, "green": green["modelUri"]}
    assert {n: d["model"] for n, d in out.items()} == {"blue": "resnet50:1", "green": "resnet50:2"}
    assert run.outputs["modelUri"]["value"] == blue_uri  # the first deployment's, as before
    # one identity for the endpoint, one image for both
    assert len(run.all_of(IDENTITY)) == 1 and len(run.all_of("docker-build:index:Image")) == 1


def test_read_is_granted_once_per_container_on_that_container_only(runs):
    from conftest import MIXED_PLUS_OVERRIDES, container_id
    run = runs["mixed-plus"]
    reads = _reads(run)
    assert set(reads) == {"models-pods-read", "models-read-theirmodels-published",
                          "models-read-othermodels-resnets"}
    assert reads["models-pods-read"]["scope"] == "/mock/azure-native:storage:BlobContainer/models-container"
    # green and teal share theirmodels/published: one grant; red's container has its own
    assert reads["models-read-theirmodels-published"]["scope"] == container_id("theirmodels", "published")
    assert reads["models-read-othermodels-resnets"]["scope"] == container_id("othermodels", "resnets")
    for grant in reads.values():
        assert grant["roleDefinitionId"] == (
            f"/subscriptions/{mock_run.SUBSCRIPTION}/providers/Microsoft.Authorization/"
            f"roleDefinitions/{READER}")
        assert grant["principalType"] == "ServicePrincipal"
        assert "/blobServices/default/containers/" in grant["scope"] or grant["scope"].endswith(
            "/models-container")  # a container, never an account, group or subscription
    fetch = _fetches(run)
    wanted = MIXED_PLUS_OVERRIDES["deployments"]
    for name in ("green", "teal", "red"):
        assert fetch[name]["env"][Var.MODEL_URI] == wanted[name]["modelUri"]
        assert fetch[name]["env"][Var.MODEL_DIGEST] == wanted[name]["modelDigest"]
        assert fetch[name]["annotation"] == wanted[name]["modelDigest"]
    assert fetch["teal"]["size"] == "1Gi"  # its own modelSizeLimit
    assert "models-read-theirmodels-published" in fetch["teal"]["dependsOn"]
    assert "models-read-othermodels-resnets" in fetch["red"]["dependsOn"]
    assert Var.MODEL_PUBLIC_KEY not in fetch["teal"]["env"]  # green's key is green's
    assert fetch["teal"]["signer"] is None
    # red's model is checked with its publisher's certificate chain, mounted as the fetch's file
    assert fetch["red"]["env"][Var.MODEL_CERTIFICATE_CHAIN] == f"{ms.SIGNER_MOUNT}/{ms.SIGNER_CHAIN}"
    assert Var.MODEL_PUBLIC_KEY not in fetch["red"]["env"]
    assert fetch["red"]["signer"] == {"name": ms.SIGNER_CONFIG_MAP,
                                      "items": [{"key": "red.chain.pem", "path": ms.SIGNER_CHAIN}]}
    [config_map] = [o for o in run.kubernetes_objects() if o["kind"] == "ConfigMap"]
    assert config_map["data"] == {"green.pem": wanted["green"]["modelPublicKey"] + "\n",
                                  "red.chain.pem": wanted["red"]["modelCertificateChain"] + "\n"}


def test_adding_deployments_leaves_the_first_ones_grants_and_pods_as_they_were(runs):
    """Grants are named from their container, so a deployment added on another container
    (or the same one) changes no existing grant's name or inputs: nothing is replaced."""
    before, after = runs["mixed"], runs["mixed-plus"]
    old, new = _reads(before), _reads(after)
    assert set(old) < set(new)
    assert {name: new[name] for name in old} == old
    # a URN is the type, the parent chain and the name: the same for each earlier grant
    parents = lambda run: {r["name"]: r["options"]["parent"] for r in run.all_of(ROLE)}  # noqa: E731
    assert parents(before).items() <= parents(after).items()
    # blue's and green's pods are untouched too
    for name in ("blue", "green"):
        assert (before.inputs(DEPLOYMENT, f"scoring-{name}-deploy")["spec"]
                == after.inputs(DEPLOYMENT, f"scoring-{name}-deploy")["spec"])


GREEN = {"modelUri": "https://theirmodels.blob.core.windows.net/published/resnet50/" + "d" * 64,
         "modelDigest": "d" * 64,
         "modelUriScope": ("/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/"
                           "theirs/providers/Microsoft.Storage/storageAccounts/theirmodels/"
                           "blobServices/default/containers/published")}
TWO = {"gpuMaxCount": "2", "traffic": {"blue": 100}}
PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
CHAIN = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----"
BAD_PER_DEPLOYMENT = [
    ({"deployments": {"blue": {}, "green": {**GREEN, "modelDir": "models/resnet50"}}},
     "deployments.green.modelUri", r"cannot be set with modelDir in the same deployment"),
    ({"deployments": {"blue": {}, "green": {"modelDigest": "d" * 64}}},
     "deployments.green.modelDigest", r"goes with deployments\.green\.modelUri"),
    ({"deployments": {"blue": {}, "green": {"modelUriScope": GREEN["modelUriScope"]}}},
     "deployments.green.modelUriScope", r"goes with deployments\.green\.modelUri"),
    ({"deployments": {"blue": {}, "green": {"modelSizeLimit": "1Gi"}}},
     "deployments.green.modelSizeLimit", r"goes with"),
    ({"deployments": {"blue": {}, "green": {k: v for k, v in GREEN.items() if k != "modelDigest"}}},
     "deployments.green.modelDigest", r"with deployments\.green\.modelUri, the sha256"),
    ({"deployments": {"blue": {}, "green": {**GREEN, "modelDigest": "D" * 64}}},
     "deployments.green.modelDigest", r"64 lowercase hex"),
    ({"deployments": {"blue": {}, "green": {k: v for k, v in GREEN.items() if k != "modelUriScope"}}},
     "deployments.green.modelUriScope", r"resource id of its container.*theirmodels.*published"),
    # read on the account (or wider) is refused: the container, and nowhere wider
    ({"deployments": {"blue": {}, "green": {**GREEN, "modelUriScope": GREEN["modelUriScope"].split(
        "/blobServices")[0]}}}, "deployments.green.modelUriScope", r"nowhere wider"),
    ({"deployments": {"blue": {}, "green": {**GREEN, "modelUriScope": GREEN["modelUriScope"].replace(
        "containers/published", "containers/other")}}}, "deployments.green.modelUriScope",
     r"containers/published"),
    ({"deployments": {"blue": {}, "green": {**GREEN, "modelUri": "http://theirmodels.blob.core.windows.net/published/x"}}},
     "deployments.green.modelUri", r"must be https://"),
    # the fetch's own URI rules: dot segments (a client resolves them into another container
    # than the one granted), a fragment, a user part, a trailing newline
    *[({"deployments": {"blue": {}, "green": {**GREEN, "modelUri": uri}}},
       "deployments.green.modelUri", r"none of them '\.' or '\.\.'")
      for uri in ("https://theirmodels.blob.core.windows.net/published/../other/x",
                  "https://theirmodels.blob.core.windows.net/published/resnet50/./x",
                  "https://theirmodels.blob.core.windows.net/published/resnet50/..",
                  "https://theirmodels.blob.core.windows.net/published/x#fragment",
                  "https://theirmodels.blob.core.windows.net/published/x%2F..%2Fother",
                  GREEN["modelUri"] + "\n")],
    ({"deployments": {"blue": {}, "green": {**GREEN, "modelSizeLimit": "big"}}},
     "deployments.green.modelSizeLimit", r"not a Kubernetes quantity"),
    ({"deployments": {"blue": {}, "green": {**GREEN, "modelPublicKey": "ssh-ed25519 AAAA"}}},
     "deployments.green.modelPublicKey", r"must be PEM \(-----BEGIN PUBLIC KEY-----\)"),
    ({"deployments": {"blue": {}, "green": {**GREEN, "prebuiltImage": "contoso.azurecr.io/s:1"}}},
     "deployments.green.prebuiltImage", r"pinned by digest"),
    # modelStore image bakes each model into an image from its modelDir: nothing to fetch
    ({"modelStore": "image", "deployments": {"blue": {}, "green": GREEN}},
     "deployments.green.modelUri", r"needs modelStore blob"),
    ({"modelStore": "image", "deployments": {"blue": {}, "green": {
        "modelPublicKey": "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----"}}},
     "deployments.green.modelPublicKey", r"needs modelStore blob"),
    ({"modelStore": "image", **{k: v for k, v in GREEN.items()}}, "modelUri", r"needs modelStore blob"),
    # a signature is checked with a key or a certificate chain, at one level or the other
    ({"deployments": {"blue": {}, "green": {**GREEN, "modelPublicKey": PEM, "modelCertificateChain": CHAIN}}},
     "deployments.green.modelCertificateChain", r"cannot be set with deployments\.green\.modelPublicKey"),
    ({"modelPublicKey": PEM, "modelCertificateChain": CHAIN}, "modelCertificateChain",
     r"cannot be set with modelPublicKey"),
    ({"deployments": {"blue": {}, "green": {**GREEN, "modelCertificateChain": PEM}}},
     "deployments.green.modelCertificateChain", r"must be PEM \(-----BEGIN CERTIFICATE-----, one or more"),
    ({"modelStore": "image", "modelCertificateChain": CHAIN}, "modelCertificateChain",
     r"needs modelStore blob"),
    # two deployments on one container must name it the same way: it gets one grant
    ({"deployments": {"blue": GREEN, "green": {**GREEN, "modelUriScope": GREEN["modelUriScope"].replace(
        "resourceGroups/theirs", "resourceGroups/Theirs")}}},
     "deployments.green.modelUriScope", r"is not the .* that blue names for the same container "
     r"theirmodels/published"),
]


@pytest.mark.parametrize("change,key,pattern", BAD_PER_DEPLOYMENT,
                         ids=[f"{b[1]}:{i}" for i, b in enumerate(BAD_PER_DEPLOYMENT)])
def test_bad_per_deployment_model_config_names_the_key_and_deployment(dev_values, change, key,
                                                                      pattern):
    from infra.config import ConfigError
    values = {**dev_values, **{k: v if isinstance(v, str) else json.dumps(v)
                               for k, v in {**TWO, **change}.items()}}
    with pytest.raises(ConfigError) as err:
        load(values)
    assert err.value.key == key
    assert str(err.value).startswith(f"aks-gpu-scoring:{key}: ")
    assert re.search(pattern, str(err.value)), str(err.value)


def test_a_sas_in_a_model_uri_is_refused_and_never_repeated(dev_values):
    from infra.config import ConfigError
    sas = "sv=2024-08-04&ss=b&srt=o&sp=r&se=2030-01-01&sig=c2VjcmV0c2lnbmF0dXJl"
    for key, values in (
            ("modelUri", {"modelUri": GREEN["modelUri"] + "?" + sas}),
            ("deployments.green.modelUri", {**TWO, "deployments": json.dumps({
                "blue": {}, "green": {**GREEN, "modelUri": GREEN["modelUri"] + "?" + sas}})})):
        with pytest.raises(ConfigError) as err:
            load({**dev_values, **{k: v if isinstance(v, str) else json.dumps(v)
                                   for k, v in values.items()}})
        assert err.value.key == key
        assert "no SAS" in str(err.value) and "<query not shown>" in str(err.value)
        assert "sig=" not in str(err.value) and "c2VjcmV0" not in str(err.value)


def test_a_user_part_in_a_model_uri_is_refused_and_never_repeated(dev_values):
    from infra.config import ConfigError
    uri = GREEN["modelUri"].replace("https://", "https://reader:hunter2@")
    with pytest.raises(ConfigError) as err:
        load({**dev_values, "modelUri": uri, "modelDigest": GREEN["modelDigest"],
              "modelUriScope": GREEN["modelUriScope"]})
    assert err.value.key == "modelUri" and "no user part" in str(err.value)
    assert "hunter2" not in str(err.value) and "reader" not in str(err.value)


def test_the_stack_keys_are_the_default_each_deployment_inherits(dev_values, model_dir):
    """A stack-level modelUri is every deployment's model unless it names its own modelDir
    or modelUri (the key wins, as precision's does); the signer likewise (a deployment naming
    modelPublicKey or modelCertificateChain names its own; empty: no check for it)."""
    pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
    stack = {k: GREEN[k].replace("d" * 64, "c" * 64) for k in ("modelUri", "modelDigest")}
    values = {**dev_values, **stack, "modelUriScope": GREEN["modelUriScope"],
              "modelPublicKey": pem, "modelSizeLimit": "2Gi", "gpuMaxCount": "4",
              "traffic": json.dumps({"blue": 100}), "deployments": json.dumps({
                  "blue": {}, "green": {"modelDir": str(model_dir), "modelPublicKey": ""},
                  "teal": {**GREEN, "modelPublicKey": pem.replace("AE", "AF")},
                  "red": {"modelCertificateChain": CHAIN}})}
    cfg = load(values)
    models = {d.name: (d.external, d.model_dir, d.model_public_key) for d in cfg.deployments}
    assert models["blue"] == (cfg.image.external, None, pem)
    assert cfg.image.external.uri == stack["modelUri"] and cfg.image.external.size_limit == "2Gi"
    assert models["green"] == (None, model_dir.resolve(), None)
    teal = models["teal"][0]
    assert (teal.uri, teal.sha256, teal.scope, teal.size_limit) == (
        GREEN["modelUri"], GREEN["modelDigest"], GREEN["modelUriScope"], "2Gi")
    assert models["teal"][2] == pem.replace("AE", "AF")
    # naming a certificate chain is naming this deployment's signer: the stack's key goes
    red = [d for d in cfg.deployments if d.name == "red"][0]
    assert (red.external, red.model_public_key, red.model_certificate_chain) == (
        cfg.image.external, None, CHAIN)
    assert all(d.model_certificate_chain is None for d in cfg.deployments if d.name != "red")
    # without deployments, the stack keys make blue as they always did
    [only] = load({**dev_values, **stack, "modelUriScope": GREEN["modelUriScope"]}).deployments
    assert (only.name, only.external.uri, only.model_dir) == ("blue", stack["modelUri"], None)
