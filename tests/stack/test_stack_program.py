"""The whole program under mocks, per stack file: what `pulumi up` declares."""
import base64
import re

import yaml

from conftest import PREBUILT
from stack_harness import REPO, plain_strings, stack_file_config
import mock_run
from scoring_app.contract import Var

COMPONENTS = {
    "aks-gpu-scoring:infra:GpuCluster": "gpu",
    "aks-gpu-scoring:infra:RegistryImage": "registry",
    "aks-gpu-scoring:infra:NvidiaDevicePlugin": "nvidia",
    "aks-gpu-scoring:infra:ScoringService": "scoring",
    "aks-gpu-scoring:infra:Edge": "edge",
    "aks-gpu-scoring:infra:ModelStore": "models",
}
#: Components only a stack with monitoring (and autoscaling) has.
OBSERVED = {
    "aks-gpu-scoring:infra:ManagedPrometheus": "prometheus",
    "aks-gpu-scoring:infra:Autoscaler": "autoscaler",
}
MC = "azure-native:containerservice:ManagedCluster"
POOL = "azure-native:containerservice:AgentPool"
ROLE = "azure-native:authorization:RoleAssignment"
DCRA = "azure-native:monitor:DataCollectionRuleAssociation"
GPU_TOLERATION = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
SPOT_TOLERATION = {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal",
                   "value": "spot", "effect": "NoSchedule"}


# --- structure -----------------------------------------------------------------------------

def test_components_own_their_children_and_nothing_is_protected(stack_run):
    expected = {**COMPONENTS, **(OBSERVED if stack_file_config(stack_run.stack)["monitoring"] else {})}
    components = {r["name"]: r["type"] for r in stack_run.resources if r["type"] in expected}
    assert sorted(components.values()) == sorted(expected)
    assert not any(r["type"] in OBSERVED for r in stack_run.resources
                   if not stack_file_config(stack_run.stack)["monitoring"])
    for r in stack_run.resources:
        assert not r["options"]["protect"] and not r["options"]["retainOnDelete"], r["name"]
        if r["type"] in expected or r["type"] == "azure-native:resources:ResourceGroup":
            continue
        parent = r["options"]["parent"]
        assert parent in components, f"{r['name']} is not inside a component"
        assert r["name"].startswith(f"{parent}-"), f"{r['name']} not named from {parent}"


def test_every_kubernetes_object_uses_the_explicit_provider(stack_run):
    provider = stack_run.one("pulumi:providers:kubernetes")
    assert set(provider["inputs"]["kubeconfig"]) == {"__secret__"}
    k8s = [r for r in stack_run.resources if r["type"].startswith("kubernetes:")]
    assert k8s and all(r["options"]["provider"] and "gpu-k8s" in r["options"]["provider"]
                       for r in k8s)


def test_one_resource_group_holds_every_azure_resource(stack_run):
    group = stack_run.one("azure-native:resources:ResourceGroup")
    name = stack_run.outputs["resourceGroupName"]["value"]
    for r in stack_run.resources:
        if r["type"].startswith("azure-native:") and r is not group and r["type"] not in (
                ROLE, DCRA):
            assert r["inputs"]["resourceGroupName"] == name, r["name"]
    # Role assignments and the rule association live on resources inside the group.
    scopes = {r["inputs"]["scope"] for r in stack_run.all_of(ROLE)}
    assert all(s.startswith("/mock/azure-native:") for s in scopes), scopes


# --- cluster and GPU pool ------------------------------------------------------------------

def test_cluster_is_hardened(stack_run):
    cfg = stack_file_config(stack_run.stack)
    mc = stack_run.inputs(MC)
    assert mc["identity"] == {"type": "SystemAssigned"} and "servicePrincipalProfile" not in mc
    [system] = mc["agentPoolProfiles"]
    assert system["mode"] == "System" and system["vmSize"] == "Standard_D4s_v5"
    assert mc["sku"]["tier"] == cfg["clusterTier"] and mc["supportPlan"] == "KubernetesOfficial"
    assert mc["oidcIssuerProfile"] == {"enabled": True}
    assert mc["securityProfile"] == {"workloadIdentity": {"enabled": True}}
    net = mc["networkProfile"]
    assert (net["networkPlugin"], net["networkPluginMode"]) == ("azure", "overlay")
    assert net["networkPolicy"] == net["networkDataplane"] == "cilium"
    assert mc["autoUpgradeProfile"] == {"upgradeChannel": "patch",
                                        "nodeOSUpgradeChannel": "NodeImage"}
    assert mc["addonProfiles"] == {"azurepolicy": {"enabled": True}}
    assert mc["apiServerAccessProfile"]["authorizedIPRanges"] == mock_run.DEPLOYER_EGRESS
    assert mc["aadProfile"]["managed"] and mc["aadProfile"]["enableAzureRBAC"]
    assert mc["disableLocalAccounts"] is (not cfg["localAccounts"])


def test_local_accounts_per_stack():
    assert stack_file_config("dev")["localAccounts"] is True
    assert stack_file_config("prod")["localAccounts"] is False


def test_kubeconfig_credentials_follow_local_accounts(stack_run):
    tokens = {c["token"].rsplit(":", 1)[1]: c["args"] for c in stack_run.data["calls"]}
    if stack_file_config(stack_run.stack)["localAccounts"]:
        assert "listManagedClusterAdminCredentials" in tokens
    else:
        assert tokens["listManagedClusterUserCredentials"]["format"] == "exec"
        assert "listManagedClusterAdminCredentials" not in tokens
    kubeconfig = yaml.safe_load(stack_run.outputs["kubeconfig"]["value"])
    args = kubeconfig["users"][0]["user"]["exec"]["args"]
    # never an interactive device code, and none of AKS's own client id (convert-kubeconfig)
    assert args == ["get-token", "--login", "azurecli", "--server-id", mock_run.AKS_SERVER_ID]


def test_deployer_gets_aks_rbac_admin_on_the_cluster(stack_run):
    admin = stack_run.inputs(ROLE, "gpu-deployer-admin")
    assert admin["principalId"] == mock_run.DEPLOYER_OID
    assert admin["roleDefinitionId"].endswith("b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b")
    assert admin["scope"].endswith("/gpu-aks")


def test_gpu_pool(stack_run):
    cfg = stack_file_config(stack_run.stack)
    pool = stack_run.inputs(POOL)
    assert pool["mode"] == "User" and pool["osType"] == "Linux" and pool["osSKU"] == "Ubuntu"
    assert pool["vmSize"] == "Standard_NC4as_T4_v3" and pool["agentPoolName"].startswith("nc4ast4")
    spot = ["kubernetes.azure.com/scalesetpriority=spot:NoSchedule"] if cfg["gpuSpot"] else []
    assert pool["nodeTaints"] == ["sku=gpu:NoSchedule", *spot]
    assert pool["nodeLabels"] == {"aks-gpu-scoring/pool": "gpu", **(
        {"kubernetes.azure.com/scalesetpriority": "spot"} if cfg["gpuSpot"] else {})}
    assert pool["enableAutoScaling"] is True
    # The autoscaler owns the count once the pool exists; an update must not re-send it.
    options = stack_run.one(POOL)["options"]
    assert options["ignoreChanges"] == ["count"] and not options["deleteBeforeReplace"]
    assert (pool["minCount"], pool["maxCount"]) == (cfg["gpuMinCount"], cfg["gpuMaxCount"])
    assert pool["gpuProfile"] == {"driver": "Install"}
    assert pool["resourceName"] == stack_run.outputs["clusterName"]["value"]
    if cfg["gpuSpot"]:
        assert pool["scaleSetPriority"] == "Spot" and pool["scaleSetEvictionPolicy"] == "Delete"
    else:
        assert pool["scaleSetPriority"] == "Regular" and "spotMaxPrice" not in pool
    assert pool.get("availabilityZones") == cfg.get("zones")


def test_dev_and_prod_shapes(runs):
    dev, prod = runs["dev"].inputs(POOL), runs["prod"].inputs(POOL)
    assert (dev["minCount"], dev["maxCount"], dev["scaleSetPriority"]) == (0, 1, "Spot")
    assert (prod["minCount"], prod["maxCount"], prod["scaleSetPriority"]) == (3, 6, "Regular")
    assert prod["availabilityZones"] == ["1", "2", "3"] and "availabilityZones" not in dev
    assert runs["dev"].inputs("kubernetes:apps/v1:Deployment")["spec"]["replicas"] == 1
    # prod autoscales: KEDA owns the count, so `pulumi up` must not reset it.
    assert "replicas" not in runs["prod"].inputs("kubernetes:apps/v1:Deployment")["spec"]


def test_gpu_operator_route_leaves_the_driver_and_plugin_to_the_operator(runs):
    variant = runs["variant"]
    assert variant.inputs(POOL)["gpuProfile"] == {"driver": "None"}
    assert not variant.all_of("kubernetes:apps/v1:DaemonSet")


# --- registry and image --------------------------------------------------------------------

def test_registry_has_no_admin_user_and_no_anonymous_pull(stack_run):
    acr = stack_run.inputs("azure-native:containerregistry:Registry")
    assert acr["adminUserEnabled"] is False and acr["anonymousPullEnabled"] is False
    assert re.fullmatch(r"[a-z0-9]{5,50}", acr["registryName"])


def test_acr_pull_goes_to_the_kubelet_identity(stack_run):
    pull = stack_run.inputs(ROLE, "registry-kubelet-pull")
    assert pull["principalId"] == mock_run.KUBELET_OID
    assert pull["principalType"] == "ServicePrincipal"
    assert pull["roleDefinitionId"] == (
        f"/subscriptions/{mock_run.SUBSCRIPTION}/providers/Microsoft.Authorization/"
        "roleDefinitions/7f951dda-4ed3-4680-a7ca-43fe172d538d")
    assert pull["scope"].endswith("/registry-acr")


def test_image_is_built_from_scoring_app_tagged_by_content_and_deployed_by_digest(stack_run):
    image = stack_run.inputs("docker-build:index:Image")
    login = stack_run.outputs["registryLoginServer"]["value"]
    assert image["push"] is True
    [tag] = image["tags"]
    assert re.fullmatch(rf"{re.escape(login)}/scoring:[0-9a-f]{{16}}", tag)
    assert image["context"]["location"] == "scoring_app"
    assert set(image["context"]["named"]) == {"model"}
    assert image["dockerfile"]["location"] == "scoring_app/Dockerfile"
    assert image["buildArgs"] == {"MODEL_DIR": "/opt/scoring/model"}  # empty under modelStore blob
    push = stack_run.inputs(ROLE, "registry-deployer-push")
    assert push["principalId"] == mock_run.DEPLOYER_OID
    ref = stack_run.outputs["deployments"]["value"]["blue"]["image"]
    assert re.fullmatch(rf"{re.escape(login)}/scoring@sha256:[0-9a-f]{{64}}", ref)
    [container] = stack_run.pod_spec("Deployment")["containers"]
    assert container["image"] == ref


def test_prebuilt_image_skips_the_build(runs):
    variant = runs["variant"]
    assert not variant.all_of("docker-build:index:Image")
    assert "registry-login" not in {r["name"] for r in variant.all_of("command:local:Command")}
    assert variant.outputs["deployments"]["value"]["blue"]["image"] == PREBUILT
    assert variant.pod_spec("Deployment")["containers"][0]["image"] == PREBUILT
    variant.one(ROLE, "registry-kubelet-pull")


# --- device plugin -------------------------------------------------------------------------

def test_device_plugin_is_least_privilege_on_gpu_nodes_only(stack_run):
    ns = stack_run.inputs("kubernetes:core/v1:Namespace", "nvidia-ns")["metadata"]
    assert ns["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    ds = stack_run.inputs("kubernetes:apps/v1:DaemonSet")
    assert ds["metadata"]["namespace"] == ns["name"] == "nvidia-device-plugin"
    spec = ds["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == "system-node-critical"
    assert GPU_TOLERATION in spec["tolerations"] and SPOT_TOLERATION in spec["tolerations"]
    assert spec["nodeSelector"] == {"aks-gpu-scoring/pool": "gpu"}
    [c] = spec["containers"]
    assert re.fullmatch(r"nvcr\.io/nvidia/k8s-device-plugin:v\d+\.\d+\.\d+", c["image"])
    assert c["image"] == "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"  # NVIDIA's current release
    # The read-only root filesystem holds only with the strategy that writes no CDI specs.
    assert {"name": "DEVICE_LIST_STRATEGY", "value": "envvar"} in c["env"]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    assert spec["volumes"] == [{"name": "device-plugins", "hostPath": {
        "path": "/var/lib/kubelet/device-plugins", "type": "Directory"}}]
    assert not any(k in spec for k in ("hostNetwork", "hostPID", "hostIPC"))


def test_only_the_device_plugin_touches_the_host(stack_run):
    for body in stack_run.kubernetes_objects():
        text = yaml.safe_dump(body)
        if body["kind"] != "DaemonSet":
            assert "hostPath" not in text and "privileged: true" not in text, body["kind"]


# --- scoring workload ----------------------------------------------------------------------

def test_scoring_namespace_is_pss_restricted(stack_run):
    labels = stack_run.inputs("kubernetes:core/v1:Namespace", "scoring-ns")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_keys_are_random_with_keepers_and_mounted_as_files(stack_run):
    for key in ("primary", "secondary"):
        pw = stack_run.inputs("random:index/randomPassword:RandomPassword", f"scoring-{key}-key")
        assert pw["length"] >= 32 and pw["keepers"] == {"version": "1"}
    secret = stack_run.one("kubernetes:core/v1:Secret")["inputs"]
    assert set(secret["stringData"]) == {"__secret__"}
    assert secret["metadata"]["name"] == "scoring-api-keys"
    assert set(secret["stringData"]["__secret__"]) == {"primary", "secondary"}
    spec = stack_run.pod_spec("Deployment")
    keys = next(v for v in spec["volumes"] if v["name"] == "api-keys")["secret"]
    assert keys["items"] == [{"key": "primary", "path": "primary"},
                             {"key": "secondary", "path": "secondary"}]
    [c] = spec["containers"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "api-keys")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert mount["readOnly"] and env[Var.API_KEYS_DIR] == mount["mountPath"]


def test_rotating_one_key_is_a_keeper_change_that_leaves_the_other(runs):
    def keepers(run, key):
        return run.inputs("random:index/randomPassword:RandomPassword",
                          f"scoring-{key}-key")["keepers"]
    assert keepers(runs["variant"], "primary") != keepers(runs["dev"], "primary")
    assert keepers(runs["variant"], "secondary") == keepers(runs["dev"], "secondary")


def test_service_account_mounts_no_token(stack_run):
    sa = stack_run.inputs("kubernetes:core/v1:ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    spec = stack_run.pod_spec("Deployment")
    assert spec["serviceAccountName"] == sa["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False


def test_deployment_follows_the_contract(stack_run):
    cfg = stack_file_config(stack_run.stack)
    deploy = stack_run.inputs("kubernetes:apps/v1:Deployment")["spec"]
    assert deploy.get("replicas") == (None if cfg["autoscaling"] else cfg["replicas"])
    assert deploy["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    spec = deploy["template"]["spec"]
    [c] = spec["containers"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 5001, "metrics": 9090}
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) <= set(c["resources"]["limits"])
    assert GPU_TOLERATION in spec["tolerations"] and SPOT_TOLERATION in spec["tolerations"]
    assert spec["nodeSelector"] == {"aks-gpu-scoring/pool": "gpu"}
    assert c["startupProbe"]["httpGet"]["path"] == c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env[Var.PORT] == "5001" and env[Var.METRICS_PORT] == "9090"
    assert env[Var.MODEL_DIR] == "/var/lib/scoring/model"  # the init container's emptyDir
    assert {Var.MODEL_NAME, Var.MODEL_VERSION} <= set(env)
    # The deployment's name comes from the pod's own label (the downward API).
    [name] = [e for e in c["env"] if e["name"] == Var.DEPLOYMENT_NAME]
    assert name["valueFrom"] == {"fieldRef": {
        "fieldPath": "metadata.labels['aks-gpu-scoring/deployment']"}}
    assert deploy["template"]["metadata"]["labels"]["aks-gpu-scoring/deployment"] == "blue"


def test_deployment_security_context_is_restricted(stack_run):
    spec = stack_run.pod_spec("Deployment")
    [c] = spec["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000
    assert spec["securityContext"]["runAsUser"] >= 10000
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == tmp["name"])


def test_precision_is_fp32_unless_the_stack_says_mixed(runs):
    def env(run):
        [c] = run.pod_spec("Deployment")["containers"]
        return {e["name"]: e.get("value") for e in c["env"]}
    assert env(runs["dev"])[Var.PRECISION] == "fp32"
    assert env(runs["variant"])[Var.PRECISION] == "mixed"


def test_spread_and_graceful_shutdown(stack_run):
    spec = stack_run.pod_spec("Deployment")
    assert "kubernetes.io/hostname" in {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
    [c] = spec["containers"]
    pause = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    drain, graceful = int(env[Var.DRAIN_SECONDS]), int(env[Var.GRACEFUL_TIMEOUT_S])
    # the shutdown timeline of docs/contract.md: preStop, then drain, then graceful finish
    assert pause > 0 and spec["terminationGracePeriodSeconds"] > pause + drain + graceful


def test_service_is_internal_and_the_network_policy_admits_only_the_edge_and_scraper(stack_run):
    svc = stack_run.inputs("kubernetes:core/v1:Service")
    assert svc["spec"]["type"] == "ClusterIP" and "annotations" not in svc["metadata"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                     "protocol": "TCP"}]  # never the metrics port
    pdb = stack_run.inputs("kubernetes:policy/v1:PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == 1

    policy = stack_run.inputs("kubernetes:networking.k8s.io/v1:NetworkPolicy", "scoring-netpol")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    admitted = {rule["ports"][0]["port"]: rule["from"] for rule in spec["ingress"]}
    only = lambda ns: [{"namespaceSelector": {"matchLabels": {  # noqa: E731
        "kubernetes.io/metadata.name": ns}}}]
    assert admitted == {5001: only("envoy-gateway-system"), 9090: only("kube-system")}
    assert all(len(rule["ports"]) == 1 for rule in spec["ingress"])
    blocks = [p["ipBlock"] for rule in spec["egress"] for p in rule.get("to", []) if "ipBlock" in p]
    assert blocks and all("169.254.169.254/32" in b.get("except", []) for b in blocks)


# --- edge: Gateway API, DNS name, certificate -----------------------------------------------

GW = "kubernetes:gateway.networking.k8s.io/v1"
RELEASE = "kubernetes:helm.sh/v3:Release"
SYSTEM = {"key": "CriticalAddonsOnly", "operator": "Equal", "value": "true",
          "effect": "NoSchedule"}


def test_the_edge_is_envoy_gateway_pinned_with_standard_channel_crds(stack_run):
    # Application routing (managed NGINX) is off, said explicitly for older stacks.
    assert stack_run.inputs(MC)["ingressProfile"] == {"webAppRouting": {"enabled": False}}
    assert not [r for r in stack_run.resources if "approuting" in r["type"]
                or r["type"].endswith(":Ingress")]
    # The CRDs are rendered and applied as objects: several MB, over what a release holds.
    crds = stack_run.inputs("kubernetes:helm.sh/v4:Chart", "edge-gateway-crds")
    assert (crds["chart"], crds["version"]) == ("oci://docker.io/envoyproxy/gateway-crds-helm",
                                                "v1.9.0")
    assert crds["values"]["crds"] == {"gatewayAPI": {"enabled": True, "channel": "standard"},
                                      "envoyGateway": {"enabled": True}}
    controller = stack_run.inputs(RELEASE, "edge-envoy-gateway")
    assert controller["chart"] == "oci://docker.io/envoyproxy/gateway-helm"
    assert controller["version"] == crds["version"]
    assert controller["skipCrds"] is True and controller["values"]["crds"] == {"enabled": False}
    assert controller["namespace"] == crds["namespace"] == "envoy-gateway-system"
    for part in (controller["values"]["deployment"]["pod"], controller["values"]["certgen"]["job"]):
        assert part["tolerations"] == [SYSTEM]  # the system pool: the GPU pool is for scoring
    requests = controller["values"]["deployment"]["envoyGateway"]["resources"]["requests"]
    assert requests == {"cpu": "100m", "memory": "256Mi"}  # what infra/system_pool.py counts
    gw_class = stack_run.inputs(f"{GW}:GatewayClass")
    assert gw_class["spec"]["controllerName"] == "gateway.envoyproxy.io/gatewayclass-controller"
    proxy = stack_run.inputs("kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy")
    ref = gw_class["spec"]["parametersRef"]
    assert (ref["kind"], ref["name"], ref["namespace"]) == (
        "EnvoyProxy", proxy["metadata"]["name"], proxy["metadata"]["namespace"])
    deployment = proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]
    assert deployment["replicas"] == 2 and deployment["pod"]["tolerations"] == [SYSTEM]
    assert deployment["container"]["resources"]["requests"] == {"cpu": "200m", "memory": "256Mi"}
    # Envoy writes its log and UDS socket to its root filesystem: Envoy Gateway's own
    # restricted-safe default leaves it writable, and the stack does not override it.
    assert "securityContext" not in deployment["container"]
    labels = stack_run.inputs("kubernetes:core/v1:Namespace", "edge-gateway-ns")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_dns_label_and_source_ranges_sit_on_the_gateways_load_balancer(stack_run, runs):
    proxy = stack_run.inputs("kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy")
    service = proxy["spec"]["provider"]["kubernetes"]["envoyService"]
    assert service["type"] == "LoadBalancer"
    label = service["annotations"]["service.beta.kubernetes.io/azure-dns-label-name"]
    assert re.fullmatch(rf"aks-gpu-scoring-{stack_run.stack}-[a-z0-9]{{6}}", label)
    assert "service.beta.kubernetes.io/azure-allowed-ip-ranges" not in service["annotations"]
    gateway = stack_run.inputs(f"{GW}:Gateway")
    assert gateway["metadata"]["namespace"] == "scoring"
    assert gateway["spec"]["gatewayClassName"] == stack_run.inputs(
        f"{GW}:GatewayClass")["metadata"]["name"]
    variant = runs["variant"].inputs("kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy")
    assert variant["spec"]["provider"]["kubernetes"]["envoyService"]["annotations"] == {
        "service.beta.kubernetes.io/azure-dns-label-name": "contoso-scoring",
        "service.beta.kubernetes.io/azure-allowed-ip-ranges": "198.51.100.0/24"}


def test_the_routes_timeout_sits_just_past_the_services_own(stack_run):
    route = stack_run.inputs(f"{GW}:HTTPRoute", "edge-route")
    for rule in route["spec"]["rules"]:
        assert rule["timeouts"] == {"request": "40s"}  # service: 30 s, then its JSON 504
    # No body cap at the edge: Envoy streams, so the service's own JSON 413 is what clients see.
    assert "BackendTrafficPolicy" not in {o["kind"] for o in stack_run.kubernetes_objects()}


def test_prod_serves_https_with_a_pinned_cert_manager_and_lets_encrypt(runs):
    prod = runs["prod"]
    release = prod.inputs(RELEASE, "edge-cert-manager")
    assert (release["chart"], release["version"]) == ("cert-manager", "v1.21.1")
    assert release["repositoryOpts"] == {"repo": "https://charts.jetstack.io"}
    assert release["namespace"] == "cert-manager" and release["atomic"] is True
    values = release["values"]
    assert values["crds"] == {"enabled": True, "keep": True}
    assert values["config"]["enableGatewayAPI"] is True
    assert values["config"]["kind"] == "ControllerConfiguration"
    # It starts only once the Gateway API CRDs exist (it watches Gateways from the start).
    assert "edge-gateway-crds-ready" in prod.one(RELEASE, "edge-cert-manager")["options"]["dependsOn"]
    for part in (values, values["webhook"], values["cainjector"], values["startupapicheck"]):
        assert part["tolerations"] == [SYSTEM]  # both pools are tainted
        assert part["nodeSelector"]["kubernetes.azure.com/mode"] == "system"
    issuer = prod.inputs("kubernetes:cert-manager.io/v1:ClusterIssuer")
    acme = issuer["spec"]["acme"]
    assert acme["server"] == "https://acme-v02.api.letsencrypt.org/directory"
    assert acme["email"] == mock_run.DEPLOYER_ACME_EMAIL
    [solver] = acme["solvers"]
    assert solver["http01"]["gatewayHTTPRoute"]["parentRefs"] == [{
        "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "scoring",
        "namespace": "scoring", "sectionName": "http"}]
    assert solver["http01"]["gatewayHTTPRoute"]["podTemplate"]["spec"]["tolerations"] == [SYSTEM]
    cert = prod.inputs("kubernetes:cert-manager.io/v1:Certificate")["spec"]
    listeners = {x["name"]: x for x in prod.inputs(f"{GW}:Gateway")["spec"]["listeners"]}
    assert set(listeners) == {"http", "https"}
    https = listeners["https"]
    assert (https["port"], https["protocol"]) == (443, "HTTPS")
    assert cert["dnsNames"] == [https["hostname"]]
    assert cert["issuerRef"]["name"] == issuer["metadata"]["name"]
    assert https["tls"]["certificateRefs"] == [{"kind": "Secret", "name": cert["secretName"]}]
    # Scoring is served on HTTPS only; plain HTTP answers a redirect.
    route = prod.inputs(f"{GW}:HTTPRoute", "edge-route")
    assert route["spec"]["parentRefs"] == [{"name": "scoring", "sectionName": "https"}]
    redirect = prod.inputs(f"{GW}:HTTPRoute", "edge-redirect")
    assert redirect["spec"]["parentRefs"] == [{"name": "scoring", "sectionName": "http"}]
    [rule] = redirect["spec"]["rules"]
    assert "matches" not in rule  # everything but the solver's Exact-path challenge route
    assert rule["filters"] == [{"type": "RequestRedirect", "requestRedirect": {
        "scheme": "https", "statusCode": 301}}]
    names = {r["name"]: r for r in prod.resources}
    assert names["edge-issuer"]["options"]["parent"] == "edge"


def test_dev_stays_on_plain_http_without_certificate_machinery(runs):
    dev = runs["dev"]
    assert {r["name"] for r in dev.all_of(RELEASE)} == {"edge-envoy-gateway"}
    assert not [r for r in dev.resources if r["type"].startswith("kubernetes:cert-manager.io")]
    [listener] = dev.inputs(f"{GW}:Gateway")["spec"]["listeners"]
    assert (listener["name"], listener["port"], listener["protocol"]) == ("http", 80, "HTTP")
    assert [r["name"] for r in dev.all_of(f"{GW}:HTTPRoute")] == ["edge-route"]


# --- monitoring and autoscaling -------------------------------------------------------------

def test_managed_prometheus_is_wired_from_cluster_to_workspace(runs):
    prod, dev = runs["prod"], runs["dev"]
    assert prod.inputs(MC)["azureMonitorProfile"] == {"metrics": {"enabled": True}}
    assert dev.inputs(MC)["azureMonitorProfile"] == {"metrics": {"enabled": False}}
    assert not dev.all_of("azure-native:monitor:AzureMonitorWorkspace")
    rule = prod.inputs("azure-native:monitor:DataCollectionRule")
    assert rule["kind"] == "Linux"
    [source] = rule["dataSources"]["prometheusForwarder"]
    assert source["streams"] == ["Microsoft-PrometheusMetrics"]
    [account] = rule["destinations"]["monitoringAccounts"]
    assert account["accountResourceId"].endswith("/prometheus-workspace")
    assert rule["dataFlows"] == [{"streams": ["Microsoft-PrometheusMetrics"],
                                  "destinations": [account["name"]]}]
    assert rule["dataCollectionEndpointId"].endswith("/prometheus-dce")
    dcra = prod.inputs(DCRA)
    assert dcra["resourceUri"].endswith("/gpu-aks") and dcra["dataCollectionRuleId"].endswith(
        "/prometheus-dcr")
    monitor = prod.inputs("kubernetes:azmonitoring.coreos.com/v1:PodMonitor")
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    deployment_ports = {p["name"]: p["containerPort"]
                        for p in prod.pod_spec("Deployment")["containers"][0]["ports"]}
    assert deployment_ports[endpoint["port"]] == 9090
    # One PodMonitor for every deployment's pods, each series labelled with its deployment.
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "scoring"}
    assert selector.items() <= prod.inputs(
        "kubernetes:apps/v1:Deployment")["spec"]["selector"]["matchLabels"].items()
    assert endpoint["relabelings"] == [{
        "sourceLabels": ["__meta_kubernetes_pod_label_aks_gpu_scoring_deployment"],
        "targetLabel": "deployment", "action": "replace"}]
    assert prod.outputs["prometheusQueryEndpoint"]["value"] == mock_run.PROM_ENDPOINT


def test_keda_scales_the_deployment_on_load_as_its_own_identity(runs):
    prod, dev = runs["prod"], runs["dev"]
    assert prod.inputs(MC)["workloadAutoScalerProfile"] == {"keda": {"enabled": True}}
    assert dev.inputs(MC)["workloadAutoScalerProfile"] == {"keda": {"enabled": False}}
    assert not [r for r in dev.resources if "keda" in r["type"]]
    federation = prod.inputs("azure-native:managedidentity:FederatedIdentityCredential",
                             "autoscaler-keda-federation")
    assert federation["issuer"] == mock_run.OIDC_ISSUER
    assert federation["subject"] == "system:serviceaccount:kube-system:keda-operator"
    reader = prod.inputs(ROLE, "autoscaler-keda-reader")
    assert reader["principalId"] == mock_run.KEDA_OID
    assert reader["roleDefinitionId"].endswith("b0d8363b-8ddd-447d-831f-62ca05bff136")
    assert reader["scope"].endswith("/prometheus-workspace")
    auth = prod.inputs("kubernetes:keda.sh/v1alpha1:TriggerAuthentication")
    assert auth["spec"]["podIdentity"] == {"provider": "azure-workload",
                                           "identityId": mock_run.KEDA_CLIENT_ID}
    scaled = prod.inputs("kubernetes:keda.sh/v1alpha1:ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "scoring-blue"
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (3, 6)
    assert scaled["maxReplicaCount"] <= prod.inputs(POOL)["maxCount"]  # GPUs for every pod
    triggers = {t["name"]: t for t in scaled["triggers"]}
    assert set(triggers) == {"request-rate", "queue-depth"}
    for trigger in triggers.values():
        meta = trigger["metadata"]
        assert meta["serverAddress"] == mock_run.PROM_ENDPOINT
        assert meta["ignoreNullValues"] == "false"  # a lost scrape holds, never reads as 0
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert trigger["metricType"] == "AverageValue"  # per pod
    assert triggers["request-rate"]["metadata"]["threshold"] == "100"
    assert triggers["queue-depth"]["metadata"]["threshold"] == "32"
    down = scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]


# --- outputs and secrets -------------------------------------------------------------------

def test_outputs(stack_run, runs):
    out = stack_run.outputs
    cfg = stack_file_config(stack_run.stack)
    assert set(out) == {"scoringUri", "swaggerUri", "primaryKey", "secondaryKey", "kubeconfig",
                        "resourceGroupName", "clusterName", "registryLoginServer", "deployments",
                        "modelUri",  # modelStore blob, the default
                        *(["prometheusQueryEndpoint"] if cfg["monitoring"] else [])}
    location = cfg["location"]
    scheme = "https" if cfg["tls"] else "http"
    assert re.fullmatch(rf"{scheme}://aks-gpu-scoring-{stack_run.stack}-[a-z0-9]{{6}}\."
                        rf"{location}\.cloudapp\.azure\.com/score", out["scoringUri"]["value"])
    assert out["swaggerUri"]["value"] == out["scoringUri"]["value"].replace("/score", "/swagger.json")
    assert runs["variant"].outputs["scoringUri"]["value"] == (
        f"http://contoso-scoring.{location}.cloudapp.azure.com/score")
    secret = {name for name, o in out.items() if o["secret"]}
    assert secret == {"primaryKey", "secondaryKey", "kubeconfig"}


def test_secrets_appear_in_no_plain_text_input(stack_run):
    out = stack_run.outputs
    secrets = {out[k]["value"] for k in ("primaryKey", "secondaryKey", "kubeconfig")}
    # The kubeconfig as AKS returned it (base64) must not leak either.
    secrets |= {base64.b64encode(yaml.safe_dump(mock_run.AKS_EXEC_KUBECONFIG).encode()).decode()}
    assert all(len(s) > 20 for s in secrets)
    for r in stack_run.resources:
        for text in plain_strings(r["inputs"]):
            assert not any(s in text for s in secrets), f"a secret in plain text in {r['name']}"
    [c] = stack_run.pod_spec("Deployment")["containers"]
    assert not any("KEY" in e["name"] and e["name"] != Var.API_KEYS_DIR for e in c["env"])


def test_main_is_config_then_components_then_exports():
    source = (REPO / "__main__.py").read_text()
    assert source.index("config.load()") < source.index("ResourceGroup(")
    assert source.index("ScoringService(") < source.index("pulumi.export(")
    assert ".apply(" not in source and "def " not in source
