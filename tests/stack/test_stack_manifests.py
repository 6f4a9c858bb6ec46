"""Every Kubernetes object the program declares, rendered to YAML and checked like a cluster would."""
import json
import os
import subprocess

import kubernetes_validate
import pytest

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
    for stack in ("dev", "prod"):
        assert kinds[stack] == sorted(workload + ["DaemonSet", "Namespace", "NetworkPolicy"])
    # The GPU Operator route brings its own device plugin: none from this stack.
    assert kinds["variant"] == workload


def test_manifests_validate_against_current_kubernetes(manifest_root):
    version = kubernetes_validate.utils.latest_version()
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 33), version
    files = sorted(manifest_root.rglob("*.yaml"))
    assert files
    errors = []
    for path in files:
        for body in kubernetes_validate.utils.resources_from_file(str(path)):
            try:
                kubernetes_validate.validate(body, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                errors.append(f"{path.relative_to(manifest_root)}: {err.message}")
    assert errors == []


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
