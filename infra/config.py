"""The stack's configuration: read and checked here, once, before any resource exists.

Every key is described, with its default, in Pulumi.yaml. A bad value stops
`pulumi preview` with a ConfigError that names the key and says what to use
instead, so nothing half-deploys. Components receive the typed, frozen
groups below and never read pulumi.Config themselves.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi

from infra import pins, system_pool
from infra.gpu_sizes import GPUS_PER_VM, gpu_size_problem
from scoring_app import contract, settings

#: The repository root: relative paths in config (modelDir) are resolved from here.
REPO_ROOT = Path(__file__).resolve().parents[1]

UPGRADE_CHANNELS = ("rapid", "stable", "patch", "node-image", "none")
NODE_OS_UPGRADE_CHANNELS = ("None", "Unmanaged", "NodeImage", "SecurityPatch")
CLUSTER_TIERS = ("Free", "Standard", "Premium")
REGISTRY_SKUS = ("Basic", "Standard", "Premium")
GPU_DRIVERS = ("aks", "gpu-operator")
MODEL_STORES = ("blob", "image")
KUBELOGIN_MODES = ("azurecli", "devicecode", "interactive", "spn", "workloadidentity", "msi")
ZONES = ("1", "2", "3")
#: Variables the Deployment sets itself; scoringEnv may not override them.
RESERVED_ENV = frozenset(contract.STACK_VARIABLES)
PRECISIONS = ("fp32", "mixed")  # the container's precisions (scoring_app/settings.py)
#: The container's preprocessings; "" leaves it unset (it refuses an image-tensor model then)
PREPROCESSES = ("", "none", "caffe", "tf", "torch")
ACME_SERVERS = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
#: Domains of documentation and samples (RFC 2606's, and Microsoft's own).
_PLACEHOLDER_DOMAIN = re.compile(r"[@.](example\.(com|net|org)|contoso\.com|fabrikam\.com)$",
                                 re.IGNORECASE)
_CHART_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")
_HOST = re.compile(r"^(?=.{4,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_DNS_LABEL = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_DIGEST_REF = re.compile(r"^[a-z0-9.\-:/_]+@sha256:[0-9a-f]{64}$")
_PINNED_TAG = re.compile(r"^[^@]+:(?!latest$)[\w][\w.\-]{0,127}$")
#: The deployment that today's single-model keys make (Azure ML's first name, too).
DEFAULT_DEPLOYMENT = "blue"
#: What may differ per deployment; each defaults to the top-level key of the same name.
DEPLOYMENT_KEYS = ("modelDir", "prebuiltImage", "modelName", "modelVersion",
                   "replicas", "minReplicas", "maxReplicas", "precision", "modelScan",
                   "preprocess")
#: A model someone else published, per deployment: modelDigest, modelUriScope and modelSizeLimit
#: go with the deployment's own modelUri (they belong to one URI); the rest default as above.
MODEL_URI_KEYS = ("modelUri", "modelDigest", "modelUriScope", "modelSizeLimit")

#: Whose signature a deployment's model must carry: a public key or a certificate chain.
SIGNER_KEYS = ("modelPublicKey", "modelCertificateChain")

#: Payload capture (infra/capture.py's KEYS), per deployment as stack-wide.
CAPTURE_KEYS = ("capture", "captureSamplingRate", "captureImages", "captureRetentionDays")

DEPLOYMENT_KEYS += (*MODEL_URI_KEYS, *SIGNER_KEYS, *CAPTURE_KEYS)


class ConfigError(ValueError):
    """A config value that cannot work; the message starts with the full key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{pulumi.get_project()}:{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class ClusterConfig:
    location: str
    kubernetes_version: str  # a minor (AKS runs its newest patch) or an exact version
    tier: str
    support_plan: str  # AKSLongTermSupport with the Premium tier (AKS requires the pair)
    system_vm_size: str
    system_node_count: int
    zones: tuple[str, ...]
    upgrade_channel: str
    node_os_upgrade_channel: str
    authorized_ip_ranges: tuple[str, ...]
    local_accounts: bool
    admin_group_object_ids: tuple[str, ...]
    kubelogin_mode: str


@dataclass(frozen=True)
class GpuPoolConfig:
    vm_size: str
    min_count: int
    max_count: int
    spot: bool
    spot_max_price: float
    zones: tuple[str, ...]
    driver: str  # "aks": AKS installs it (gpuProfile Install); "gpu-operator": None

    @property
    def max_gpus(self) -> int:
        return GPUS_PER_VM[self.vm_size] * self.max_count


@dataclass(frozen=True)
class ExternalModel:
    """modelUri: a model someone published under a prefix of their own storage account."""
    uri: str  # https://<account>.blob.core.windows.net/<container>/<prefix> (its own manifest)
    sha256: str  # that manifest's sha256: what the pods must get
    scope: str  # ARM id of its container: where the stack grants read, and nowhere wider
    size_limit: str = "4Gi"  # the emptyDir it is fetched into (its size is not known here)

    @property
    def container(self) -> tuple[str, str]:
        """(account, container): storage account names are global, so this names one container."""
        return tuple(_MODEL_URI.fullmatch(self.uri).groups()[:2])


@dataclass(frozen=True)
class ImageConfig:
    registry_sku: str
    prebuilt_image: str | None
    model_dir: Path | None  # None when prebuilt_image is set and the model is in the image
    device_plugin_image: str
    model_store: str = "blob"  # blob: pulled at pod start (infra/model_store.py); image: baked in
    model_size_limit: str = "4Gi"  # the stack's modelSizeLimit: the default for modelUri models
    #: the stack's modelUri: every deployment's model unless it names modelDir or modelUri
    external: ExternalModel | None = None
    model_public_key: str | None = None  # PEM: the stack's default modelPublicKey
    model_certificate_chain: str | None = None  # PEM: its default modelCertificateChain


@dataclass(frozen=True)
class ServiceConfig:
    replicas: int
    model_name: str
    model_version: str
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    graceful_timeout_s: int
    drain_s: int
    pre_stop_s: int
    precision: str  # fp32, or mixed (guarded at warm-up)
    extra_env: tuple[tuple[str, str], ...]
    dns_label: str | None
    source_ranges: tuple[str, ...]
    primary_key_version: str
    secondary_key_version: str
    model_scan: bool = False  # modelScan: each deployment's default
    preprocess: str = ""  # preprocess: each deployment's default ("" unset)
    capture: Any = None  # infra.capture.CaptureConfig: each deployment's default


@dataclass(frozen=True)
class EdgeConfig:
    """How the public endpoint is served: HTTPS through cert-manager, or plain HTTP."""
    tls: bool
    acme_email: str | None  # set whenever tls is
    acme_server: str  # the ACME directory URL
    cert_manager_version: str
    envoy_gateway_version: str
    envoy_proxy_tag: str  # the Envoy image its release line runs (infra/pins.py)
    domain: str | None = None  # a host in an Azure DNS zone the user owns (DNS-01)
    dns_zone_name: str | None = None
    dns_zone_resource_group: str | None = None


@dataclass(frozen=True)
class ScalingConfig:
    """KEDA scales the Deployment between min and max on the service's own load metrics."""
    enabled: bool
    min_replicas: int
    max_replicas: int
    requests_per_replica: float  # /score requests per second one replica should take
    queue_per_replica: int  # images waiting per replica that mean "add one"


@dataclass(frozen=True)
class DeploymentConfig:
    """One named deployment behind the endpoint (Azure ML's word): its model, its scale, and
    its share of the endpoint's traffic. Everything else (keys, edge, pod shape) is shared."""
    name: str
    model_dir: Path | None  # image: baked in (None with prebuilt_image); blob: published
    prebuilt_image: str | None
    model_name: str
    model_version: str
    replicas: int  # fixed replicas (autoscaling off)
    min_replicas: int  # KEDA's range (autoscaling on)
    max_replicas: int
    traffic: int  # percent of the endpoint's requests (the weighted split)
    mirror: int  # percent of the split traffic copied here, answers discarded
    precision: str = "fp32"  # default: the stack key precision
    model_scan: bool = False  # modelscan over the fetched model (default: the stack key)
    #: the preprocessing of an image-tensor model ("": unset; default: the stack key)
    preprocess: str = ""
    #: modelUri (this deployment's, else the stack's unless it names modelDir): model_dir is None
    external: ExternalModel | None = None
    #: PEM: the OpenSSF model signature its pods require, by this key or by a certificate this
    #: chain issued (at most one; default: the stack's, unless the deployment names either)
    model_public_key: str | None = None
    model_certificate_chain: str | None = None
    capture: Any = None  # infra.capture.CaptureConfig (default: the stack's capture keys)

    def max_pods(self, autoscaled: bool) -> int:
        return self.max_replicas if autoscaled else self.replicas


@dataclass(frozen=True)
class StackConfig:
    cluster: ClusterConfig
    gpu: GpuPoolConfig
    image: ImageConfig
    service: ServiceConfig
    edge: EdgeConfig
    scaling: ScalingConfig
    monitoring: bool
    deployments: tuple[DeploymentConfig, ...]  # sorted by name; at least one


def load(cfg: pulumi.Config | None = None) -> StackConfig:
    """Read every key of this project's config, check it, and return it typed."""
    cfg = cfg or pulumi.Config()
    zones = _zones(cfg)
    tier = _choice(cfg, "clusterTier", "Free", CLUSTER_TIERS)
    cluster = ClusterConfig(
        location=_required_str(cfg, "location"),
        kubernetes_version=_kubernetes_version(cfg),
        tier=tier,
        # AKS accepts the Premium tier only together with long-term support, and LTS only
        # on Premium: the two are one choice, so the tier decides the plan.
        support_plan="AKSLongTermSupport" if tier == "Premium" else "KubernetesOfficial",
        system_vm_size=_choice(cfg, "systemVmSize", "Standard_D4s_v5",
                               tuple(system_pool.VM_SIZES)),
        system_node_count=_int(cfg, "systemNodeCount", 1, minimum=1),
        zones=zones,
        upgrade_channel=_choice(cfg, "upgradeChannel", "patch", UPGRADE_CHANNELS),
        node_os_upgrade_channel=_choice(
            cfg, "nodeOsUpgradeChannel", "NodeImage", NODE_OS_UPGRADE_CHANNELS),
        authorized_ip_ranges=_api_ranges(cfg),
        local_accounts=bool(cfg.get_bool("localAccounts") or False),
        admin_group_object_ids=_str_list(cfg, "adminGroupObjectIds"),
        kubelogin_mode=_choice(cfg, "kubeloginMode", "azurecli", KUBELOGIN_MODES),
    )
    gpu = _gpu_pool(cfg, zones)
    image = _image(cfg)
    service = _service(cfg, gpu)
    edge = _edge(cfg, service)
    monitoring = bool(cfg.get_bool("monitoring") or False)
    scaling = _scaling(cfg, gpu, monitoring)
    _system_pool_fits(cluster, edge, scaling, monitoring)
    deployments = _deployments(cfg, gpu, image, service, scaling)
    return StackConfig(cluster=cluster, gpu=gpu, image=image, service=service, edge=edge,
                       scaling=scaling, monitoring=monitoring, deployments=deployments)


def _deployments(cfg: pulumi.Config, gpu: GpuPoolConfig, image: ImageConfig,
                 service: ServiceConfig, scaling: ScalingConfig) -> tuple[DeploymentConfig, ...]:
    """`deployments`, `traffic` and `mirrorTraffic`, checked together. Without `deployments`,
    today's single-model keys make one deployment, `blue`, with all the traffic."""
    raw = cfg.get_object("deployments") or None  # {} (Pulumi.yaml's default): unset
    if raw is None:
        raw, default_traffic = {DEFAULT_DEPLOYMENT: {}}, {DEFAULT_DEPLOYMENT: 100}
    else:
        default_traffic = None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("deployments", "must be a map from deployment name to its settings, "
                          "e.g. {blue: {modelDir: models/resnet50}}")
    for name, entry in raw.items():
        if not contract.is_deployment_name(name):
            raise ConfigError("deployments", f"{name!r} is not a deployment name: use "
                              f"{contract.DEPLOYMENT_NAME_RULE} (a DNS-1123 label)")
        if entry is None:
            raw[name] = entry = {}
        if not isinstance(entry, dict):
            raise ConfigError(f"deployments.{name}", "must be a map of "
                              f"{', '.join(DEPLOYMENT_KEYS)} (or {{}} for the top-level values)")
        unknown = sorted(set(entry) - set(DEPLOYMENT_KEYS))
        if unknown:
            raise ConfigError(f"deployments.{name}", f"{unknown} are not per-deployment keys; "
                              f"use {', '.join(DEPLOYMENT_KEYS)}")
    traffic = _percent_map(cfg, "traffic", raw, default_traffic)
    if sum(traffic.values()) != 100:
        raise ConfigError("traffic", f"{traffic} sums to {sum(traffic.values())}, not 100: "
                          "every request goes to exactly one deployment")
    mirror = _percent_map(cfg, "mirrorTraffic", raw, {})
    both = sorted(name for name, percent in mirror.items() if percent and traffic.get(name))
    if both:
        raise ConfigError("mirrorTraffic", f"{both} also take split traffic: a mirror is a "
                          "shadow of the others' requests, so set its traffic to 0 first")
    out = tuple(_deployment(name, raw[name], traffic.get(name, 0), mirror.get(name, 0),
                            gpu, image, service, scaling) for name in sorted(raw))
    _one_scope_per_container(out, image)
    # Blue and green run side by side during a rollout: all of them must fit at once.
    pods = {d.name: d.max_pods(scaling.enabled) for d in out}
    if sum(pods.values()) > gpu.max_gpus:
        raise ConfigError("deployments", (
            f"together they need up to {sum(pods.values())} GPUs ({pods}, "
            f"{'maxReplicas' if scaling.enabled else 'replicas'}), but the GPU pool has at most "
            f"{gpu.max_gpus} ({gpu.max_count} x {gpu.vm_size}, {GPUS_PER_VM[gpu.vm_size]} GPU "
            "per VM); raise gpuMaxCount or lower a deployment's replicas"))
    return out


def _percent_map(cfg: pulumi.Config, key: str, deployments: dict,
                 default: dict | None) -> dict[str, int]:
    raw = cfg.get_object(key)
    if raw is None or raw == {}:
        if default is None:
            raise ConfigError(key, "is required with deployments: the percent each deployment "
                              "takes, summing to 100 (e.g. {blue: 100, green: 0})")
        return dict(default)
    if not isinstance(raw, dict):
        raise ConfigError(key, "must be a map from deployment name to percent, e.g. {blue: 90, "
                          "green: 10}")
    unknown = sorted(set(raw) - set(deployments))
    if unknown:
        raise ConfigError(key, f"{unknown} are not deployments (have: "
                          f"{', '.join(sorted(deployments))})")
    out = {}
    for name, percent in raw.items():
        value = _whole(percent)
        if value is None or not 0 <= value <= 100:
            raise ConfigError(key, f"{name}: {percent!r} must be a whole percent, 0 to 100")
        out[name] = value
    return out


def _whole(value) -> int | None:
    """An int, or the digits `pulumi config set --path` may store as a string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _deployment(name: str, entry: dict, traffic: int, mirror: int, gpu: GpuPoolConfig,
                image: ImageConfig, service: ServiceConfig,
                scaling: ScalingConfig) -> DeploymentConfig:
    key = f"deployments.{name}"

    def number(field: str, default: int, minimum: int) -> int:
        raw = entry.get(field, default)
        value = _whole(raw)
        if value is None or value < minimum:
            raise ConfigError(f"{key}.{field}", f"{raw!r} must be a whole number >= {minimum}")
        return value
    replicas = number("replicas", service.replicas, 0)
    low = number("minReplicas", scaling.min_replicas, 1)
    high = number("maxReplicas", scaling.max_replicas, 1)
    if low > high:
        raise ConfigError(f"{key}.minReplicas", f"{low} is greater than maxReplicas ({high})")
    prebuilt, model_dir, external = _deployment_model(key, entry, image)
    precision = entry.get("precision", service.precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"{key}.precision", f"{precision!r} is not one of "
                          f"{', '.join(PRECISIONS)}")
    preprocess = _preprocess(f"{key}.preprocess", entry.get("preprocess", service.preprocess))
    scan_key = f"{key}.modelScan" if "modelScan" in entry else "modelScan"
    model_scan = _flag(scan_key, entry.get("modelScan", service.model_scan))
    if model_scan and image.model_store != "blob":
        raise ConfigError(scan_key, "needs modelStore blob (the init container "
                          "scans the model it fetched; a baked-in model is never fetched)")
    return DeploymentConfig(
        name=name, model_dir=model_dir, prebuilt_image=prebuilt,
        model_name=str(entry.get("modelName") or service.model_name),
        model_version=str(entry.get("modelVersion") or service.model_version),
        replicas=replicas, min_replicas=low, max_replicas=high, traffic=traffic, mirror=mirror,
        precision=precision, model_scan=model_scan, external=external, preprocess=preprocess,
        capture=_deployment_capture(key, entry, service, image),
        **_deployment_signer(key, entry, image))


def _preprocess(key: str, value) -> str:
    """The preprocessing of a model whose input is image pixels; empty leaves it unset."""
    text = "" if value is None else str(value).strip()
    if text not in PREPROCESSES:
        raise ConfigError(key, f"{text!r} is not one of {', '.join(PREPROCESSES[1:])} (or empty "
                          "for a model that takes encoded images, as prepare_model's do)")
    return text


def _stack_capture(cfg: pulumi.Config):
    from infra import capture
    raw = {"capture": cfg.get("capture"), "captureSamplingRate": cfg.get("captureSamplingRate"),
           "captureImages": cfg.get("captureImages"),
           "captureRetentionDays": cfg.get("captureRetentionDays")}
    return capture.parse("", {k: v for k, v in raw.items() if v is not None},
                         capture.CaptureConfig(), _flag)


def _deployment_capture(key: str, entry: dict, service: ServiceConfig, image: ImageConfig):
    """The stack's capture keys, overridden by the deployment's; capture writes with the
    pods' identity into the stack's own account, which only modelStore blob has."""
    from infra import capture
    out = capture.parse(f"{key}.", entry, service.capture or capture.CaptureConfig(), _flag)
    if out.enabled and image.model_store != "blob":
        raise ConfigError(f"{key}.capture" if "capture" in entry else "capture",
                          "needs modelStore blob (the pods write captures with the workload "
                          "identity and storage account that modelStore blob declares)")
    return out


def _deployment_signer(key: str, entry: dict, image: ImageConfig) -> dict:
    """A deployment that names either signer key has its own signer (an empty value: none);
    one that names neither has the stack's."""
    if not any(k in entry for k in SIGNER_KEYS):
        return {"model_public_key": image.model_public_key,
                "model_certificate_chain": image.model_certificate_chain}
    return _signer(f"{key}.", entry.get("modelPublicKey"), entry.get("modelCertificateChain"),
                   image.model_store)


def _deployment_model(key: str, entry: dict, image: ImageConfig,
                      ) -> tuple[str | None, Path | None, ExternalModel | None]:
    """A deployment's model and the prebuilt image that serves it: its own modelDir or
    modelUri, else the stack's (the stack's modelUri first, as the stack keys always had it)."""
    store = image.model_store
    if "modelDir" in entry and "modelUri" in entry:
        raise ConfigError(f"{key}.modelUri", "cannot be set with modelDir in the same "
                          "deployment: name the model the stack publishes (modelDir) or one "
                          "published elsewhere (modelUri), not both")
    loose = [k for k in MODEL_URI_KEYS[1:] if k in entry and "modelUri" not in entry]
    if loose:
        raise ConfigError(f"{key}.{loose[0]}", f"goes with {key}.modelUri (a digest and a "
                          "scope belong to one model): set modelUri in this deployment too, "
                          "or remove it")
    if "modelUri" in entry:
        external = _external_model(f"{key}.", {k: entry.get(k) for k in MODEL_URI_KEYS},
                                   store, image.model_size_limit)
    else:
        external = None if "modelDir" in entry else image.external
    if external:  # published elsewhere: the pods fetch it; an image only runs the app
        prebuilt = entry.get("prebuiltImage") or image.prebuilt_image
        if prebuilt:
            _model_source(f"{key}.", prebuilt, None, "image")
        return prebuilt or None, None, external
    if "modelDir" in entry or "prebuiltImage" in entry:
        return (*_model_source(
            f"{key}.", entry.get("prebuiltImage") or (image.prebuilt_image if store == "blob"
                                                      and "prebuiltImage" not in entry else None),
            entry.get("modelDir") or (image.model_dir and str(image.model_dir)), store), None)
    prebuilt, model_dir = image.prebuilt_image, image.model_dir
    if model_dir is None and (store == "blob" or not prebuilt):
        prebuilt, model_dir = _model_source(f"{key}.", prebuilt, None, store)
    return prebuilt, model_dir, None


def _one_scope_per_container(deployments: tuple[DeploymentConfig, ...],
                             image: ImageConfig) -> None:
    """Deployments that read one container name one resource id for it: the stack grants
    read once per container, so two spellings would be two grants of the same thing."""
    first: dict[tuple[str, str], DeploymentConfig] = {}
    for d in deployments:
        if not d.external:
            continue
        seen = first.setdefault(d.external.container, d)
        if seen.external.scope != d.external.scope:
            key = "modelUriScope" if d.external is image.external else (
                f"deployments.{d.name}.modelUriScope")
            raise ConfigError(key, f"{d.external.scope!r} is not the {seen.external.scope!r} that "
                              f"{seen.name} names for the same container "
                              f"{'/'.join(d.external.container)}: use one resource id for it")


def _flag(key: str, value) -> bool:
    """true or false, or the string `pulumi config set --path` may store for one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(key, f"{value!r} must be true or false")


def _system_pool_fits(cluster: ClusterConfig, edge: EdgeConfig, scaling: ScalingConfig,
                      monitoring: bool) -> None:
    """Everything that is not a scoring pod runs on the system pool: it must fit there."""
    enabled = {name for name, on in (("monitoring", monitoring), ("autoscaling", scaling.enabled),
                                     ("tls", edge.tls)) if on}
    problem = system_pool.shortfall(cluster.system_vm_size, cluster.system_node_count, enabled)
    if problem:
        raise ConfigError("systemVmSize", problem)


def _api_ranges(cfg: pulumi.Config) -> tuple[str, ...]:
    """The API server's allowed ranges: public addresses only. A documentation range
    (203.0.113.0/24, the old placeholder), a private or a shared one would lock everyone
    out, since the API server is reached over the internet from the deployer's egress."""
    ranges = _cidrs(cfg, "apiAuthorizedIpRanges", required=True)
    for value in ranges:
        network = ipaddress.ip_network(value)
        if not network.is_global:
            raise ConfigError("apiAuthorizedIpRanges", (
                f"{value!r} is a documentation, private or otherwise non-public range, so "
                "nothing could reach the Kubernetes API: put in your egress address, e.g. "
                "`pulumi config set --path 'apiAuthorizedIpRanges[0]' "
                "\"$(curl -s https://ifconfig.me)/32\"`"))
    return ranges


def _kubernetes_version(cfg: pulumi.Config) -> str:
    """The cluster's Kubernetes version: the newest minor every pinned release supports
    unless the stack names one (AKS's own default may be newer than the pins support)."""
    version = cfg.get("kubernetesVersion") or pins.DEFAULT_KUBERNETES_MINOR
    problem = pins.kubernetes_problem(version)
    if problem:
        raise ConfigError("kubernetesVersion", problem)
    return version


def _edge(cfg: pulumi.Config, service: ServiceConfig) -> EdgeConfig:
    tls = cfg.get_bool("tls")
    tls = True if tls is None else tls  # HTTPS unless a stack says otherwise
    email = cfg.get("acmeEmail") or None
    if tls and not email:
        raise ConfigError("acmeEmail", "is required when tls is true: Let's Encrypt sends expiry "
                          "warnings there (`pulumi config set acmeEmail you@example.com`), "
                          "or set tls false for plain HTTP")
    if email and not _EMAIL.match(email):
        raise ConfigError("acmeEmail", f"{email!r} is not an e-mail address")
    if email and _PLACEHOLDER_DOMAIN.search(email):
        raise ConfigError("acmeEmail", f"{email!r} is a documentation domain: nobody reads it "
                          "(and Let's Encrypt refuses example.com); put your operations mailbox")
    version = cfg.get("certManagerVersion") or pins.BY_KEY["certManagerVersion"].version
    if not _CHART_VERSION.match(version):
        raise ConfigError("certManagerVersion", f"{version!r} must be an exact chart version "
                          "such as v1.21.1 (no ranges: the chart is pinned)")
    server = _choice(cfg, "acmeServer", "production", tuple(ACME_SERVERS))
    gateway = cfg.get("envoyGatewayVersion") or pins.BY_KEY["envoyGatewayVersion"].version
    if not _CHART_VERSION.match(gateway):
        raise ConfigError("envoyGatewayVersion", f"{gateway!r} must be an exact chart version "
                          "such as v1.9.0 (no ranges: the chart is pinned)")
    line = "v" + ".".join(gateway.lstrip("v").split(".")[:2])
    if line not in pins.ENVOY_PROXY_TAGS:
        raise ConfigError("envoyGatewayVersion", f"{gateway} has no Envoy proxy tag in "
                          "infra/pins.py ENVOY_PROXY_TAGS: add the one its compatibility "
                          "matrix names (the proxies are pulled through the stack's registry)")
    domain, zone, zone_group = _domain(cfg, tls)
    if tls and service.source_ranges and not domain:
        raise ConfigError("loadBalancerSourceRanges", "must be [] when tls is true without "
                          "domain: Let's Encrypt's HTTP-01 check comes from addresses it does "
                          "not publish, so a source filter would stop the certificate from being "
                          "issued (with domain, DNS-01 needs no inbound path)")
    return EdgeConfig(tls=tls, acme_email=email, acme_server=ACME_SERVERS[server],
                      cert_manager_version=version, envoy_gateway_version=gateway,
                      envoy_proxy_tag=pins.ENVOY_PROXY_TAGS[line],
                      domain=domain, dns_zone_name=zone, dns_zone_resource_group=zone_group)


def _domain(cfg: pulumi.Config, tls: bool) -> tuple[str | None, str | None, str | None]:
    """`domain` in a zone the user owns: a CNAME to the cloudapp name, and DNS-01."""
    domain = (cfg.get("domain") or "").lower().rstrip(".") or None
    if not domain:
        return None, None, None
    if not _HOST.match(domain):
        raise ConfigError("domain", f"{domain!r} is not a host name (e.g. scoring.contoso.com)")
    if not tls:
        raise ConfigError("domain", "needs tls true: the domain exists to get a certificate "
                          "that does not depend on the shared cloudapp.azure.com name")
    zone = (cfg.get("dnsZoneName") or "").lower().rstrip(".")
    group = cfg.get("dnsZoneResourceGroup") or ""
    if not zone:
        raise ConfigError("dnsZoneName", "is required with domain: the Azure DNS zone that "
                          "holds it (e.g. contoso.com)")
    if not group:
        raise ConfigError("dnsZoneResourceGroup", "is required with domain: the resource group "
                          f"of the zone {zone}")
    if not domain.endswith("." + zone):
        raise ConfigError("domain", f"{domain!r} is not below dnsZoneName {zone!r} (a CNAME "
                          "cannot sit at the zone apex either)")
    return domain, zone, group


def _scaling(cfg: pulumi.Config, gpu: GpuPoolConfig, monitoring: bool) -> ScalingConfig:
    enabled = bool(cfg.get_bool("autoscaling") or False)
    if enabled and not monitoring:
        raise ConfigError("autoscaling", "needs monitoring true: KEDA reads the service's load "
                          "from Azure Monitor managed Prometheus")
    # min 1: with no pod there is no load metric, so nothing would ever scale it up again.
    low = _int(cfg, "minReplicas", 1, minimum=1)
    high = _int(cfg, "maxReplicas", 1, minimum=1)
    if low > high:
        raise ConfigError("minReplicas", f"{low} is greater than maxReplicas ({high})")
    if enabled and high > gpu.max_gpus:
        raise ConfigError("maxReplicas", f"{high} replicas need {high} GPUs, but the GPU pool "
                          f"has at most {gpu.max_gpus} ({gpu.max_count} x {gpu.vm_size}); "
                          "raise gpuMaxCount or lower maxReplicas")
    rate = _float(cfg, "scaleRequestsPerReplica")
    rate = 100.0 if rate is None else rate
    if rate <= 0:
        raise ConfigError("scaleRequestsPerReplica", f"{rate} must be > 0")
    return ScalingConfig(enabled=enabled, min_replicas=low, max_replicas=high,
                         requests_per_replica=rate,
                         queue_per_replica=_int(cfg, "scaleQueuePerReplica", 32, minimum=1))


def _gpu_pool(cfg: pulumi.Config, zones: tuple[str, ...]) -> GpuPoolConfig:
    vm_size = cfg.get("gpuVmSize") or "Standard_NC4as_T4_v3"
    problem = gpu_size_problem(vm_size)
    if problem:
        raise ConfigError("gpuVmSize", problem)
    min_count = _int(cfg, "gpuMinCount", 1, minimum=0)
    max_count = _int(cfg, "gpuMaxCount", 1, minimum=1)
    if min_count > max_count:
        raise ConfigError("gpuMinCount", f"{min_count} is greater than gpuMaxCount ({max_count})")
    spot = bool(cfg.get_bool("gpuSpot") or False)
    price = _float(cfg, "gpuSpotMaxPrice")
    if price is not None and price != -1 and price <= 0:
        raise ConfigError("gpuSpotMaxPrice", f"{price} must be -1 (pay up to on-demand) or > 0")
    return GpuPoolConfig(
        vm_size=vm_size, min_count=min_count, max_count=max_count, spot=spot,
        spot_max_price=-1.0 if price is None else price, zones=zones,
        driver=_choice(cfg, "gpuDriver", "aks", GPU_DRIVERS))


def _model_source(prefix: str, prebuilt: str | None, raw_dir: str | None,
                  model_store: str = "image") -> tuple[str | None, Path | None]:
    """A prebuilt image pinned by digest, and the SavedModel directory: baked into the image
    (modelStore image; none with a prebuilt image) or published as data (blob; always)."""
    if prebuilt and (not isinstance(prebuilt, str) or not _DIGEST_REF.match(prebuilt)):
        raise ConfigError(f"{prefix}prebuiltImage", f"{prebuilt!r} must be pinned by digest: "
                          "<registry>/<repo>@sha256:<64 hex>")
    if prebuilt and model_store == "image":
        return prebuilt, None
    model_dir = (REPO_ROOT / str(raw_dir or "models/resnet50")).resolve()
    if not (model_dir / "saved_model.pb").is_file():
        raise ConfigError(f"{prefix}modelDir", f"{str(model_dir)!r} holds no saved_model.pb; "
                          "point it at a TensorFlow SavedModel directory, or set prebuiltImage")
    return prebuilt or None, model_dir


def _image(cfg: pulumi.Config) -> ImageConfig:
    prebuilt = cfg.get("prebuiltImage") or None
    model_store = _choice(cfg, "modelStore", "blob", MODEL_STORES)
    if prebuilt and not _DIGEST_REF.match(prebuilt):
        raise ConfigError("prebuiltImage", f"{prebuilt!r} must be pinned by digest: "
                          "<registry>/<repo>@sha256:<64 hex>")
    size = cfg.get("modelSizeLimit") or "4Gi"
    external = None
    if cfg.get("modelUri"):  # the stack's model is someone else's: modelDir is not published
        external = _external_model("", {"modelUri": cfg.get("modelUri"),
                                        "modelDigest": cfg.get("modelDigest"),
                                        "modelUriScope": cfg.get("modelUriScope"),
                                        "modelSizeLimit": size}, model_store, size)
        model_dir = None
    elif cfg.get_object("deployments"):
        # Each deployment names its own model; the top-level keys are only defaults, and a
        # missing default directory must not fail a stack whose deployments all set theirs.
        model_dir = None
        if cfg.get("modelDir") or (prebuilt and model_store == "image"):
            prebuilt, model_dir = _model_source("", prebuilt, cfg.get("modelDir"), model_store)
    else:
        prebuilt, model_dir = _model_source("", prebuilt, cfg.get("modelDir"), model_store)
    if not _QUANTITY.match(size):
        raise ConfigError("modelSizeLimit", f"{size!r} is not a Kubernetes quantity, e.g. 4Gi")
    plugin = cfg.get("devicePluginImage") or pins.BY_KEY["devicePluginImage"].version
    if not (_PINNED_TAG.match(plugin) or _DIGEST_REF.match(plugin)):
        raise ConfigError("devicePluginImage", f"{plugin!r} must carry a pinned version tag "
                          "(not latest) or a digest")
    return ImageConfig(registry_sku=_choice(cfg, "registrySku", "Basic", REGISTRY_SKUS),
                       prebuilt_image=prebuilt, model_dir=model_dir,
                       device_plugin_image=plugin, model_store=model_store, external=external,
                       model_size_limit=size, **_signer(
                           "", cfg.get("modelPublicKey"), cfg.get("modelCertificateChain"),
                           model_store))


# The fetch's own rule (scoring_app/model_store/fetch.py, parse_uri) for the public cloud: the
# blob endpoint, then path segments of plain names, none of them '.' or '..' (an HTTP client
# would resolve them into another container than the one granted), no user part, query or
# fragment. fullmatch: '$' would also accept a trailing newline.
_SEGMENT = r"(?!\.\.?(?:/|$))[A-Za-z0-9._-]{1,255}"
_MODEL_URI = re.compile(r"https://([a-z0-9]{3,24})\.blob\.core\.windows\.net/"
                        r"([a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9]))/"
                        rf"((?:{_SEGMENT}/)*{_SEGMENT})/?")
_CONTAINER_ID = re.compile(r"^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/providers/"
                           r"Microsoft\.Storage/storageAccounts/([a-z0-9]{3,24})/blobServices/default/"
                           r"containers/([a-z0-9-]{3,63})$")


def _signer(prefix: str, key, chain, model_store: str) -> dict:
    """modelPublicKey or modelCertificateChain at `prefix` (the stack's, or a deployment's),
    checked: PEM text, at most one, modelStore blob. Empty means no signature check."""
    found = {}
    for name, value, kind in (("modelPublicKey", key, "PUBLIC KEY"),
                              ("modelCertificateChain", chain, "CERTIFICATE")):
        pem = str(value or "").strip() or None
        if pem and model_store != "blob":
            raise ConfigError(f"{prefix}{name}", "needs modelStore blob (the fetch checks the "
                              "signature)")
        if pem and not (pem.startswith(f"-----BEGIN {kind}-----")
                        and pem.endswith(f"-----END {kind}-----")):
            raise ConfigError(f"{prefix}{name}", f"must be PEM (-----BEGIN {kind}-----"
                              f"{', one or more' if kind == 'CERTIFICATE' else ''})")
        found[name] = pem
    if found["modelPublicKey"] and found["modelCertificateChain"]:
        raise ConfigError(f"{prefix}modelCertificateChain", f"cannot be set with {prefix}"
                          "modelPublicKey: a model's signature is checked with a key or with a "
                          "certificate chain, not both")
    return {"model_public_key": found["modelPublicKey"],
            "model_certificate_chain": found["modelCertificateChain"]}


def _external_model(prefix: str, raw: dict, model_store: str, default_size: str) -> ExternalModel:
    """modelUri and the keys that go with it, at `prefix` ("" for the stack's, or
    "deployments.<name>."): what to fetch, the digest it must have, and where read is granted."""
    def text(name: str) -> str:
        value = raw.get(name)
        return "" if value is None else str(value)
    uri = text("modelUri")
    if model_store != "blob":
        raise ConfigError(f"{prefix}modelUri", "needs modelStore blob (the pods fetch it; with "
                          "modelStore image every model is baked into an image from its modelDir)")
    match = _MODEL_URI.fullmatch(uri)
    if not match:  # a query may be a SAS token, a user part a password: never repeat them
        shown = uri.split("?", 1)[0] + ("?<query not shown>" if "?" in uri else "")
        if "@" in shown:
            shown = "https://<user part not shown>@" + shown.rsplit("@", 1)[1]
        raise ConfigError(f"{prefix}modelUri", f"{shown!r} must be https://<account>.blob.core."
                          "windows.net/<container>/<prefix>: path segments of letters, digits, "
                          "'.', '_' and '-', none of them '.' or '..'; no user part, no fragment, "
                          "no query (no SAS: the pods use their identity)")
    digest = text("modelDigest")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ConfigError(f"{prefix}modelDigest", f"with {prefix}modelUri, the sha256 of its "
                          "manifest.json (64 lowercase hex; scoring_tools.publish_model prints it)")
    scope = text("modelUriScope")
    scope_match = _CONTAINER_ID.match(scope)
    if not scope_match or scope_match.groups() != match.groups()[:2]:
        raise ConfigError(f"{prefix}modelUriScope", f"with {prefix}modelUri, the resource id of "
                          f"its container (/subscriptions/<id>/resourceGroups/<group>/providers/"
                          f"Microsoft.Storage/storageAccounts/{match.group(1)}/blobServices/default/"
                          f"containers/{match.group(2)}): the stack grants read there and nowhere "
                          "wider")
    size = text("modelSizeLimit") or default_size
    if not _QUANTITY.match(size):
        raise ConfigError(f"{prefix}modelSizeLimit", f"{size!r} is not a Kubernetes quantity, "
                          "e.g. 4Gi")
    return ExternalModel(uri=uri, sha256=digest, scope=scope, size_limit=size)


def _service(cfg: pulumi.Config, gpu: GpuPoolConfig) -> ServiceConfig:
    replicas = _int(cfg, "replicas", 1, minimum=0)  # 0: dev pool scales to zero
    if replicas > gpu.max_gpus:
        raise ConfigError("replicas", f"{replicas} replicas need {replicas} GPUs, but the GPU pool "
                          f"has at most {gpu.max_gpus} ({gpu.max_count} x {gpu.vm_size}); "
                          "raise gpuMaxCount or lower replicas")
    dns_label = cfg.get("dnsLabel") or None
    if dns_label and not _DNS_LABEL.match(dns_label):
        raise ConfigError("dnsLabel", f"{dns_label!r} must be 3-63 characters of a-z, 0-9 and "
                          "'-', starting with a letter")
    extra = _scoring_env(cfg)
    return ServiceConfig(
        replicas=replicas,
        model_name=cfg.get("modelName") or "resnet50",
        model_version=cfg.get("modelVersion") or "1",
        cpu_request=_quantity(cfg, "cpuRequest", "2"),
        cpu_limit=_quantity(cfg, "cpuLimit", "3"),
        memory_request=_quantity(cfg, "memoryRequest", "8Gi"),
        memory_limit=_quantity(cfg, "memoryLimit", "8Gi"),
        graceful_timeout_s=_int(cfg, "gracefulTimeoutSeconds", 30, minimum=1),
        drain_s=_int(cfg, "drainSeconds", 5, minimum=0),
        pre_stop_s=_int(cfg, "preStopSeconds", 10, minimum=0),
        precision=_choice(cfg, "precision", "fp32", PRECISIONS),
        extra_env=extra,
        dns_label=dns_label,
        source_ranges=_cidrs(cfg, "loadBalancerSourceRanges"),
        primary_key_version=cfg.get("primaryKeyVersion") or "1",
        secondary_key_version=cfg.get("secondaryKeyVersion") or "1",
        model_scan=bool(cfg.get_bool("modelScan") or False),
        capture=_stack_capture(cfg),
        preprocess=_preprocess("preprocess", cfg.get("preprocess")),
    )


def _scoring_env(cfg: pulumi.Config) -> tuple[tuple[str, str], ...]:
    """`NAME=value` strings for contract variables the stack leaves at their defaults."""
    pairs = []
    for item in _str_list(cfg, "scoringEnv"):
        name, sep, value = item.partition("=")
        if not sep or not name.startswith(contract.PREFIX) or name in RESERVED_ENV:
            raise ConfigError("scoringEnv", f"{item!r}: use NAME=value with a {contract.PREFIX}* name the "
                              f"stack does not set itself ({', '.join(sorted(RESERVED_ENV))})")
        pairs.append((name, value))
    try:  # the container's own parser: a value it would refuse at start fails the preview
        settings.load(dict(pairs))
    except settings.SettingsError as exc:
        raise ConfigError("scoringEnv", str(exc)) from None
    return tuple(pairs)


def _required_str(cfg: pulumi.Config, key: str) -> str:
    value = cfg.get(key)
    if not value:
        raise ConfigError(key, "is required (e.g. `pulumi config set location westeurope`)")
    return value


def _choice(cfg: pulumi.Config, key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = cfg.get(key) or default
    if value not in allowed:
        raise ConfigError(key, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _int(cfg: pulumi.Config, key: str, default: int, minimum: int) -> int:
    value = cfg.get_int(key)
    value = default if value is None else value
    if value < minimum:
        raise ConfigError(key, f"{value} must be >= {minimum}")
    return value


def _float(cfg: pulumi.Config, key: str) -> float | None:
    """A number kept as a string in config (Pulumi.yaml's schema has no float type)."""
    value = cfg.get(key)
    try:
        return None if value in (None, "") else float(value)
    except ValueError:
        raise ConfigError(key, f"{value!r} is not a number") from None


def _quantity(cfg: pulumi.Config, key: str, default: str) -> str:
    value = cfg.get(key) or default
    if not _QUANTITY.match(value):
        raise ConfigError(key, f"{value!r} is not a Kubernetes quantity (e.g. 2, 500m, 8Gi)")
    return value


def _str_list(cfg: pulumi.Config, key: str) -> tuple[str, ...]:
    value = cfg.get_object(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, "must be a list of strings")
    return tuple(value)


def _zones(cfg: pulumi.Config) -> tuple[str, ...]:
    zones = tuple(str(z) for z in (cfg.get_object("zones") or []))
    bad = [z for z in zones if z not in ZONES]
    if bad:
        raise ConfigError("zones", f"{bad} are not availability zones (use a subset of 1, 2, 3)")
    return zones


def _cidrs(cfg: pulumi.Config, key: str, required: bool = False) -> tuple[str, ...]:
    """A list of IPv4/IPv6 ranges, each normalised by the ipaddress module."""
    raw = cfg.get_object(key)
    if raw is None and required:
        raise ConfigError(key, "is required: the CIDR ranges allowed to reach the Kubernetes API "
                          "(your egress IP as a.b.c.d/32); [] leaves it open")
    ranges = _str_list(cfg, key) if raw is not None else ()
    out = []
    for value in ranges:
        try:
            out.append(str(ipaddress.ip_network(value, strict=True)))
        except ValueError as err:
            raise ConfigError(key, f"{value!r} is not an IP range: {err}") from None
    return tuple(out)
