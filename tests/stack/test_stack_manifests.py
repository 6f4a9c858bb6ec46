"""Every Kubernetes object the program declares, rendered to YAML and checked like a cluster would.

Built-in kinds go through kubernetes-validate (Kubernetes' own OpenAPI schemas).
It has no schema for custom resources (cert-manager, KEDA, managed Prometheus,
application routing), so each of those is checked against crd_schemas.py: a
small JSON schema of the fields this stack sets, written from the CRDs'
documented specs, which also rejects fields it does not know (a typo would
otherwise be silently ignored by the API server's pruning).
"""
import json
import os
import subprocess

import jsonschema
import kubernetes_validate
import pytest
import yaml

from crd_schemas import CRD_SCHEMAS
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
                "Service", "ServiceAccount", "Ingress", "NginxIngressController"]
    plugin = ["DaemonSet", "Namespace", "NetworkPolicy"]
    assert kinds["dev"] == sorted(workload + plugin)  # plain HTTP: no certificate machinery
    tls = ["Namespace", "ClusterIssuer", "Certificate"]
    scaling = ["PodMonitor", "TriggerAuthentication", "ScaledObject"]
    assert kinds["prod"] == sorted(workload + plugin + tls + scaling)
    # The GPU Operator route brings its own device plugin: none from this stack.
    assert kinds["variant"] == sorted(workload)


def test_manifests_validate_against_current_kubernetes(manifest_root):
    version = kubernetes_validate.utils.latest_version()
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 33), version
    files = sorted(manifest_root.rglob("*.yaml"))
    assert files
    errors, custom = [], 0
    for path in files:
        for body in kubernetes_validate.utils.resources_from_file(str(path)):
            if (body["apiVersion"], body["kind"]) in CRD_SCHEMAS:
                custom += 1
                continue  # no OpenAPI schema to check them against: see the next test
            try:
                kubernetes_validate.validate(body, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                errors.append(f"{path.relative_to(manifest_root)}: {err.message}")
    assert errors == []
    assert custom > 0


def test_custom_resources_match_their_crd_schemas(manifest_root):
    """Every object kubernetes-validate cannot check is one crd_schemas.py knows, and fits it."""
    errors, seen = [], set()
    for path in sorted(manifest_root.rglob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        group = body["apiVersion"].rpartition("/")[0]
        if "." not in group or group.endswith(".k8s.io"):
            continue  # core, apps, policy, networking.k8s.io...: kubernetes-validate's
        key = (body["apiVersion"], body["kind"])
        assert key in CRD_SCHEMAS, f"{path.name}: no schema for {key}"
        seen.add(key)
        validator = jsonschema.Draft202012Validator(CRD_SCHEMAS[key])
        errors += [f"{path.name}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                   for e in validator.iter_errors(body)]
    assert errors == []
    assert seen == set(CRD_SCHEMAS)  # each schema is used, so none is stale


def test_crd_schemas_reject_what_the_api_server_would(runs):
    """Guards the guard: a misspelt field and a wrong type both fail."""
    issuer = next(o for o in runs["prod"].kubernetes_objects() if o["kind"] == "ClusterIssuer")
    schema = CRD_SCHEMAS[("cert-manager.io/v1", "ClusterIssuer")]
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors(issuer))
    typo = json.loads(json.dumps(issuer))
    typo["spec"]["acme"]["emial"] = typo["spec"]["acme"].pop("email")
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(typo))
    scaled = next(o for o in runs["prod"].kubernetes_objects() if o["kind"] == "ScaledObject")
    scaled["spec"]["maxReplicaCount"] = "6"
    schema = CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")]
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(scaled))


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
