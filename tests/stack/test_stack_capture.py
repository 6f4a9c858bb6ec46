"""Payload capture under mocks: the captures container, its lifecycle rules, the pods' one
write grant (on that container only: models stay read-only to them), the variables on
each capturing Deployment, and config checks that name the key."""
from __future__ import annotations

import json
import re

import pytest

import mock_run
from stack_harness import unwrap
from test_stack_config import dev_values, load  # noqa: F401 (a fixture)

from infra import capture
from scoring_app.contract import PREFIX, Var

CONTAINER = "azure-native:storage:BlobContainer"
POLICY = "azure-native:storage:ManagementPolicy"
ROLE = "azure-native:authorization:RoleAssignment"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"  # Storage Blob Data Reader (Azure built-in roles)
CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"  # Storage Blob Data Contributor
SKIP = "azure.workload.identity/skip-containers"


def _pods(run) -> dict[str, dict]:
    """deployment -> {"env": the scoring container's env, "annotations", "dependsOn"}."""
    out = {}
    for r in run.all_of(DEPLOYMENT):
        inputs = unwrap(r["inputs"])
        template = inputs["spec"]["template"]
        [scoring] = template["spec"]["containers"]
        out[inputs["metadata"]["labels"]["aks-gpu-scoring/deployment"]] = {
            "env": {e["name"]: e.get("value") for e in scoring["env"]},
            "annotations": template["metadata"]["annotations"],
            "dependsOn": set(r["options"]["dependsOn"])}
    return out


def test_capture_is_off_by_default_and_declares_nothing(stack_run):
    assert [unwrap(r["inputs"])["containerName"] for r in stack_run.all_of(CONTAINER)] == ["models"]
    assert stack_run.all_of(POLICY) == []
    for pod in _pods(stack_run).values():
        assert not any(name.startswith(f"{PREFIX}CAPTURE") for name in pod["env"])
        assert pod["annotations"][SKIP] == "scoring"  # no token in the serving container
    assert "captureUri" not in stack_run.outputs


def test_the_captures_container_is_private_beside_the_models(runs):
    run = runs["capture"]
    containers = {unwrap(r["inputs"])["containerName"]: unwrap(r["inputs"]) for r in run.all_of(CONTAINER)}
    assert set(containers) == {"models", "captures"}
    assert containers["captures"]["publicAccess"] == "None"
    assert containers["captures"]["accountName"] == containers["models"]["accountName"]


def test_a_lifecycle_rule_per_capturing_deployment_deletes_after_its_retention(runs):
    [policy] = [unwrap(r["inputs"]) for r in runs["capture"].all_of(POLICY)]
    assert policy["managementPolicyName"] == "default"
    rules = {r["name"]: r for r in policy["policy"]["rules"]}
    assert set(rules) == {"capturesgreen", "capturesshadow"}  # blue does not capture
    for name, days in (("capturesgreen", 30), ("capturesshadow", 7)):
        rule = rules[name]
        assert rule["enabled"] is True and rule["type"] == "Lifecycle"
        assert rule["definition"]["filters"] == {
            "blobTypes": ["blockBlob"], "prefixMatch": [f"captures/{name[8:]}/"]}
        assert rule["definition"]["actions"] == {
            "baseBlob": {"delete": {"daysAfterCreationGreaterThan": days}}}


def test_the_pods_may_write_captures_and_only_read_models(runs):
    # the mocks give every identity one principal id: the model store's grants are its own
    grants = [unwrap(r["inputs"]) for r in runs["capture"].all_of(ROLE)
              if unwrap(r["inputs"])["principalId"] == mock_run.MODELS_OID
              and r["name"].startswith("models-")]
    by_scope = {g["scope"].rsplit("/", 1)[1]: g["roleDefinitionId"].rsplit("/", 1)[1] for g in grants}
    assert by_scope == {"models-container": READER, "models-captures": CONTRIBUTOR}
    assert all(g["principalType"] == "ServicePrincipal" for g in grants)
    # the write grant is on the captures container's id, nothing wider
    [write] = [g for g in grants if g["roleDefinitionId"].endswith(CONTRIBUTOR)]
    assert write["scope"] == f"/mock/{CONTAINER}/models-captures"


def test_each_capturing_deployment_gets_its_variables_and_the_token(runs):
    run = runs["capture"]
    pods = _pods(run)
    uri = run.outputs["captureUri"]["value"]
    assert re.fullmatch(r"https://[a-z0-9]{3,24}\.blob\.core\.windows\.net/captures", uri)
    assert pods["green"]["env"][Var.CAPTURE_URI] == uri
    assert (pods["green"]["env"][Var.CAPTURE_SAMPLE_RATE],
            pods["green"]["env"][Var.CAPTURE_IMAGES]) == ("1", "false")
    assert (pods["shadow"]["env"][Var.CAPTURE_SAMPLE_RATE],
            pods["shadow"]["env"][Var.CAPTURE_IMAGES]) == ("0.05", "true")
    assert pods["shadow"]["env"][Var.DEPLOYMENT_NAME] is None  # from the label (fieldRef)
    for name in ("green", "shadow"):
        assert SKIP not in pods[name]["annotations"]  # the webhook injects the token
        assert "models-pods-capture" in pods[name]["dependsOn"]  # the grant exists first
    assert not any(v.startswith(f"{PREFIX}CAPTURE") for v in pods["blue"]["env"])
    assert pods["blue"]["annotations"][SKIP] == "scoring"
    exported = run.outputs["deployments"]["value"]
    assert exported["shadow"]["capture"] == {"samplingRate": 0.05, "images": True, "retentionDays": 7}
    assert "capture" not in exported["blue"]


def test_the_stack_keys_are_each_deployments_default(dev_values):
    cfg = load({**dev_values, "capture": "true", "captureSamplingRate": "0.25",
                "captureRetentionDays": "90", "gpuMaxCount": "2", "traffic": json.dumps({"blue": 100}),
                "deployments": json.dumps({"blue": {}, "green": {"captureImages": True,
                                                                 "capture": "false"}})})
    got = {d.name: d.capture for d in cfg.deployments}
    assert got["blue"] == capture.CaptureConfig(True, 0.25, False, 90)
    assert got["green"] == capture.CaptureConfig(False, 0.25, True, 90)
    # Pulumi.yaml's defaults: off, every request when on, no images, 30 days.
    off = capture.CaptureConfig(enabled=False, sampling_rate=1.0, images=False, retention_days=30)
    assert all(d.capture == off for d in load(dev_values).deployments)


@pytest.mark.parametrize("change, key, pattern", [
    ({"captureSamplingRate": "0"}, "captureSamplingRate", r"above 0 and at most 1"),
    ({"captureSamplingRate": "five"}, "captureSamplingRate", r"above 0 and at most 1"),
    ({"captureRetentionDays": "0"}, "captureRetentionDays", r"1 to 99999"),
    ({"capture": "yes"}, "capture", r"must be true or false"),
    ({"capture": "true", "modelStore": "image"}, "capture", r"needs modelStore blob"),
    ({"deployments": {"blue": {"captureImages": "sometimes"}}}, "deployments.blue.captureImages",
     r"must be true or false"),
    ({"deployments": {"blue": {"captureSamplingRate": 1.5}}}, "deployments.blue.captureSamplingRate",
     r"above 0 and at most 1"),
    ({"deployments": {"blue": {"captureRetentionDays": 2.5}}}, "deployments.blue.captureRetentionDays",
     r"whole number"),
])
def test_a_bad_capture_key_is_named(dev_values, change, key, pattern):
    from infra.config import ConfigError
    values = {**dev_values, **{k: v if isinstance(v, str) else json.dumps(v) for k, v in change.items()}}
    if "deployments" in change:
        values["traffic"] = json.dumps({"blue": 100})
    with pytest.raises(ConfigError) as err:
        load(values)
    assert err.value.key == key
    assert re.search(pattern, str(err.value)), str(err.value)


def test_rule_names_are_alphanumeric_and_unique():
    names = capture.rule_names(["a-b", "ab", "green"])
    assert all(n.isalnum() for n in names.values()) and len(set(names.values())) == 3
