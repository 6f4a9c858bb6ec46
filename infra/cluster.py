"""The GPU cluster: AKS with a small system pool, a tainted GPU pool, and a Kubernetes provider.

More: docs/deploying.md, "How the program is built".
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import authorization, containerservice

from infra import kube_wait
from infra.config import ClusterConfig, GpuPoolConfig
from infra.gpu_sizes import gpu_pool_name
from infra.kubeconfig import unattended_kubeconfig
from infra.roles import AKS_RBAC_CLUSTER_ADMIN, grant
from infra.scheduling import (GPU_NODE_LABEL, GPU_TAINT, SPOT_LABEL, SPOT_TAINT, SYSTEM_TAINT,
                              taint_string)

#: The CRDs each add-on installs that this stack's custom resources use, and the objects
#: that must exist before the stack patches them.
ADDON_CRDS = {
    "keda": (["scaledobjects.keda.sh", "triggerauthentications.keda.sh"],
             [("kube-system", "deployment/keda-operator"),
              ("kube-system", "serviceaccount/keda-operator")]),
    "prometheus": (["podmonitors.azmonitoring.coreos.com"], []),
}


#: What AKS cannot change on an existing pool, as (ARM/Pulumi input name -> SDK argument):
#: the VM size and zones (Learn: manage-node-pools, availability-zones), the spot settings
#: (scale-set priority, eviction policy, max price), the OS and the GPU driver mode.
SDK_NAMES = {"vmSize": "vm_size", "availabilityZones": "availability_zones",
             "scaleSetPriority": "scale_set_priority",
             "scaleSetEvictionPolicy": "scale_set_eviction_policy",
             "spotMaxPrice": "spot_max_price", "osType": "os_type", "osSKU": "os_sku",
             "gpuProfile": "gpu_profile"}


def gpu_pool_shape(gpu: GpuPoolConfig) -> dict:
    """The GPU pool's immutable properties, keyed by input name (None: not sent)."""
    return {
        "vmSize": gpu.vm_size,
        "availabilityZones": sorted(gpu.zones) or None,
        "scaleSetPriority": "Spot" if gpu.spot else "Regular",
        "scaleSetEvictionPolicy": "Delete" if gpu.spot else None,
        "spotMaxPrice": gpu.spot_max_price if gpu.spot else None,
        "osType": "Linux",
        "osSKU": "Ubuntu",
        "gpuProfile": {"driver": "Install" if gpu.driver == "aks" else "None"},
    }


@dataclass
class GpuClusterArgs:
    resource_group_name: pulumi.Input[str]
    cluster: ClusterConfig
    gpu: GpuPoolConfig
    keda: bool = False  # the AKS KEDA add-on (workloadAutoScalerProfile)
    managed_prometheus: bool = False  # the metrics add-on (azureMonitorProfile)


class GpuCluster(pulumi.ComponentResource):
    """AKS (Entra ID + Azure RBAC, CNI overlay + Cilium) and its GPU node pool."""

    name: pulumi.Output[str]
    id: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    kubelet_object_id: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    gpu_pool: containerservice.AgentPool
    addon_crds: dict[str, pulumi.Resource]  # add-on -> wait until its CRDs are Established
    rbac_ready: pulumi.Resource  # the deployer may administer the cluster

    def __init__(self, name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-gpu-scoring:infra:GpuCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        deployer = authorization.get_client_config_output()
        managed = self._managed_cluster(name, args, child)
        self.gpu_pool = self._gpu_pool(name, args, managed)
        rbac_ready = self._access(name, args, managed, deployer, child)
        enabled = {"keda": args.keda, "prometheus": args.managed_prometheus}
        self.addon_crds = {
            addon: kube_wait.crds_established(
                f"{name}-{addon}-crds", self.kubeconfig, managed.id, crds,
                pulumi.ResourceOptions(parent=self, depends_on=[rbac_ready]), objects=objects)
            for addon, (crds, objects) in ADDON_CRDS.items() if enabled[addon]}
        self.name = managed.name
        self.id = managed.id
        self.oidc_issuer_url = managed.oidc_issuer_profile.apply(lambda p: p.issuer_url)
        self.kubelet_object_id = managed.identity_profile.apply(
            lambda profile: profile["kubeletidentity"].object_id)
        self.register_outputs({"name": self.name, "kubeletObjectId": self.kubelet_object_id})

    @staticmethod
    def _managed_cluster(name: str, args: GpuClusterArgs,
                         child: pulumi.ResourceOptions) -> containerservice.ManagedCluster:
        """AKS itself, with the system pool (tainted for critical add-ons), Entra ID and
        Azure RBAC only, CNI overlay with Cilium, workload identity, and the add-ons."""
        cfg = args.cluster
        return containerservice.ManagedCluster(
            f"{name}-aks",
            resource_group_name=args.resource_group_name,
            location=cfg.location,
            dns_prefix=name,
            kubernetes_version=cfg.kubernetes_version,
            sku={"name": "Base", "tier": cfg.tier},
            support_plan=cfg.support_plan,
            identity={"type": "SystemAssigned"},
            agent_pool_profiles=[{
                "name": "system",
                "mode": "System",
                "vm_size": cfg.system_vm_size,
                "count": cfg.system_node_count,
                "os_type": "Linux",
                "os_sku": "Ubuntu",
                "type": "VirtualMachineScaleSets",
                "availability_zones": list(cfg.zones) or None,
                # Keeps everything but critical add-ons off the system pool.
                "node_taints": [taint_string(SYSTEM_TAINT)],
            }],
            network_profile={
                "network_plugin": "azure",
                "network_plugin_mode": "overlay",
                "network_dataplane": "cilium",
                "network_policy": "cilium",
                "load_balancer_sku": "standard",
            },
            oidc_issuer_profile={"enabled": True},
            security_profile={"workload_identity": {"enabled": True}},
            auto_upgrade_profile={
                "upgrade_channel": cfg.upgrade_channel,
                "node_os_upgrade_channel": cfg.node_os_upgrade_channel,
            },
            addon_profiles={"azurepolicy": {"enabled": True}},
            # Application routing (managed NGINX, whose upstream is retired) stays off: the
            # edge is the stack's own Gateway API implementation (infra/edge.py, docs/edge.md).
            # Said explicitly, so a stack created with the add-on on has it switched off.
            ingress_profile={"web_app_routing": {"enabled": False}},
            workload_auto_scaler_profile={"keda": {"enabled": args.keda}},
            azure_monitor_profile={"metrics": {"enabled": args.managed_prometheus}},
            api_server_access_profile={"authorized_ip_ranges": list(cfg.authorized_ip_ranges)},
            enable_rbac=True,
            aad_profile={
                "managed": True,
                "enable_azure_rbac": True,
                "admin_group_object_ids": list(cfg.admin_group_object_ids) or None,
            },
            disable_local_accounts=not cfg.local_accounts,
            opts=child,
        )

    def _gpu_pool(self, name: str, args: GpuClusterArgs,
                  managed: containerservice.ManagedCluster) -> containerservice.AgentPool:
        """The tainted GPU pool, named after its immutable shape; the autoscaler owns its
        node count."""
        gpu = args.gpu
        # AKS puts the spot taint and label on a spot pool itself. Omitting them shows as
        # drift on every run (cluster-api-provider-azure#3976), and an update that sends
        # labels without the spot one drops it (Azure/AKS#3152): declare both.
        taints, labels = [GPU_TAINT], dict([GPU_NODE_LABEL])
        if gpu.spot:
            taints.append(SPOT_TAINT)
            labels.update([SPOT_LABEL])
        shape = gpu_pool_shape(gpu)
        return containerservice.AgentPool(
            f"{name}-gpu",
            agent_pool_name=gpu_pool_name(gpu.vm_size, shape),
            resource_group_name=args.resource_group_name,
            resource_name_=managed.name,
            mode="User",
            type="VirtualMachineScaleSets",
            count=gpu.min_count,
            enable_auto_scaling=True,
            min_count=gpu.min_count,
            max_count=gpu.max_count,
            node_taints=[taint_string(t) for t in taints],
            node_labels=labels,
            **{SDK_NAMES[key]: value for key, value in shape.items()},
            opts=pulumi.ResourceOptions(
                parent=self,
                # The autoscaler owns the node count. With `count` ignored, an update sends
                # the count recorded in state, which a refresh (Pulumi.yaml: refresh always)
                # has just read from the live pool: azure-native's Read copies changed
                # outputs into the state's inputs, and its Update PUTs those inputs.
                ignore_changes=["count"],
                # Belt and braces: the name already changes with these (gpu_pool_name).
                replace_on_changes=sorted(shape)),
        )

    def _access(self, name: str, args: GpuClusterArgs, managed, deployer,
                child: pulumi.ResourceOptions) -> pulumi.Resource:
        """The deployer's admin grant, the kubeconfig and the Kubernetes provider; returns
        the wait until the grant lets the deployer in."""
        cfg = args.cluster
        # Whoever runs `pulumi up` administers the cluster through Azure RBAC,
        # which is all the Kubernetes provider has once local accounts are off.
        rbac_admin = grant(f"{name}-deployer-admin", deployer.object_id, AKS_RBAC_CLUSTER_ADMIN,
                           managed.id, deployer.subscription_id, child)

        if cfg.local_accounts:
            creds = containerservice.list_managed_cluster_admin_credentials_output(
                resource_group_name=args.resource_group_name, resource_name=managed.name)
        else:
            creds = containerservice.list_managed_cluster_user_credentials_output(
                resource_group_name=args.resource_group_name, resource_name=managed.name,
                format="exec")
        self.kubeconfig = pulumi.Output.secret(creds.kubeconfigs[0].value.apply(
            lambda encoded: unattended_kubeconfig(encoded, cfg.kubelogin_mode)))
        # The first Kubernetes call waits until the role assignment has propagated.
        rbac_ready = kube_wait.rbac_ready(
            f"{name}-rbac-ready", self.kubeconfig, managed.id,
            pulumi.ResourceOptions(parent=self, depends_on=[rbac_admin]))
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self.kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[rbac_admin, rbac_ready]))
        self.rbac_ready = rbac_ready
        return rbac_ready
