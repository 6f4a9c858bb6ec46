"""The keys every deployment shares or defaults from: the pods' shape, the container's
variables, the keys' versions, and the autoscaler's range and signal."""
from __future__ import annotations

import re

import pulumi

from infra.config import capture, checks
from infra.config.errors import ConfigError
from infra.config.types import GpuPoolConfig, ScalingConfig, ServiceConfig
from scoring_app import contract, settings

#: Variables the Deployment sets itself; scoringEnv may not override them.
RESERVED_ENV = frozenset(contract.STACK_VARIABLES)
PRECISIONS = ("fp32", "mixed")  # the container's precisions (scoring_app/settings.py)
#: The container's preprocessings; "" leaves it unset (it refuses an image-tensor model then)
PREPROCESSES = ("", "none", "caffe", "tf", "torch")
_DNS_LABEL = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")


def service(cfg: pulumi.Config, gpu: GpuPoolConfig) -> ServiceConfig:
    replicas = checks.integer(cfg, "replicas", minimum=0)  # 0: dev pool scales to zero
    checks.gpus_fit("replicas", replicas, gpu)
    dns_label = checks.optional(cfg, "dnsLabel")
    if dns_label and not _DNS_LABEL.match(dns_label):
        raise ConfigError("dnsLabel", f"{dns_label!r} must be 3-63 characters of a-z, 0-9 and "
                          "'-', starting with a letter")
    extra = _scoring_env(cfg)
    return ServiceConfig(
        replicas=replicas,
        model_name=checks.nonempty(cfg, "modelName"),
        model_version=checks.nonempty(cfg, "modelVersion"),
        cpu_request=checks.quantity("cpuRequest", checks.text(cfg, "cpuRequest")),
        cpu_limit=checks.quantity("cpuLimit", checks.text(cfg, "cpuLimit")),
        memory_request=checks.quantity("memoryRequest", checks.text(cfg, "memoryRequest")),
        memory_limit=checks.quantity("memoryLimit", checks.text(cfg, "memoryLimit")),
        graceful_timeout_s=checks.integer(cfg, "gracefulTimeoutSeconds", minimum=1),
        drain_s=checks.integer(cfg, "drainSeconds", minimum=0),
        pre_stop_s=checks.integer(cfg, "preStopSeconds", minimum=0),
        precision=checks.choice(cfg, "precision", PRECISIONS),
        extra_env=extra,
        dns_label=dns_label,
        source_ranges=checks.cidrs("loadBalancerSourceRanges",
                                   checks.str_list(cfg, "loadBalancerSourceRanges")),
        primary_key_version=checks.nonempty(cfg, "primaryKeyVersion"),
        secondary_key_version=checks.nonempty(cfg, "secondaryKeyVersion"),
        model_scan=checks.boolean(cfg, "modelScan"),
        capture=capture.parse("", {key: checks.text(cfg, key) for key in capture.KEYS}, None,
                              checks.flag),
        preprocess=preprocess("preprocess", checks.text(cfg, "preprocess")),
    )


def preprocess(key: str, value) -> str:
    """The preprocessing of a model whose input is image pixels; empty leaves it unset."""
    text = "" if value is None else str(value).strip()
    if text not in PREPROCESSES:
        raise ConfigError(key, f"{text!r} is not one of {', '.join(PREPROCESSES[1:])} (or empty "
                          "for a model that takes encoded images, as prepare_model's do)")
    return text


def scaling(cfg: pulumi.Config, gpu: GpuPoolConfig, monitoring: bool) -> ScalingConfig:
    enabled = checks.boolean(cfg, "autoscaling")
    if enabled and not monitoring:
        raise ConfigError("autoscaling", "needs monitoring true: KEDA reads the service's load "
                          "from Azure Monitor managed Prometheus")
    # min 1: with no pod there is no load metric, so nothing would ever scale it up again.
    low = checks.integer(cfg, "minReplicas", minimum=1)
    high = checks.integer(cfg, "maxReplicas", minimum=1)
    checks.not_above("minReplicas", low, high, "maxReplicas")
    if enabled:
        checks.gpus_fit("maxReplicas", high, gpu)
    rate = checks.number(cfg, "scaleRequestsPerReplica")
    if rate <= 0:
        raise ConfigError("scaleRequestsPerReplica", f"{rate} must be > 0")
    return ScalingConfig(enabled=enabled, min_replicas=low, max_replicas=high,
                         requests_per_replica=rate,
                         queue_per_replica=checks.integer(cfg, "scaleQueuePerReplica", minimum=1))


def _scoring_env(cfg: pulumi.Config) -> tuple[tuple[str, str], ...]:
    """`NAME=value` strings for contract variables the stack leaves at their defaults."""
    pairs = []
    for item in checks.str_list(cfg, "scoringEnv"):
        name, sep, value = item.partition("=")
        if not sep or not name.startswith(contract.PREFIX) or name in RESERVED_ENV:
            raise ConfigError("scoringEnv", f"{item!r}: use NAME=value with a {contract.PREFIX}* "
                              "name the stack does not set itself "
                              f"({', '.join(sorted(RESERVED_ENV))})")
        pairs.append((name, value))
    try:  # the container's own parser: a value it would refuse at start fails the preview
        settings.load(dict(pairs))
    except settings.SettingsError as exc:
        raise ConfigError("scoringEnv", str(exc)) from None
    return tuple(pairs)
