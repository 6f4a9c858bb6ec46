"""What a real first `pulumi up` meets and every later one must not, under mocks.

Mocks cannot run a deploy; what they can show is that each wait, timeout,
dependency and option that the fixes rely on is declared, and that a second
run with nothing changed declares exactly the same inputs. What only a real
deploy can show is in docs/deploying.md.
"""
import json

import pytest

from stack_harness import HELM_CHART, HELM_RELEASE, STACKS, unwrap
import mock_run

from infra import kube_wait
from infra.scoring import (IMAGE_PULL_BUDGET_S, NODE_READY_BUDGET_S, READINESS_FAILURES,
                           READINESS_PERIOD_S, STARTUP_FAILURES, STARTUP_PERIOD_S)

COMMAND = "command:local:Command"
POOL = "azure-native:containerservice:AgentPool"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
#: Custom resource group -> the wait (or Helm release) that must come first.
CRD_SOURCES = {
    "keda.sh": "gpu-keda-crds",
    "azmonitoring.coreos.com": "gpu-prometheus-crds",
    "gateway.networking.k8s.io": "edge-gateway-crds-ready",
    "gateway.envoyproxy.io": "edge-gateway-crds-ready",
    "cert-manager.io": "edge-cert-manager-crds-ready",
}
#: Each stack-installed CRD wait runs after the release that brings those CRDs.
CRD_RELEASES = {"edge-gateway-crds-ready": {"edge-gateway-crds", "edge-envoy-gateway"},
                "edge-cert-manager-crds-ready": {"edge-cert-manager"}}


def by_name(run) -> dict:
    return {r["name"]: r for r in run.resources}


def depends_on(run, name: str) -> set[str]:
    """Every resource `name` waits for, directly or through others (parents excluded)."""
    names, seen, todo = by_name(run), set(), [name]
    while todo:
        for dep in names[todo.pop()]["options"]["dependsOn"]:
            if dep not in seen and dep in names:
                seen.add(dep)
                todo.append(dep)
    return seen


def crd_name(api_version: str, kind: str) -> str:
    irregular = {"EnvoyProxy": "envoyproxies", "GatewayClass": "gatewayclasses"}
    plural = irregular.get(kind, kind.lower() + "s")
    return f"{plural}.{api_version.split('/')[0]}"


# --- item 4: the push keeps no credential ----------------------------------------------------

def test_push_uses_the_hosts_registry_login_and_keeps_no_credential(stack_run):
    image = stack_run.inputs("docker-build:index:Image")
    assert "registries" not in image  # the host's Docker credentials, nothing in state
    login = stack_run.inputs(COMMAND, "registry-login")
    registry = stack_run.inputs("azure-native:containerregistry:Registry")
    assert login["create"] == (f"az acr login --name {registry['registryName']} "
                               f"--subscription {mock_run.SUBSCRIPTION}")
    # It runs again whenever there is a new image to push (the tag follows the content).
    [tag] = image["tags"]
    assert login["triggers"] == [f"{registry['registryName']}.azurecr.io", tag.rsplit(":", 1)[1]]
    assert {"registry-login", "registry-deployer-push"} <= set(
        stack_run.one("docker-build:index:Image")["options"]["dependsOn"])
    # No Entra ID token is fetched at all: nothing that expires, no HTTP call in an apply.
    assert not [c for c in stack_run.data["calls"] if c["token"].endswith("getClientToken")]


# --- item 8: the first Kubernetes call waits for Azure RBAC ----------------------------------

def test_kubernetes_provider_waits_until_rbac_lets_the_deployer_in(stack_run):
    wait = stack_run.one(COMMAND, "gpu-rbac-ready")
    assert wait["inputs"]["create"] == kube_wait.rbac_script()
    assert set(wait["inputs"]["stdin"]) == {"__secret__"}  # the kubeconfig, as a secret
    assert "gpu-deployer-admin" in wait["options"]["dependsOn"]
    provider = stack_run.one("pulumi:providers:kubernetes")
    assert {"gpu-rbac-ready", "gpu-deployer-admin"} <= set(provider["options"]["dependsOn"])


# --- item 7: custom resources wait for their CRDs --------------------------------------------

def test_every_custom_resource_waits_for_its_crd(stack_run):
    customs = [r for r in stack_run.resources if r["type"].startswith("kubernetes:")
               and r["type"].split(":")[1].split("/")[0] in CRD_SOURCES]
    assert customs
    names = by_name(stack_run)
    for r in customs:
        body = unwrap(r["inputs"])
        group = body["apiVersion"].split("/")[0]
        source = CRD_SOURCES[group]
        assert source in depends_on(stack_run, r["name"]), f"{r['name']} does not wait for {source}"
        crd = crd_name(body["apiVersion"], body["kind"])
        assert names[source]["type"] == COMMAND
        script = names[source]["inputs"]["create"]
        assert f"crd/{crd}" in script and "--for=create" in script
        assert "--for=condition=Established" in script
        # Each wait runs after RBAC lets the deployer in (it reads CRDs), and after the
        # release that installs its CRDs when the stack installs them itself.
        assert "gpu-rbac-ready" in depends_on(stack_run, source)
        assert CRD_RELEASES.get(source, set()) <= depends_on(stack_run, source)
        for release in CRD_RELEASES.get(source, ()):
            assert names[release]["type"] in (HELM_RELEASE, HELM_CHART)


def test_add_on_waits_exist_only_for_add_ons_that_are_on(runs):
    def waits(run):
        return {r["name"] for r in run.all_of(COMMAND) if "-crds" in r["name"]}
    assert waits(runs["dev"]) == {"edge-gateway-crds-ready"}
    assert waits(runs["prod"]) == {"edge-gateway-crds-ready", "edge-cert-manager-crds-ready",
                                   "gpu-keda-crds", "gpu-prometheus-crds"}


# --- item 1: KEDA can authenticate -----------------------------------------------------------

def test_keda_operator_is_annotated_and_restarted_before_its_triggers(runs):
    prod = runs["prod"]
    account = prod.inputs("kubernetes:core/v1:ServiceAccountPatch")["metadata"]
    assert (account["namespace"], account["name"]) == ("kube-system", "keda-operator")
    assert account["annotations"]["azure.workload.identity/client-id"] == mock_run.KEDA_CLIENT_ID
    restart = prod.inputs("kubernetes:apps/v1:DeploymentPatch")
    assert (restart["metadata"]["namespace"], restart["metadata"]["name"]) == (
        "kube-system", "keda-operator")
    template = restart["spec"]["template"]["metadata"]
    assert template["labels"] == {"azure.workload.identity/use": "true"}
    # Keyed to the identity: it rolls the operator once, and a later up changes nothing.
    assert template["annotations"] == {"aks-gpu-scoring/keda-identity": mock_run.KEDA_CLIENT_ID}
    assert {"autoscaler-keda-federation", "autoscaler-keda-reader", "gpu-keda-crds"} <= set(
        prod.one("kubernetes:core/v1:ServiceAccountPatch")["options"]["dependsOn"])
    for later in ("autoscaler-trigger-auth", "autoscaler-blue-scaledobject"):
        assert {"autoscaler-keda-restart", "autoscaler-keda-sa"} <= depends_on(prod, later), later
    # The operator's Deployment and service account must exist before they are patched.
    script = prod.inputs(COMMAND, "gpu-keda-crds")["create"]
    assert "deployment/keda-operator" in script and "serviceaccount/keda-operator" in script
    assert not runs["dev"].all_of("kubernetes:apps/v1:DeploymentPatch")


# --- item 6: rollout timeouts and destroy order ----------------------------------------------

def test_rollout_timeouts_are_the_probes_budgets(runs):
    start_s = (IMAGE_PULL_BUDGET_S + STARTUP_PERIOD_S * STARTUP_FAILURES
               + READINESS_PERIOD_S * READINESS_FAILURES)
    for stack, pods in (("dev", 1), ("prod", 6)):
        deploy = runs[stack].one(DEPLOYMENT)
        [c] = unwrap(deploy["inputs"])["spec"]["template"]["spec"]["containers"]
        startup = c["startupProbe"]
        assert (startup["periodSeconds"], startup["failureThreshold"]) == (
            STARTUP_PERIOD_S, STARTUP_FAILURES)
        timeouts = deploy["options"]["customTimeouts"]
        minutes = {k: int(v.rstrip("m")) for k, v in timeouts.items()}
        assert minutes["create"] * 60 >= NODE_READY_BUDGET_S + start_s > 10 * 60
        assert minutes["update"] * 60 >= NODE_READY_BUDGET_S + pods * start_s
        grace = unwrap(deploy["inputs"])["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert minutes["delete"] * 60 > grace
    assert runs["prod"].one(DEPLOYMENT)["options"]["customTimeouts"]["update"] != \
        runs["dev"].one(DEPLOYMENT)["options"]["customTimeouts"]["update"]


def test_gpu_pods_go_before_their_pool_on_destroy(stack_run):
    pool = stack_run.one(POOL)["name"]
    assert pool in stack_run.one(DEPLOYMENT)["options"]["dependsOn"]
    assert pool in stack_run.one("kubernetes:apps/v1:DaemonSet")["options"]["dependsOn"]


# --- item 10: a new GPU size is a new pool ---------------------------------------------------

def test_a_new_gpu_size_is_a_new_pool_under_a_new_name(runs, reruns):
    before, after = runs["dev"].one(POOL), reruns["resized"].one(POOL)
    # Same Pulumi resource, another AKS name: Pulumi creates the new pool, then deletes the
    # old one (create-before-delete), so the two never share a name.
    assert before["name"] == after["name"]
    assert unwrap(before["inputs"])["agentPoolName"].startswith("nc4ast4")
    assert unwrap(after["inputs"])["agentPoolName"].startswith("nc8ast4")
    assert not before["options"]["deleteBeforeReplace"]


# --- Also: a second up with nothing changed is a no-op ---------------------------------------

def differences(first, second) -> list[str]:
    """Every resource whose inputs or options differ between two runs, and any resource
    only one of them declares."""
    a, b = by_name(first), by_name(second)
    out = [f"only in one run: {name}" for name in sorted(set(a) ^ set(b))]
    for name in sorted(set(a) & set(b)):
        for part in ("type", "inputs", "options"):
            if json.dumps(a[name][part], sort_keys=True) != json.dumps(b[name][part], sort_keys=True):
                out.append(f"{name}: {part} changed")
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_a_second_up_with_the_same_config_declares_the_same_inputs(stack, runs, reruns):
    first, second = runs[stack], reruns[stack]
    assert len(first.resources) > 20
    assert differences(first, second) == []
    assert first.outputs == second.outputs
    # The mocked Azure answers each getClientToken with a fresh token: none may reach an input.
    for run in (first, second):
        assert "aad-access-token" not in json.dumps(run.resources)


def test_the_comparison_sees_a_changed_input(runs):
    """Guards the guard: dev and its variant differ, and the comparison says where."""
    found = differences(runs["dev"], runs["variant"])
    assert "scoring-primary-key: inputs changed" in found
    assert any(line.startswith("only in one run:") for line in found)


# --- a traffic change is a routing change only -------------------------------------

def test_a_traffic_only_change_updates_only_the_route(runs):
    """traffic and mirrorTraffic changed, nothing else: the one HTTPRoute is the only input
    that differs, so no Deployment, image or pod template changes and no pod restarts."""
    before, after = runs["rollout"], runs["retraffic"]
    assert differences(before, after) == ["edge-route: inputs changed"]
    rules = [unwrap(run.inputs("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "edge-route"))
             ["spec"]["rules"][-1] for run in (before, after)]
    assert [r["weight"] for r in rules[0]["backendRefs"]] == [90, 10]
    assert [r["weight"] for r in rules[1]["backendRefs"]] == [50, 50]
    assert after.outputs["deployments"]["value"]["shadow"]["mirrorTraffic"] == 5
