"""The typed, frozen groups components receive; none of them reads pulumi.Config."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.config.capture import CaptureConfig
from infra.config.model_source import External, ExternalModel, ModelSource
from infra.gpu_sizes import GPUS_PER_VM


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
class ImageConfig:
    registry_sku: str
    prebuilt_image: str | None  # the stack's prebuiltImage: each deployment's default
    #: the stack keys' model: each deployment's default (None: the deployments name theirs)
    source: ModelSource | None
    device_plugin_image: str
    model_store: str  # blob: pulled at pod start (infra/model_store.py); image: baked in
    model_size_limit: str  # the stack's modelSizeLimit: the default for modelUri models
    model_public_key: str | None  # PEM: the stack's default modelPublicKey
    model_certificate_chain: str | None  # PEM: its default modelCertificateChain

    @property
    def external(self) -> ExternalModel | None:
        """The stack's modelUri: every deployment's model unless it names modelDir or modelUri."""
        return self.source.model if isinstance(self.source, External) else None


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
    model_scan: bool  # modelScan: each deployment's default
    preprocess: str  # each deployment's default ("" unset)
    capture: CaptureConfig  # each deployment's default


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
    its share of the endpoint's traffic. Everything else (keys, edge, pod shape) is shared.
    Each setting defaults to the stack key of the same name."""
    name: str
    source: ModelSource
    model_name: str
    model_version: str
    replicas: int  # fixed replicas (autoscaling off)
    min_replicas: int  # KEDA's range (autoscaling on)
    max_replicas: int
    traffic: int  # percent of the endpoint's requests (the weighted split)
    mirror: int  # percent of the split traffic copied here, answers discarded
    precision: str
    model_scan: bool  # modelscan over the fetched model
    preprocess: str  # for an image-tensor model ("": unset)
    #: PEM: the OpenSSF model signature its pods require, by this key or by a certificate this
    #: chain issued (at most one; the stack's unless the deployment names either)
    model_public_key: str | None
    model_certificate_chain: str | None
    capture: CaptureConfig

    @property
    def prebuilt_image(self) -> str | None:
        return self.source.prebuilt_image

    @property
    def model_dir(self) -> Path | None:
        """The SavedModel directory the stack builds in or publishes (None: not the stack's)."""
        return getattr(self.source, "model_dir", None)

    @property
    def external(self) -> ExternalModel | None:
        return self.source.model if isinstance(self.source, External) else None

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
