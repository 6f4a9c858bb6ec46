"""Every Kubernetes object the program declares, rendered to YAML and checked like a cluster would.

Built-in kinds go through kubernetes-validate (Kubernetes' own OpenAPI schemas).
It has no schema for custom resources (the Gateway API, Envoy Gateway,
cert-manager, KEDA, managed Prometheus), so each of those is checked against
its upstream CRD's own schema (crd_schemas.py), with every object closed so a
field the API server would prune silently fails here instead.
"""
import json
import os
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

import cel_rules
from crd_schemas import KNOWN, UPSTREAM, raw_schema_for, schema_for
from stack_harness import REPO, write_manifests

CHECKOV = os.environ.get("CHECKOV", "/work/main/.venv-checkov/bin/checkov")


@pytest.fixture(scope="session")
def manifest_root(runs, tmp_path_factory):
    """build-like folder: <root>/<run>/<Kind>-<namespace>-<name>.yaml for every run."""
    root = tmp_path_factory.mktemp("manifests")
    for key, run in runs.items():
        write_manifests(run, root / key)
    return root


def test_every_run_renders_the_objects_it_should(manifest_root, runs):
    kinds = {key: sorted(p.name.split("-")[0] for p in (manifest_root / key).iterdir())
             for key in runs}
    workload = ["Deployment", "Namespace", "NetworkPolicy", "PodDisruptionBudget", "Secret",
                "Service", "ServiceAccount"]
    edge = ["Namespace", "EnvoyProxy", "GatewayClass", "Gateway", "HTTPRoute"]
    plugin = ["DaemonSet", "Namespace", "NetworkPolicy"]
    assert kinds["dev"] == sorted(workload + edge + plugin)  # plain HTTP: no certificates
    tls = ["Namespace", "ClusterIssuer", "Certificate", "HTTPRoute"]  # + the redirect
    scaling = ["PodMonitor", "TriggerAuthentication", "ScaledObject"]
    assert kinds["prod"] == sorted(workload + edge + plugin + tls + scaling)
    # The GPU Operator route brings its own device plugin: none from this stack.
    assert kinds["variant"] == sorted(workload + edge)
    # Three deployments: a Deployment, Service, budget and ScaledObject each; one of the rest.
    per_deployment = ["Deployment", "Service", "PodDisruptionBudget", "ScaledObject"] * 2
    assert kinds["rollout"] == sorted(workload + edge + plugin + tls + scaling + per_deployment)


def test_manifests_validate_against_current_kubernetes(manifest_root):
    version = kubernetes_validate.utils.latest_version()
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 33), version
    files = sorted(manifest_root.rglob("*.yaml"))
    assert files
    errors, custom = [], 0
    for path in files:
        for body in kubernetes_validate.utils.resources_from_file(str(path)):
            if (body["apiVersion"], body["kind"]) in KNOWN:
                custom += 1
                continue  # no OpenAPI schema to check them against: see the next test
            try:
                kubernetes_validate.validate(body, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                errors.append(f"{path.relative_to(manifest_root)}: {err.message}")
    assert errors == []
    assert custom > 0


def test_custom_resources_match_their_crd_schemas(manifest_root):
    """Every object kubernetes-validate cannot check has its CRD's schema here, and fits it."""
    errors, seen = [], set()
    for path in sorted(manifest_root.rglob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        group = body["apiVersion"].rpartition("/")[0]
        if "." not in group or (group.endswith(".k8s.io")
                                and group != "gateway.networking.k8s.io"):
            continue  # core, apps, policy, networking.k8s.io...: kubernetes-validate's
        key = (body["apiVersion"], body["kind"])
        assert key in KNOWN, f"{path.name}: no schema for {key}"
        seen.add(key)
        validator = jsonschema.Draft202012Validator(schema_for(*key))
        errors += [f"{path.parent.name}/{path.name}: {'/'.join(map(str, e.absolute_path))}: "
                   f"{e.message}" for e in validator.iter_errors(body)]
    assert errors == []
    assert seen == KNOWN  # each schema is used, so none is stale
    assert len(UPSTREAM) == 7


def _validator(key):
    return jsonschema.Draft202012Validator(schema_for(*key))


def test_crd_schemas_reject_what_the_api_server_would(runs):
    """Guards the guard: a misspelt field, a wrong type and a value outside an enum fail, in
    schemas converted from the upstream CRDs."""
    objects = runs["rollout"].kubernetes_objects()
    issuer = next(o for o in objects if o["kind"] == "ClusterIssuer")
    key = ("cert-manager.io/v1", "ClusterIssuer")
    assert not list(_validator(key).iter_errors(issuer))
    typo = json.loads(json.dumps(issuer))
    typo["spec"]["acme"]["emial"] = typo["spec"]["acme"].pop("email")
    assert list(_validator(key).iter_errors(typo))
    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    scaled["spec"]["maxReplicaCount"] = "6"
    assert list(_validator(("keda.sh/v1alpha1", "ScaledObject")).iter_errors(scaled))
    route = next(o for o in objects if o["kind"] == "HTTPRoute"
                 and o["metadata"]["name"] == "scoring")
    key = ("gateway.networking.k8s.io/v1", "HTTPRoute")
    assert not list(_validator(key).iter_errors(route))
    bad = json.loads(json.dumps(route))
    bad["spec"]["rules"][-1]["backendRefs"][0]["weight"] = 1_000_001  # maximum 1000000
    assert list(_validator(key).iter_errors(bad))
    redirect = next(o for o in objects if o["metadata"]["name"] == "scoring-https-redirect")
    bad = json.loads(json.dumps(redirect))
    # 308 would keep a POST's method and body, but the standard channel allows 301 and 302.
    bad["spec"]["rules"][0]["filters"][0]["requestRedirect"]["statusCode"] = 308
    assert list(_validator(key).iter_errors(bad))
    proxy = next(o for o in objects if o["kind"] == "EnvoyProxy")
    bad = json.loads(json.dumps(proxy))
    bad["spec"]["provider"]["kubernetes"]["envoyDeployment"]["replica"] = 2
    assert list(_validator(("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy")).iter_errors(bad))


def test_custom_resources_pass_their_crds_cel_rules(runs):
    """The x-kubernetes-validations the API server runs on create, run here (cel_rules.py)."""
    failures, evaluated, kinds = [], 0, set()
    for key, run in runs.items():
        for body in run.kubernetes_objects():
            raw = raw_schema_for(body["apiVersion"], body["kind"])
            if raw is None:
                continue
            report = cel_rules.validate(raw, body)
            kinds.add(body["kind"])
            evaluated += report.evaluated
            failures += [f"{key} {body['kind']}/{body['metadata']['name']}{f}"
                         for f in report.failures]
    assert failures == []
    assert evaluated > 100  # the routes' filter and path rules alone are dozens
    assert {"Gateway", "HTTPRoute", "GatewayClass", "ClusterIssuer"} <= kinds


def test_cel_rules_reject_what_the_api_server_would(runs):
    """Guards the guard: objects the JSON schema accepts but a CEL rule refuses."""
    objects = runs["rollout"].kubernetes_objects()
    route = next(o for o in objects if o["metadata"]["name"] == "scoring"
                 and o["kind"] == "HTTPRoute")
    raw = raw_schema_for(route["apiVersion"], "HTTPRoute")
    both = json.loads(json.dumps(route))
    mirror = both["spec"]["rules"][-1]["filters"][0]["requestMirror"]
    mirror["fraction"] = {"numerator": 1, "denominator": 5}  # and percent: pick one
    report = cel_rules.validate(raw, both)
    assert any("percent or fraction" in f for f in report.failures), report.failures
    redirect = next(o for o in objects if o["metadata"]["name"] == "scoring-https-redirect")
    twice = json.loads(json.dumps(redirect))
    twice["spec"]["rules"][0]["filters"] *= 2
    assert any("RequestRedirect filter cannot be repeated" in f
               for f in cel_rules.validate(raw, twice).failures)
    gateway = next(o for o in objects if o["kind"] == "Gateway")
    same = json.loads(json.dumps(gateway))
    same["spec"]["listeners"][1]["name"] = same["spec"]["listeners"][0]["name"]
    raw = raw_schema_for(gateway["apiVersion"], "Gateway")
    assert cel_rules.validate(raw, same).failures


def test_checkov_finds_nothing_and_every_skip_has_a_reason(manifest_root):
    proc = subprocess.run(
        [CHECKOV, "-d", str(manifest_root), "--framework", "kubernetes", "--output", "json",
         "--skip-download", "--compact"],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    results = report["results"]
    failed = [f"{c['check_id']} {c['resource']}" for c in results["failed_checks"]]
    assert failed == []
    assert report["summary"]["passed"] > 100
    assert results["skipped_checks"], "the device plugin's documented skips went missing"
    for skipped in results["skipped_checks"]:
        # Only the device plugin, and only with a written reason.
        assert "nvidia-device-plugin" in skipped["resource"], skipped["resource"]
        assert len(skipped["check_result"].get("suppress_comment", "")) > 40, skipped
