"""aks-gpu-scoring: a TensorFlow SavedModel served on AKS GPUs. Config, components, exports."""
import pulumi
from pulumi_azure_native import resources

from infra import config
from infra.cluster import GpuCluster, GpuClusterArgs
from infra.device_plugin import DevicePluginArgs, NvidiaDevicePlugin
from infra.registry import RegistryImage, RegistryImageArgs
from infra.scoring import ScoringService, ScoringServiceArgs

cfg = config.load()

group = resources.ResourceGroup("scoring-rg", location=cfg.cluster.location)
cluster = GpuCluster("gpu", GpuClusterArgs(
    resource_group_name=group.name, cluster=cfg.cluster, gpu=cfg.gpu))
registry = RegistryImage("registry", RegistryImageArgs(
    resource_group_name=group.name, location=cfg.cluster.location,
    kubelet_object_id=cluster.kubelet_object_id, image=cfg.image))
if cfg.gpu.driver == "aks":  # the GPU Operator route brings its own device plugin
    NvidiaDevicePlugin("nvidia", DevicePluginArgs(
        image=cfg.image.device_plugin_image, provider=cluster.provider))
scoring = ScoringService("scoring", ScoringServiceArgs(
    image_ref=registry.image_ref, location=cfg.cluster.location,
    service=cfg.service, provider=cluster.provider))

pulumi.export("scoringUri", scoring.scoring_uri)
pulumi.export("swaggerUri", scoring.swagger_uri)
pulumi.export("primaryKey", scoring.primary_key)
pulumi.export("secondaryKey", scoring.secondary_key)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("resourceGroupName", group.name)
pulumi.export("clusterName", cluster.name)
pulumi.export("registryLoginServer", registry.login_server)
pulumi.export("image", registry.image_ref)
