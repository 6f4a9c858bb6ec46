"""One endpoint, several deployments, under mocks: the routes, the per-deployment
objects, what stays shared, the outputs, and the config checks."""
import json
import re

import pytest

from stack_harness import unwrap
from test_stack_config import dev_values, load  # noqa: F401 (a fixture)
from scoring_app.contract import Var

GW = "kubernetes:gateway.networking.k8s.io/v1"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
HEADER = "azureml-model-deployment"


def route(run) -> dict:
    return run.inputs(f"{GW}:HTTPRoute", "edge-route")["spec"]


def backend(name: str) -> dict:
    return {"kind": "Service", "name": f"scoring-{name}", "port": 80}


def test_rollout_routes_header_first_then_the_split_with_its_shadow(runs):
    rules = route(runs["rollout"])["rules"]
    # 1. One rule per deployment on the header, whatever its traffic (0% green included),
    #    each with that deployment alone and no mirror.
    for rule, name in zip(rules, ["blue", "green", "shadow"]):
        assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [
            {"type": "Exact", "name": HEADER, "value": name}]}]
        assert rule["backendRefs"] == [backend(name)]
        assert "filters" not in rule
    # 2. and 3. The rest: weighted by traffic, the shadow's percent mirrored from the split.
    split = rules[3]
    assert len(rules) == 4
    assert split["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert split["backendRefs"] == [{**backend("blue"), "weight": 90},
                                    {**backend("green"), "weight": 10}]
    assert split["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": backend("shadow"), "percent": 20}}]


def test_header_rules_outrank_the_split_under_gateway_api_precedence(runs):
    """The Gateway API orders matches by path, then method, then the number of header
    matches; the header rules and the split share the path, so more headers wins."""
    rules = route(runs["rollout"])["rules"]
    [split] = [r for r in rules if "weight" in r["backendRefs"][0]]
    for rule in rules:
        if rule is split:
            continue
        [match], [base] = rule["matches"], split["matches"]
        assert match["path"] == base["path"] and "method" not in match
        assert len(match["headers"]) > len(base.get("headers", []))


def test_a_single_model_stack_is_one_blue_deployment_with_all_traffic(stack_run):
    rules = route(stack_run)["rules"]
    assert [r["backendRefs"] for r in rules] == [[backend("blue")],
                                                 [{**backend("blue"), "weight": 100}]]
    assert "filters" not in rules[-1]
    assert stack_run.outputs["deployments"]["value"] == {"blue": {
        "traffic": 100, "mirrorTraffic": 0, "model": "resnet50:1", "precision": "fp32",
        "modelUri": stack_run.outputs["modelUri"]["value"],  # modelStore blob, the default
        "image": stack_run.inputs(DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]["image"]}}


def test_each_deployment_has_its_own_objects_labelled_with_its_name(runs):
    run = runs["rollout"]
    for kind, count in ((DEPLOYMENT, 3), ("kubernetes:core/v1:Service", 3),
                        ("kubernetes:policy/v1:PodDisruptionBudget", 3),
                        ("kubernetes:keda.sh/v1alpha1:ScaledObject", 3)):
        found = {unwrap(r["inputs"])["metadata"]["name"] for r in run.all_of(kind)}
        assert found == {"scoring-blue", "scoring-green", "scoring-shadow"}, kind
        assert len(run.all_of(kind)) == count
    for name in ("blue", "green", "shadow"):
        labels = {"app.kubernetes.io/name": "scoring", "aks-gpu-scoring/deployment": name}
        deploy = run.inputs(DEPLOYMENT, f"scoring-{name}-deploy")
        assert deploy["metadata"]["labels"] == labels
        assert deploy["spec"]["selector"]["matchLabels"] == labels
        # modelStore blob: the pods also carry the workload identity webhook's label
        assert deploy["spec"]["template"]["metadata"]["labels"] == {
            **labels, "azure.workload.identity/use": "true"}
        assert run.inputs("kubernetes:core/v1:Service", f"scoring-{name}-svc")["spec"][
            "selector"] == labels
        assert run.inputs("kubernetes:policy/v1:PodDisruptionBudget", f"scoring-{name}-pdb")[
            "spec"]["selector"]["matchLabels"] == labels
        scaled = run.inputs("kubernetes:keda.sh/v1alpha1:ScaledObject",
                            f"autoscaler-{name}-scaledobject")["spec"]
        assert scaled["scaleTargetRef"]["name"] == f"scoring-{name}"
        for trigger in scaled["triggers"]:
            assert f'deployment="{name}"' in trigger["metadata"]["query"]
    ranges = {name: (s["minReplicaCount"], s["maxReplicaCount"]) for name, s in (
        (n, run.inputs("kubernetes:keda.sh/v1alpha1:ScaledObject",
                       f"autoscaler-{n}-scaledobject")["spec"]) for n in ("blue", "green", "shadow"))}
    assert ranges == {"blue": (3, 3), "green": (1, 2), "shadow": (1, 1)}


def _per_deployment(run):
    env = {}
    for name in ("blue", "green", "shadow"):
        spec = run.inputs(DEPLOYMENT, f"scoring-{name}-deploy")["spec"]["template"]["spec"]
        [c] = spec["containers"]
        env[name] = {e["name"]: e.get("value") for e in c["env"]}
        env[name]["image"] = c["image"]
        env[name]["init"] = {e["name"]: e.get("value") for e in (
            spec["initContainers"][0]["env"] if spec.get("initContainers") else [])}
    assert env["blue"][Var.MODEL_VERSION] == "1"
    assert env["green"][Var.MODEL_VERSION] == env["shadow"][Var.MODEL_VERSION] == "2"
    out = run.outputs["deployments"]["value"]
    assert {n: (d["traffic"], d["mirrorTraffic"], d["model"]) for n, d in out.items()} == {
        "blue": (90, 0, "resnet50:1"), "green": (10, 0, "resnet50:2"),
        "shadow": (0, 20, "resnet50:2")}
    assert {n: d["image"] for n, d in out.items()} == {n: e["image"] for n, e in env.items()}
    return env


def test_models_are_data_per_deployment_and_the_image_is_shared(runs):
    """modelStore blob (the default): one app-only image for every deployment; each
    deployment's modelDir is published under its own content-addressed prefix and its pods
    fetch exactly that digest (green and shadow name the same model: one prefix)."""
    run = runs["rollout"]
    env = _per_deployment(run)
    assert len(run.all_of("docker-build:index:Image")) == 1
    assert env["blue"]["image"] == env["green"]["image"] == env["shadow"]["image"]
    digests = {n: e["init"][Var.MODEL_DIGEST] for n, e in env.items()}
    uris = {n: e["init"][Var.MODEL_URI] for n, e in env.items()}
    assert digests["green"] == digests["shadow"] != digests["blue"]
    assert uris["green"] == uris["shadow"] != uris["blue"]
    for name in env:
        assert uris[name].endswith(f"/resnet50/{digests[name]}")
    publishes = [r["name"] for r in run.all_of("command:local:Command")
                 if r["name"].startswith("models-publish")]
    assert sorted(publishes) == ["models-publish", "models-publish-green"]
    out = run.outputs["deployments"]["value"]
    assert {n: d["modelUri"] for n, d in out.items()} == uris


def test_models_and_images_per_deployment_when_baked_in(runs):
    """modelStore image: one image per distinct model."""
    run = runs["rollout-baked"]
    env = _per_deployment(run)
    # Two models, two builds; green and shadow share the v2 image.
    assert len(run.all_of("docker-build:index:Image")) == 2
    assert env["green"]["image"] == env["shadow"]["image"] != env["blue"]["image"]
    assert not any(e["init"] for e in env.values())


def test_precision_is_per_deployment_defaulting_to_the_stack_key(dev_values, model_dir):
    """The precision key, per deployment: a deployment's precision, else the stack's."""
    values = {**dev_values, "gpuMaxCount": "2", "precision": "mixed",
              "deployments": json.dumps({"blue": {}, "green": {"precision": "fp32"}}),
              "traffic": json.dumps({"blue": 100})}
    cfg = load(values)
    assert {d.name: d.precision for d in cfg.deployments} == {"blue": "mixed", "green": "fp32"}
    from infra.scoring import container_env
    for d in cfg.deployments:
        env = {e["name"]: e.get("value") for e in container_env(cfg.service, d)}
        assert env[Var.PRECISION] == d.precision


def test_preprocess_is_per_deployment_and_unset_unless_said(dev_values, model_dir):
    """The preprocessing variable is set only where a deployment (or the stack key) says it: a
    string-input model needs none, and an image-tensor one must be told (the container
    refuses it otherwise), so the stack never picks a value for it."""
    values = {**dev_values, "gpuMaxCount": "3",
              "deployments": json.dumps({"blue": {}, "green": {"preprocess": "caffe"},
                                         "shadow": {"preprocess": ""}}),
              "traffic": json.dumps({"blue": 100})}
    from infra.scoring import container_env

    def env_of(cfg):
        return {d.name: {e["name"]: e.get("value") for e in container_env(cfg.service, d)}
                .get(Var.PREPROCESS) for d in cfg.deployments}
    assert env_of(load(values)) == {"blue": None, "green": "caffe", "shadow": None}
    assert env_of(load({**values, "preprocess": "none"})) == {
        "blue": "none", "green": "caffe", "shadow": None}


def test_model_scan_is_per_deployment_defaulting_to_the_stack_key(dev_values):
    """modelScan, as precision: a deployment's own, else the stack's (false by default), and
    only a deployment that scans gets the scan variable on its init container."""
    from infra.model_store import Fetch, fetch_container
    values = {**dev_values, "gpuMaxCount": "3",
              "deployments": json.dumps({"blue": {}, "green": {"modelScan": False},
                                         "shadow": {"modelScan": "true"}}),
              "traffic": json.dumps({"blue": 100})}
    assert {d.name: d.model_scan for d in load(values).deployments} == {
        "blue": False, "green": False, "shadow": True}
    cfg = load({**values, "modelScan": "true"})
    assert {d.name: d.model_scan for d in cfg.deployments} == {
        "blue": True, "green": False, "shadow": True}
    fetch = Fetch(model_uri="https://a.blob.core.windows.net/models/m/" + "0" * 64,
                  digest="0" * 64, size_limit="1Gi", budget_s=1, depends_on=())
    for d in cfg.deployments:
        env = {e["name"]: e["value"] for e in fetch_container("i", fetch, d.model_scan)["env"]}
        assert env.get(Var.MODEL_SCAN) == ("true" if d.model_scan else None), d.name


# --- config checks, each naming its key -------------------------------------------------------

TWO = {"blue": {}, "green": {"modelVersion": "2"}}
BAD = [
    ({"deployments": TWO, "traffic": {"blue": 90, "green": 20}}, "traffic", r"sums to 110"),
    ({"deployments": TWO, "traffic": {"blue": 90}}, "traffic", r"sums to 90, not 100"),
    ({"deployments": TWO}, "traffic", r"is required with deployments"),
    ({"deployments": TWO, "traffic": {"blue": 90, "red": 10}}, "traffic",
     r"\['red'\] are not deployments"),
    ({"deployments": TWO, "traffic": {"blue": 100}, "mirrorTraffic": {"gren": 20}},
     "mirrorTraffic", r"\['gren'\] are not deployments"),
    ({"deployments": TWO, "traffic": {"blue": 90, "green": 10}, "mirrorTraffic": {"green": 20}},
     "mirrorTraffic", r"\['green'\] also take split traffic"),
    ({"deployments": TWO, "traffic": {"blue": 100.5}}, "traffic", r"whole percent"),
    ({"deployments": TWO, "traffic": {"blue": "ninety"}}, "traffic", r"whole percent"),
    ({"deployments": TWO, "traffic": {"blue": 100}, "mirrorTraffic": {"green": 101}},
     "mirrorTraffic", r"whole percent, 0 to 100"),
    ({"deployments": {"Blue": {}}, "traffic": {"Blue": 100}}, "deployments",
     r"'Blue' is not a deployment name.*DNS-1123"),
    ({"deployments": {"b" * 25: {}}, "traffic": {"b" * 25: 100}}, "deployments",
     r"at most 24 characters"),
    ({"deployments": {"blue-": {}}, "traffic": {"blue-": 100}}, "deployments",
     r"not a deployment name"),
    ({"deployments": {"blue": {"gpuVmSize": "x"}}, "traffic": {"blue": 100}},
     "deployments.blue", r"\['gpuVmSize'\] are not per-deployment keys"),
    ({"deployments": {"blue": {"replicas": -1}}, "traffic": {"blue": 100}},
     "deployments.blue.replicas", r">= 0"),
    ({"deployments": {"blue": {"minReplicas": 3, "maxReplicas": 2}}, "traffic": {"blue": 100}},
     "deployments.blue.minReplicas", r"greater than maxReplicas"),
    ({"deployments": {"blue": {"modelDir": "no/such/dir"}}, "traffic": {"blue": 100}},
     "deployments.blue.modelDir", r"holds no saved_model.pb"),
    ({"deployments": {"blue": {"prebuiltImage": "contoso.azurecr.io/scoring:latest"}},
      "traffic": {"blue": 100}}, "deployments.blue.prebuiltImage", r"pinned by digest"),
    # dev's pool holds one GPU: a second deployment of one replica does not fit beside blue.
    ({"deployments": TWO, "traffic": {"blue": 100}}, "deployments",
     r"up to 2 GPUs.*at most 1 \(1 x Standard_NC4as_T4_v3, 1 GPU per VM\).*gpuMaxCount"),
    ({"domain": "scoring.contoso.com"}, "domain", r"needs tls true"),
    ({"tls": True, "acmeEmail": "ops@scoring-team.io", "domain": "scoring.contoso.com"},
     "dnsZoneName", r"required with domain"),
    ({"tls": True, "acmeEmail": "ops@scoring-team.io", "domain": "scoring.contoso.com",
      "dnsZoneName": "contoso.com"}, "dnsZoneResourceGroup", r"required with domain"),
    ({"tls": True, "acmeEmail": "ops@scoring-team.io", "domain": "scoring.fabrikam.com",
      "dnsZoneName": "contoso.com", "dnsZoneResourceGroup": "dns"}, "domain",
     r"not below dnsZoneName"),
    ({"tls": True, "acmeEmail": "ops@scoring-team.io", "domain": "not a host"}, "domain",
     r"not a host name"),
    ({"envoyGatewayVersion": "^1.9"}, "envoyGatewayVersion", r"exact chart version"),
    ({"deployments": {"blue": {"precision": "fp16"}}, "traffic": {"blue": 100}},
     "deployments.blue.precision", r"'fp16' is not one of fp32, mixed"),
    ({"scoringEnv": [f"{Var.PRECISION}=mixed"]}, "scoringEnv", r"does not set itself"),
    ({"deployments": {"blue": {"preprocess": "keras"}}, "traffic": {"blue": 100}},
     "deployments.blue.preprocess", r"'keras' is not one of none, caffe, tf, torch"),
    ({"deployments": {"blue": {"modelScan": "yes"}}, "traffic": {"blue": 100}},
     "deployments.blue.modelScan", r"'yes' must be true or false"),
    ({"deployments": {"blue": {"modelScan": True}}, "traffic": {"blue": 100},
      "modelStore": "image"}, "deployments.blue.modelScan", r"needs modelStore blob"),
    ({"modelScan": True, "modelStore": "image"}, "modelScan", r"needs modelStore blob"),
]


@pytest.mark.parametrize("overrides,key,pattern", BAD, ids=[f"{b[1]}:{i}" for i, b in enumerate(BAD)])
def test_bad_rollout_config_names_its_key(dev_values, overrides, key, pattern):
    from infra.config import ConfigError
    values = {**dev_values, **{k: v if isinstance(v, str) else json.dumps(v)
                               for k, v in overrides.items()}}
    with pytest.raises(ConfigError) as err:
        load(values)
    assert err.value.key == key
    assert str(err.value).startswith(f"aks-gpu-scoring:{key}: ")
    assert re.search(pattern, str(err.value)), str(err.value)


def test_good_rollout_config_reads_as_azure_ml_would(dev_values, model_dir):
    values = {**dev_values, "gpuMaxCount": "3", "deployments": json.dumps({
        "blue": {}, "green": {"modelDir": str(model_dir), "modelVersion": "2"}}),
        "traffic": json.dumps({"blue": 100}), "mirrorTraffic": json.dumps({"green": 20})}
    cfg = load(values)
    assert [(d.name, d.traffic, d.mirror, d.model_version) for d in cfg.deployments] == [
        ("blue", 100, 0, "1"), ("green", 0, 20, "2")]
    # `pulumi config set --path traffic.blue 100` may store the digits as a string.
    cfg = load({**values, "traffic": json.dumps({"blue": "100"}), "mirrorTraffic": "{}",
                "deployments": json.dumps({"blue": {"replicas": "1"}})})
    assert [(d.traffic, d.replicas) for d in cfg.deployments] == [(100, 1)]
    # Without deployments: one blue with everything, from today's keys.
    [only] = load(dev_values).deployments
    assert (only.name, only.traffic, only.mirror, only.replicas) == ("blue", 100, 0, 1)


def test_source_ranges_are_allowed_with_tls_when_dns01_needs_no_inbound_path(dev_values):
    base = {**dev_values, "tls": "true", "acmeEmail": "ops@scoring-team.io",
            "loadBalancerSourceRanges": '["198.51.100.0/24"]'}
    from infra.config import ConfigError
    with pytest.raises(ConfigError, match="HTTP-01"):
        load(base)
    cfg = load({**base, "domain": "scoring.contoso.com", "dnsZoneName": "contoso.com",
                "dnsZoneResourceGroup": "dns"})
    assert cfg.edge.domain == "scoring.contoso.com"
