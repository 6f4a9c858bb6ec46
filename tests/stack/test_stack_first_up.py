"""What a first real `pulumi up` would meet that Pulumi's inputs alone do not show: names a
Helm chart derives from the release, the subscription a CLI step works in, what AKS cannot
change in place, and what a later update sends (docs/deploying.md has the sources)."""
import re

import pytest
import yaml

from stack_harness import REPO, plain_strings, reference_file, run_programs, unwrap
import mock_run

COMMAND = "command:local:Command"
IMAGE = "docker-build:index:Image"
POOL = "azure-native:containerservice:AgentPool"
REGISTRY = "azure-native:containerregistry:Registry"
FEDERATION = "azure-native:managedidentity:FederatedIdentityCredential"
RELEASE = "kubernetes:helm.sh/v3:Release"
#: The chart files read below, at the tag the stack pins (tests/reference/charts/README.md).
CERT_MANAGER_CHART = "charts/cert-manager-v1.21.1"


# --- cert-manager's ServiceAccount, as its chart names it -------------------------------------

#: The chart's own helpers, exactly as they read at the pinned tag: the rule below is theirs.
FULLNAME_RULE = """{{- define "cert-manager.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}"""
ACCOUNT_RULE = """{{- define "cert-manager.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
    {{ default (include "cert-manager.fullname" .) .Values.serviceAccount.name }}
{{- else -}}
    {{ default "default" .Values.serviceAccount.name }}
{{- end -}}
{{- end -}}"""


def _trunc(name: str) -> str:
    return name[:63].rstrip("-")  # `trunc 63 | trimSuffix "-"` (one trailing dash in Sprig)


def chart_service_account(release_name: str, values: dict, chart_name: str) -> str:
    """cert-manager.serviceAccountName, as the pinned chart's _helpers.tpl defines it
    (serviceAccount.create defaults to true in its values.yaml)."""
    account = values.get("serviceAccount", {})
    if account.get("name"):
        return account["name"]
    if not account.get("create", True):
        return "default"
    if values.get("fullnameOverride"):
        return _trunc(values["fullnameOverride"])
    name = values.get("nameOverride") or chart_name
    return _trunc(release_name if name in release_name else f"{release_name}-{name}")


def test_the_helper_rule_is_the_pinned_charts():
    """The Python rule above is the chart's: its helpers carry both defines verbatim, the
    controller's Deployment and ServiceAccount use that helper, and the chart is named
    cert-manager."""
    helpers = reference_file(f"{CERT_MANAGER_CHART}/_helpers.tpl").read_text()
    assert FULLNAME_RULE in helpers and ACCOUNT_RULE in helpers
    marker = '{{ template "cert-manager.serviceAccountName" . }}'
    for template in ("deployment.yaml", "serviceaccount.yaml"):
        assert marker in reference_file(f"{CERT_MANAGER_CHART}/{template}").read_text()
    chart = reference_file(f"{CERT_MANAGER_CHART}/Chart.yaml").read_text()
    assert re.search(r"^name: cert-manager$", chart, re.M)
    # The rule itself: Pulumi's autonamed release (<resource>-<hex>) contains the chart's
    # name, so the chart would use it whole as the account's name.
    assert chart_service_account("edge-cert-manager-1a2b3c4d", {}, "cert-manager") == \
        "edge-cert-manager-1a2b3c4d"
    assert chart_service_account("certs", {}, "cert-manager") == "certs-cert-manager"


def test_dns01_identity_is_federated_with_the_account_the_chart_creates(runs):
    """With `domain`, cert-manager signs in to Azure DNS as a federated identity: the
    credential's subject must name the ServiceAccount the chart renders for this release."""
    run = runs["rollout"]
    release = run.inputs(RELEASE, "edge-cert-manager")
    # pulumi-kubernetes autonames an unnamed release `<resource name>-<random hex>`
    # (provider/pkg/provider/helm_release.go, assignNameIfAutonameable): the name must be set.
    assert release.get("name"), "the cert-manager release must be named explicitly"
    account = chart_service_account(release["name"], release["values"], release["chart"])
    subject = run.inputs(FEDERATION, "edge-dns01-federation")["subject"]
    assert subject == f"system:serviceaccount:{release['namespace']}:{account}"


# --- the registry login, in the subscription azure-native deploys into ------------------------

@pytest.fixture(scope="module")
def first_up(model_dir, tmp_path_factory):
    """dev and prod as shipped, then dev with one immutable GPU-pool property changed at a
    time, and with only its maximum node count changed (a later, in-place update)."""
    base = {"modelDir": str(model_dir)}
    return run_programs({
        "dev": ("dev", base), "prod": ("prod", base),
        "regular": ("dev", {**base, "gpuSpot": False}),
        "zoned": ("dev", {**base, "zones": ["1", "2"]}),
        "grown": ("dev", {**base, "gpuMaxCount": 2}),
    }, tmp_path_factory.mktemp("first-up"))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_registry_login_names_the_subscription_azure_native_deploys_into(first_up, stack):
    run = first_up[stack]
    login = run.inputs(COMMAND, "registry-login")["create"]
    # getClientConfig answers the provider's own subscription (the mock's SUBSCRIPTION).
    assert login.split() == ["az", "acr", "login", "--name",
                             run.inputs(REGISTRY)["registryName"],
                             "--subscription", mock_run.SUBSCRIPTION]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_image_is_never_built_during_a_preview(first_up, stack):
    assert first_up[stack].inputs(IMAGE)["buildOnPreview"] is False


# --- GPU pool properties AKS cannot change in place --------------------------------------------

@pytest.mark.parametrize("variant, changed", [("regular", "scaleSetPriority"),
                                              ("zoned", "availabilityZones")])
def test_an_immutable_pool_change_is_a_new_pool_under_a_new_name(first_up, variant, changed):
    """A spot flip or a new zone list would be sent as an in-place update AKS refuses: each
    changes the pool's AKS name (part of its resource id), so Pulumi replaces it, creating
    the new pool before deleting the old one."""
    before, after = first_up["dev"].one(POOL), first_up[variant].one(POOL)
    old, new = unwrap(before["inputs"]), unwrap(after["inputs"])
    assert old.get(changed) != new.get(changed)
    assert old["agentPoolName"] != new["agentPoolName"]
    for pool in (before, after):
        assert changed in pool["options"]["replaceOnChanges"]
        assert not pool["options"]["deleteBeforeReplace"]


def test_every_immutable_pool_property_is_part_of_the_name(first_up):
    from infra.cluster import SDK_NAMES
    pool = first_up["dev"].one(POOL)
    assert sorted(SDK_NAMES) == pool["options"]["replaceOnChanges"]
    # Sent as declared, under the names the replacement watches.
    inputs = unwrap(pool["inputs"])
    assert {"vmSize", "scaleSetPriority", "osType", "osSKU", "gpuProfile"} <= set(inputs)


def test_a_mutable_pool_change_keeps_the_pool_and_never_sends_a_new_count(first_up):
    """gpuMaxCount is updated in place (same name). The count stays out of the diff
    (ignore_changes), so the update sends the count in state, which the project's
    refresh-before-every-operation has just read from the live pool."""
    before, after = first_up["dev"].one(POOL), first_up["grown"].one(POOL)
    old, new = unwrap(before["inputs"]), unwrap(after["inputs"])
    assert old["agentPoolName"] == new["agentPoolName"]
    assert (old["maxCount"], new["maxCount"]) == (1, 2)
    assert after["options"]["ignoreChanges"] == ["count"]
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    assert project["options"]["refresh"] == "always"


# --- Docker Hub: the nodes pull the edge's images through the stack's registry -----------------

CACHE_RULE = "azure-native:containerregistry:CacheRule"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_edges_images_come_through_the_registrys_cache_rules(first_up, stack):
    """Each Docker Hub repository a node would pull from has a cache rule in the stack's
    registry, and the controller (with certgen and the shutdown manager) and the proxies
    are pulled from there: no image a node pulls names docker.io."""
    from infra.pins import ENVOY_PROXY_TAGS, MIRRORED
    run = first_up[stack]
    registry = run.inputs(REGISTRY)["registryName"]
    login = f"{registry}.azurecr.io"
    rules = {r["targetRepository"]: r for r in map(unwrap, (x["inputs"] for x in
                                                            run.all_of(CACHE_RULE)))}
    assert {k: v["sourceRepository"] for k, v in rules.items()} == MIRRORED
    assert all(r["registryName"] == registry for r in rules.values())
    controller = run.one(RELEASE, "edge-envoy-gateway")
    assert unwrap(controller["inputs"])["values"]["global"]["imageRegistry"] == login
    waits_for = {r["name"] for r in run.all_of(CACHE_RULE)} | {"registry-kubelet-pull"}
    assert waits_for <= set(controller["options"]["dependsOn"])
    proxy = run.inputs("kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy")
    image = proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["image"]
    assert image == f"{login}/envoyproxy/envoy:{ENVOY_PROXY_TAGS['v1.9']}"
    images = [s for r in run.resources if r["type"].startswith("kubernetes:")
              for s in plain_strings(unwrap(r["inputs"]).get("values", {}))] + \
        [s for body in run.kubernetes_objects() for s in plain_strings(body)]
    assert not [s for s in images if "docker.io" in s]


# --- destroy without the Kubernetes API -------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_destroy_can_drop_an_unreachable_clusters_objects(first_up, stack):
    """pulumi-kubernetes reads `deleteUnreachable` from the provider's own config before
    PULUMI_K8S_DELETE_UNREACHABLE: the program must not set it (nor skipUpdateUnreachable),
    so the documented `PULUMI_K8S_DELETE_UNREACHABLE=true pulumi destroy` works, and
    nothing on the way to the resource group is protected."""
    run = first_up[stack]
    providers = run.all_of("pulumi:providers:kubernetes")
    assert providers
    for provider in providers:
        inputs = unwrap(provider["inputs"])
        assert not {"deleteUnreachable", "skipUpdateUnreachable"} & set(inputs)
    assert not [r["name"] for r in run.resources if r["options"].get("protect")]
