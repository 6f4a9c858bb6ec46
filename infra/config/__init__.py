"""The stack's configuration, read and checked once, before any resource exists.

Every key is described, with its default, in Pulumi.yaml (the only place a default
lives). A bad value stops `pulumi preview` with a ConfigError that names the key and
says what to use instead, so nothing half-deploys. Components receive the typed,
frozen groups of ``infra.config.types`` and never read pulumi.Config themselves.
"""
from __future__ import annotations

import pulumi

from infra.config import cluster as _cluster
from infra.config import deployments as _deployments
from infra.config import edge as _edge
from infra.config import service as _service
from infra.config.capture import CaptureConfig
from infra.config.checks import boolean
from infra.config.cluster import KUBELOGIN_MODES
from infra.config.edge import ACME_SERVERS
from infra.config.errors import ConfigError
from infra.config.model_source import (REPO_ROOT, Baked, External, ExternalModel, ModelSource,
                                       Published)
from infra.config.service import PRECISIONS, PREPROCESSES, RESERVED_ENV
from infra.config.types import (ClusterConfig, DeploymentConfig, EdgeConfig, GpuPoolConfig,
                                ImageConfig, ScalingConfig, ServiceConfig, StackConfig)

__all__ = ["ACME_SERVERS", "KUBELOGIN_MODES", "PRECISIONS", "PREPROCESSES", "REPO_ROOT",
           "RESERVED_ENV", "Baked", "CaptureConfig", "ClusterConfig", "ConfigError",
           "DeploymentConfig", "EdgeConfig", "External", "ExternalModel", "GpuPoolConfig",
           "ImageConfig", "ModelSource", "Published", "ScalingConfig", "ServiceConfig",
           "StackConfig", "load"]


def load(cfg: pulumi.Config | None = None) -> StackConfig:
    """Read every key of this project's config, check it, and return it typed."""
    cfg = cfg or pulumi.Config()
    zones = _cluster.zones(cfg)
    cluster = _cluster.cluster(cfg, zones)
    gpu = _cluster.gpu_pool(cfg, zones)
    image = _deployments.image(cfg)
    service = _service.service(cfg, gpu)
    edge = _edge.edge(cfg, service)
    monitoring = boolean(cfg, "monitoring")
    scaling = _service.scaling(cfg, gpu, monitoring)
    _cluster.system_pool_fits(cluster, edge, scaling, monitoring)
    deployments = _deployments.deployments(cfg, gpu, image, service, scaling)
    return StackConfig(cluster=cluster, gpu=gpu, image=image, service=service, edge=edge,
                       scaling=scaling, monitoring=monitoring, deployments=deployments)
