"""Fixtures: the program run under mocks once per stack file, plus one variant run."""
import json
import sys

import pytest

from stack_harness import REPO, STACKS, run_programs

if str(REPO) not in sys.path:  # the config and unit tests import infra/ in-process
    sys.path.insert(0, str(REPO))

PREBUILT = "contoso.azurecr.io/scoring@sha256:" + "ab" * 32
#: dev with every optional branch flipped: prebuilt image, GPU Operator route,
#: fixed DNS label, source ranges, the primary key rotated, and the fetch's modelscan on.
VARIANT_OVERRIDES = {
    "prebuiltImage": PREBUILT,
    "gpuDriver": "gpu-operator",
    "dnsLabel": "contoso-scoring",
    "loadBalancerSourceRanges": ["198.51.100.0/24"],
    "primaryKeyVersion": "2",
    "precision": "mixed",
    "modelScan": True,
}


def container_id(account: str, container: str) -> str:
    """The ARM id of a blob container in someone else's resource group."""
    return ("/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/theirs/providers/"
            f"Microsoft.Storage/storageAccounts/{account}/blobServices/default/containers/{container}")


def external(account: str, container: str, digest_char: str, **more) -> dict:
    """A deployment's own modelUri keys: a model under <account>/<container>, its digest."""
    digest = digest_char * 64
    return {"modelUri": f"https://{account}.blob.core.windows.net/{container}/resnet50/{digest}",
            "modelDigest": digest, "modelUriScope": container_id(account, container), **more}


#: A model published by someone else (modelUri), signed with a key the stack names.
EXTERNAL_MODEL = external("theirmodels", "published", "c", modelPublicKey=(
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"))

#: A publisher's CA chain (PEM shape only: the stack mounts it, the fetch checks signatures).
CERTIFICATE_CHAIN = ("-----BEGIN CERTIFICATE-----\nMIIBfake-intermediate\n-----END CERTIFICATE-----\n"
                     "-----BEGIN CERTIFICATE-----\nMIIBfake-root\n-----END CERTIFICATE-----")

#: Blue on the model the stack publishes (modelDir), green on one someone else published and
#: signed (its own modelUri, digest, scope and key): the point of a per-deployment modelUri.
MIXED_OVERRIDES = {
    "gpuMaxCount": 2,
    "deployments": {"blue": {}, "green": external(
        "theirmodels", "published", "d", modelVersion="2",
        modelPublicKey=EXTERNAL_MODEL["modelPublicKey"])},
    "traffic": {"blue": 100},
}
#: The same stack with two more deployments: teal on green's container (another prefix; one
#: grant for both), red on another account's container (a grant of its own), signed by a
#: certificate its publisher's CA issued.
MIXED_PLUS_OVERRIDES = {
    "gpuMaxCount": 4,
    "deployments": {**MIXED_OVERRIDES["deployments"],
                    "teal": external("theirmodels", "published", "e", modelSizeLimit="1Gi"),
                    "red": external("othermodels", "resnets", "f",
                                    modelCertificateChain=CERTIFICATE_CHAIN)},
    "traffic": {"blue": 100},
}

#: prod as an Azure ML endpoint mid-rollout: three deployments (two models), a 90/10 split,
#: a 20% shadow, and the endpoint on a domain of the user's own (DNS-01).
ROLLOUT_OVERRIDES = {
    "deployments": {"blue": {"maxReplicas": 3},
                    "green": {"modelDir": "<model-v2>", "modelVersion": "2",
                              "minReplicas": 1, "maxReplicas": 2},
                    "shadow": {"modelDir": "<model-v2>", "modelVersion": "2",
                               "minReplicas": 1, "maxReplicas": 1}},
    "traffic": {"blue": 90, "green": 10},
    "mirrorTraffic": {"shadow": 20},
    "domain": "scoring.contoso.com",
    "dnsZoneName": "contoso.com",
    "dnsZoneResourceGroup": "contoso-dns",
}
#: The rollout with payload capture: on stack-wide at 5%, green at 100%, the shadow keeping
#: images for 7 days, blue off (docs/capture.md).
CAPTURE_OVERRIDES = {
    "capture": True, "captureSamplingRate": 0.05,
    "deployments": {"blue": {**ROLLOUT_OVERRIDES["deployments"]["blue"], "capture": False},
                    "green": {**ROLLOUT_OVERRIDES["deployments"]["green"], "captureSamplingRate": 1},
                    "shadow": {**ROLLOUT_OVERRIDES["deployments"]["shadow"], "captureImages": True,
                               "captureRetentionDays": 7}},
}

#: The same stack with only traffic and mirrorTraffic changed: a routing-only `pulumi up`.
RETRAFFIC_OVERRIDES = {"traffic": {"blue": 50, "green": 50}, "mirrorTraffic": {"shadow": 5}}


def rollout(model_dir, model_v2, **changes) -> dict:
    values = json.loads(json.dumps({**ROLLOUT_OVERRIDES, **changes}).replace(
        "<model-v2>", str(model_v2)))
    return {"modelDir": str(model_dir), **values}


def stand_in_model(path, graph: bytes):
    """A stand-in SavedModel directory: the build only hashes it here, nothing loads it."""
    (path / "saved_model.pb").write_bytes(graph)
    (path / "variables").mkdir()
    (path / "variables" / "variables.index").write_bytes(b"index")
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return stand_in_model(tmp_path_factory.mktemp("model"), b"not a real graph")


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory):
    """Another model version: one file changed."""
    return stand_in_model(tmp_path_factory.mktemp("model2"), b"another graph")


@pytest.fixture(scope="session")
def model_v2(tmp_path_factory):
    """A second stand-in SavedModel (green's), with other content, so another image tag."""
    path = tmp_path_factory.mktemp("model-v2")
    (path / "saved_model.pb").write_bytes(b"not a real graph either, version 2")
    return path


@pytest.fixture(scope="session")
def runs(model_dir, other_model_dir, model_v2, tmp_path_factory):
    """stack name -> Run for each stack file, "variant" -> dev with VARIANT_OVERRIDES,
    "baked" -> dev with the model in the image, "remodelled" -> dev with another model,
    "external" -> dev with a modelUri model; "rollout" -> prod with ROLLOUT_OVERRIDES,
    "retraffic" -> that with RETRAFFIC_OVERRIDES, "rollout-baked" -> the rollout with
    modelStore image; "capture" -> the rollout with CAPTURE_OVERRIDES; "mixed" -> dev with MIXED_OVERRIDES (blue published, green a modelUri),
    "mixed-plus" -> that with MIXED_PLUS_OVERRIDES' two more."""
    plan = {stack: (stack, {"modelDir": str(model_dir)}) for stack in STACKS}
    plan["variant"] = ("dev", {"modelDir": str(model_dir), **VARIANT_OVERRIDES})
    plan["baked"] = ("dev", {"modelDir": str(model_dir), "modelStore": "image"})
    plan["remodelled"] = ("dev", {"modelDir": str(other_model_dir)})
    plan["external"] = ("dev", {"modelDir": str(model_dir), **EXTERNAL_MODEL})
    plan["rollout"] = ("prod", rollout(model_dir, model_v2))
    plan["retraffic"] = ("prod", rollout(model_dir, model_v2, **RETRAFFIC_OVERRIDES))
    plan["rollout-baked"] = ("prod", rollout(model_dir, model_v2, modelStore="image"))
    plan["capture"] = ("prod", rollout(model_dir, model_v2, **CAPTURE_OVERRIDES))
    plan["mixed"] = ("dev", {"modelDir": str(model_dir), **MIXED_OVERRIDES})
    plan["mixed-plus"] = ("dev", {"modelDir": str(model_dir), **MIXED_PLUS_OVERRIDES})
    return run_programs(plan, tmp_path_factory.mktemp("runs"))


#: A second `pulumi up` with nothing changed, years later and with another hash seed: any
#: timestamp, fresh token, random value or set ordering in an input would show as a change.
LATER = {"MOCK_RUN_CLOCK": "2031-06-15T03:04:05+00:00", "PYTHONHASHSEED": "1"}


@pytest.fixture(scope="session")
def reruns(model_dir, tmp_path_factory):
    """stack name -> the same program and config run again under LATER; "resized" -> dev
    with another GPU size (what changing gpuVmSize declares)."""
    plan = {stack: (stack, {"modelDir": str(model_dir)}, LATER) for stack in STACKS}
    plan["resized"] = ("dev", {"modelDir": str(model_dir), "gpuVmSize": "Standard_NC8as_T4_v3"})
    return run_programs(plan, tmp_path_factory.mktemp("reruns"))


@pytest.fixture(params=STACKS)
def stack_run(request, runs):
    return runs[request.param]
