"""The cluster's keys: AKS, its access, the GPU pool, and whether the system pool holds the rest."""
from __future__ import annotations

import ipaddress

import pulumi

from infra import pins, system_pool
from infra.config import checks
from infra.config.errors import ConfigError
from infra.config.types import ClusterConfig, EdgeConfig, GpuPoolConfig, ScalingConfig
from infra.gpu_sizes import gpu_size_problem

UPGRADE_CHANNELS = ("rapid", "stable", "patch", "node-image", "none")
NODE_OS_UPGRADE_CHANNELS = ("None", "Unmanaged", "NodeImage", "SecurityPatch")
CLUSTER_TIERS = ("Free", "Standard", "Premium")
GPU_DRIVERS = ("aks", "gpu-operator")
KUBELOGIN_MODES = ("azurecli", "devicecode", "interactive", "spn", "workloadidentity", "msi")
ZONES = ("1", "2", "3")


def cluster(cfg: pulumi.Config, zones: tuple[str, ...]) -> ClusterConfig:
    tier = checks.choice(cfg, "clusterTier", CLUSTER_TIERS)
    return ClusterConfig(
        location=_location(cfg),
        kubernetes_version=_kubernetes_version(cfg),
        tier=tier,
        # AKS accepts the Premium tier only together with long-term support, and LTS only
        # on Premium: the two are one choice, so the tier decides the plan.
        support_plan="AKSLongTermSupport" if tier == "Premium" else "KubernetesOfficial",
        system_vm_size=checks.choice(cfg, "systemVmSize", tuple(system_pool.VM_SIZES)),
        system_node_count=checks.integer(cfg, "systemNodeCount", minimum=1),
        zones=zones,
        upgrade_channel=checks.choice(cfg, "upgradeChannel", UPGRADE_CHANNELS),
        node_os_upgrade_channel=checks.choice(cfg, "nodeOsUpgradeChannel",
                                              NODE_OS_UPGRADE_CHANNELS),
        authorized_ip_ranges=_api_ranges(cfg),
        local_accounts=checks.boolean(cfg, "localAccounts"),
        admin_group_object_ids=checks.str_list(cfg, "adminGroupObjectIds"),
        kubelogin_mode=checks.choice(cfg, "kubeloginMode", KUBELOGIN_MODES),
    )


def zones(cfg: pulumi.Config) -> tuple[str, ...]:
    found = tuple(str(z) for z in (checks.obj(cfg, "zones") or []))
    bad = [z for z in found if z not in ZONES]
    if bad:
        raise ConfigError("zones", f"{bad} are not availability zones (use a subset of 1, 2, 3)")
    return found


def gpu_pool(cfg: pulumi.Config, zones: tuple[str, ...]) -> GpuPoolConfig:
    vm_size = checks.text(cfg, "gpuVmSize")
    problem = gpu_size_problem(vm_size)
    if problem:
        raise ConfigError("gpuVmSize", problem)
    min_count = checks.integer(cfg, "gpuMinCount", minimum=0)
    max_count = checks.integer(cfg, "gpuMaxCount", minimum=1)
    checks.not_above("gpuMinCount", min_count, max_count, "gpuMaxCount")
    price = checks.number(cfg, "gpuSpotMaxPrice")
    if price != -1 and price <= 0:
        raise ConfigError("gpuSpotMaxPrice", f"{price} must be -1 (pay up to on-demand) or > 0")
    return GpuPoolConfig(
        vm_size=vm_size, min_count=min_count, max_count=max_count,
        spot=checks.boolean(cfg, "gpuSpot"), spot_max_price=price, zones=zones,
        driver=checks.choice(cfg, "gpuDriver", GPU_DRIVERS))


def system_pool_fits(cluster: ClusterConfig, edge: EdgeConfig, scaling: ScalingConfig,
                     monitoring: bool) -> None:
    """Everything that is not a scoring pod runs on the system pool: it must fit there."""
    enabled = {name for name, on in (("monitoring", monitoring), ("autoscaling", scaling.enabled),
                                     ("tls", edge.tls)) if on}
    problem = system_pool.shortfall(cluster.system_vm_size, cluster.system_node_count, enabled)
    if problem:
        raise ConfigError("systemVmSize", problem)


def _location(cfg: pulumi.Config) -> str:
    value = cfg.get("location")
    if not value:
        raise ConfigError("location", "is required (e.g. `pulumi config set location westeurope`)")
    return value


def _api_ranges(cfg: pulumi.Config) -> tuple[str, ...]:
    """The API server's allowed ranges: public addresses only. A documentation range
    (203.0.113.0/24, the old placeholder), a private or a shared one would lock everyone
    out, since the API server is reached over the internet from the deployer's egress."""
    if cfg.get_object("apiAuthorizedIpRanges") is None:
        raise ConfigError("apiAuthorizedIpRanges", "is required: the CIDR ranges allowed to reach "
                          "the Kubernetes API (your egress IP as a.b.c.d/32); [] leaves it open")
    ranges = checks.cidrs("apiAuthorizedIpRanges", checks.str_list(cfg, "apiAuthorizedIpRanges"))
    for value in ranges:
        if not ipaddress.ip_network(value).is_global:
            raise ConfigError("apiAuthorizedIpRanges", (
                f"{value!r} is a documentation, private or otherwise non-public range, so "
                "nothing could reach the Kubernetes API: put in your egress address, e.g. "
                "`pulumi config set --path 'apiAuthorizedIpRanges[0]' "
                "\"$(curl -s https://ifconfig.me)/32\"`"))
    return ranges


def _kubernetes_version(cfg: pulumi.Config) -> str:
    """The cluster's Kubernetes version: the newest minor every pinned release supports
    unless the stack names one (AKS's own default may be newer than the pins support)."""
    version = checks.text(cfg, "kubernetesVersion") or pins.DEFAULT_KUBERNETES_MINOR
    problem = pins.kubernetes_problem(version)
    if problem:
        raise ConfigError("kubernetesVersion", problem)
    return version
