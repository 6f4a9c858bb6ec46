"""aks-gpu-scoring: a TensorFlow SavedModel served on AKS GPUs. Config, components, exports."""
import pulumi
from pulumi_azure_native import resources

from infra import config
from infra.config import External
from infra.autoscaling import Autoscaler, AutoscalerArgs
from infra.cluster import GpuCluster, GpuClusterArgs
from infra.device_plugin import DevicePluginArgs, NvidiaDevicePlugin
from infra.model_store import ModelStore, ModelStoreArgs, describe
from infra.edge import Edge, EdgeArgs
from infra.monitoring import ManagedPrometheus, ManagedPrometheusArgs
from infra.registry import RegistryImage, RegistryImageArgs
from infra.scoring import (CONTAINER_NAME, NAMESPACE, SERVICE_ACCOUNT, ScoringService,
                           ScoringServiceArgs)

cfg = config.load()

group = resources.ResourceGroup("scoring-rg", location=cfg.cluster.location)
cluster = GpuCluster("gpu", GpuClusterArgs(
    resource_group_name=group.name, cluster=cfg.cluster, gpu=cfg.gpu,
    keda=cfg.scaling.enabled, managed_prometheus=cfg.monitoring))
registry = RegistryImage("registry", RegistryImageArgs(
    resource_group_name=group.name, location=cfg.cluster.location,
    kubelet_object_id=cluster.kubelet_object_id, image=cfg.image, deployments=cfg.deployments))
if cfg.gpu.driver == "aks":  # the GPU Operator route brings its own device plugin
    NvidiaDevicePlugin("nvidia", DevicePluginArgs(
        image=cfg.image.device_plugin_image, provider=cluster.provider, gpu_pool=cluster.gpu_pool))
model_store = None
if cfg.image.model_store == "blob":  # the model is data: published, then fetched at pod start
    model_store = ModelStore("models", ModelStoreArgs(
        resource_group_name=group.name, location=cfg.cluster.location,
        oidc_issuer_url=cluster.oidc_issuer_url, namespace=NAMESPACE,
        service_account=SERVICE_ACCOUNT, scoring_container=CONTAINER_NAME,
        image_refs=registry.image_refs,
        scanned=frozenset(d.name for d in cfg.deployments if d.model_scan),
        models={  # each deployment's modelUri, or its modelDir published under its own prefix
            d.name: d.source.model if isinstance(d.source, External)
            else describe(d.model_name, d.source.model_dir) for d in cfg.deployments},
        public_keys={d.name: d.model_public_key for d in cfg.deployments if d.model_public_key},
        certificate_chains={d.name: d.model_certificate_chain for d in cfg.deployments
                            if d.model_certificate_chain},
        stack_uri_scope=cfg.image.external.scope if cfg.image.external else None,
        captures={d.name: d.capture for d in cfg.deployments if d.capture.enabled}))
scoring = ScoringService("scoring", ScoringServiceArgs(
    deployments=cfg.deployments, image_refs=registry.image_refs, service=cfg.service,
    provider=cluster.provider, autoscaled=cfg.scaling.enabled, scraped=cfg.monitoring,
    gpu_pool=cluster.gpu_pool, podmonitor_crd=cluster.addon_crds.get("prometheus"),
    models=model_store.pod_models if model_store else None))
edge = Edge("edge", EdgeArgs(
    edge=cfg.edge, service=cfg.service, deployments=cfg.deployments,
    service_names=scoring.service_names,
    location=cfg.cluster.location, namespace=scoring.namespace, provider=cluster.provider,
    kubeconfig=cluster.kubeconfig, cluster_id=cluster.id, resource_group_name=group.name,
    oidc_issuer_url=cluster.oidc_issuer_url, ready=cluster.rbac_ready,
    image_registry=registry.login_server, mirrors=tuple(registry.node_pull)))
if cfg.monitoring:
    prometheus = ManagedPrometheus("prometheus", ManagedPrometheusArgs(
        resource_group_name=group.name, location=cfg.cluster.location, cluster_id=cluster.id))
    pulumi.export("prometheusQueryEndpoint", prometheus.query_endpoint)
    if cfg.scaling.enabled:  # config.py allows autoscaling only with monitoring
        Autoscaler("autoscaler", AutoscalerArgs(
            scaling=cfg.scaling, resource_group_name=group.name, location=cfg.cluster.location,
            oidc_issuer_url=cluster.oidc_issuer_url, workspace_id=prometheus.workspace_id,
            query_endpoint=prometheus.query_endpoint, namespace=scoring.namespace,
            deployments=cfg.deployments, deployment_names=scoring.deployment_names,
            provider=cluster.provider,
            keda_crds=cluster.addon_crds["keda"]))

pulumi.export("scoringUri", edge.scoring_uri)
pulumi.export("swaggerUri", edge.swagger_uri)
pulumi.export("primaryKey", scoring.primary_key)
pulumi.export("secondaryKey", scoring.secondary_key)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("resourceGroupName", group.name)
pulumi.export("clusterName", cluster.name)
pulumi.export("registryLoginServer", registry.login_server)
if model_store:
    pulumi.export("modelUri", model_store.model_uri)
if model_store and model_store.capture_uri:  # scoring_tools.captures reads it
    pulumi.export("captureUri", model_store.capture_uri)
pulumi.export("deployments", {d.name: {
    "traffic": d.traffic, "mirrorTraffic": d.mirror, "image": registry.image_refs[d.name],
    "model": f"{d.model_name}:{d.model_version}", "precision": d.precision,
    **({"capture": {"samplingRate": d.capture.sampling_rate, "images": d.capture.images,
                    "retentionDays": d.capture.retention_days}} if d.capture.enabled else {}),
    **({"modelUri": model_store.model_uris[d.name]} if model_store else {})}
    for d in cfg.deployments})
