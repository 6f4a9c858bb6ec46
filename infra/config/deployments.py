"""`deployments`, `traffic` and `mirrorTraffic`, checked together; and the stack's image and
model keys, which every deployment defaults from."""
from __future__ import annotations

import pulumi

from infra.config import capture, checks, model_source
from infra.config.errors import ConfigError
from infra.config.model_source import MODEL_URI_KEYS, External
from infra.config.service import PRECISIONS, preprocess
from infra.config.types import (DeploymentConfig, GpuPoolConfig, ImageConfig, ScalingConfig,
                                ServiceConfig)
from scoring_app import contract

REGISTRY_SKUS = ("Basic", "Standard", "Premium")
MODEL_STORES = ("blob", "image")
#: The deployment that today's single-model keys make (Azure ML's first name, too).
DEFAULT_DEPLOYMENT = "blue"
#: Whose signature a deployment's model must carry: a public key or a certificate chain.
SIGNER_KEYS = ("modelPublicKey", "modelCertificateChain")
#: What may differ per deployment; each defaults to the top-level key of the same name.
DEPLOYMENT_KEYS = ("modelDir", "prebuiltImage", "modelName", "modelVersion",
                   "replicas", "minReplicas", "maxReplicas", "precision", "modelScan",
                   "preprocess", *MODEL_URI_KEYS, *SIGNER_KEYS, *capture.KEYS)


def image(cfg: pulumi.Config) -> ImageConfig:
    """The registry, the stack's model (its modelUri, or its modelDir published or baked in,
    or a prebuilt image), and the device plugin's image."""
    prebuilt = checks.optional(cfg, "prebuiltImage")
    model_store = checks.choice(cfg, "modelStore", MODEL_STORES)
    if prebuilt:
        checks.pinned_by_digest("prebuiltImage", prebuilt)
    size = checks.text(cfg, "modelSizeLimit")
    external = None
    if checks.text(cfg, "modelUri"):  # the stack's model is someone else's: modelDir is not published
        external = model_source.external_model("", {
            key: checks.text(cfg, key) for key in MODEL_URI_KEYS[:3]} | {"modelSizeLimit": size},
            model_store, size)
    source = model_source.stack_source(checks.text(cfg, "modelDir"), prebuilt, model_store,
                                       external, bool(checks.obj(cfg, "deployments")))
    checks.quantity("modelSizeLimit", size, ", e.g. 4Gi")
    return ImageConfig(
        registry_sku=checks.choice(cfg, "registrySku", REGISTRY_SKUS), prebuilt_image=prebuilt,
        source=source,
        device_plugin_image=checks.pinned_image("devicePluginImage",
                                                checks.text(cfg, "devicePluginImage")),
        model_store=model_store, model_size_limit=size,
        **model_source.signer("", checks.text(cfg, "modelPublicKey"),
                              checks.text(cfg, "modelCertificateChain"), model_store))


def deployments(cfg: pulumi.Config, gpu: GpuPoolConfig, image: ImageConfig,
                service: ServiceConfig, scaling: ScalingConfig) -> tuple[DeploymentConfig, ...]:
    """Without `deployments`, the single-model keys make one deployment, `blue`, with all
    the traffic."""
    raw = checks.obj(cfg, "deployments") or None  # {} (Pulumi.yaml's default): unset
    if raw is None:
        raw, default_traffic = {DEFAULT_DEPLOYMENT: {}}, {DEFAULT_DEPLOYMENT: 100}
    else:
        default_traffic = None
    _check_entries(raw)
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
                            image, service, scaling) for name in sorted(raw))
    _one_scope_per_container(out, image)
    checks.all_gpus_fit({d.name: d.max_pods(scaling.enabled) for d in out}, gpu, scaling.enabled)
    return out


def _check_entries(raw) -> None:
    """Each entry: a deployment name mapping to per-deployment keys (None reads as {})."""
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


def _percent_map(cfg: pulumi.Config, key: str, deployments: dict,
                 default: dict | None) -> dict[str, int]:
    raw = checks.obj(cfg, key)
    if raw == {}:
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
        value = checks.whole(percent)
        if value is None or not 0 <= value <= 100:
            raise ConfigError(key, f"{name}: {percent!r} must be a whole percent, 0 to 100")
        out[name] = value
    return out


def _deployment(name: str, entry: dict, traffic: int, mirror: int, image: ImageConfig,
                service: ServiceConfig, scaling: ScalingConfig) -> DeploymentConfig:
    key = f"deployments.{name}"

    def number(field: str, default: int, minimum: int) -> int:
        raw = entry.get(field, default)
        value = checks.whole(raw)
        if value is None or value < minimum:
            raise ConfigError(f"{key}.{field}", f"{raw!r} must be a whole number >= {minimum}")
        return value
    replicas = number("replicas", service.replicas, 0)
    low = number("minReplicas", scaling.min_replicas, 1)
    high = number("maxReplicas", scaling.max_replicas, 1)
    checks.not_above(f"{key}.minReplicas", low, high, "maxReplicas")
    source = model_source.deployment_source(key, entry, image.source, image.prebuilt_image,
                                            image.model_store, image.model_size_limit)
    precision = entry.get("precision", service.precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"{key}.precision", f"{precision!r} is not one of "
                          f"{', '.join(PRECISIONS)}")
    scan_key = f"{key}.modelScan" if "modelScan" in entry else "modelScan"
    model_scan = checks.flag(scan_key, entry.get("modelScan", service.model_scan))
    if model_scan and image.model_store != "blob":
        raise ConfigError(scan_key, "needs modelStore blob (the init container "
                          "scans the model it fetched; a baked-in model is never fetched)")
    return DeploymentConfig(
        name=name, source=source,
        model_name=str(entry.get("modelName") or service.model_name),
        model_version=str(entry.get("modelVersion") or service.model_version),
        replicas=replicas, min_replicas=low, max_replicas=high, traffic=traffic, mirror=mirror,
        precision=precision, model_scan=model_scan,
        preprocess=preprocess(f"{key}.preprocess", entry.get("preprocess", service.preprocess)),
        capture=_capture(key, entry, service, image), **_signer(key, entry, image))


def _capture(key: str, entry: dict, service: ServiceConfig, image: ImageConfig):
    """The stack's capture keys, overridden by the deployment's; capture writes with the
    pods' identity into the stack's own account, which only modelStore blob has."""
    out = capture.parse(f"{key}.", entry, service.capture, checks.flag)
    if out.enabled and image.model_store != "blob":
        raise ConfigError(f"{key}.capture" if "capture" in entry else "capture",
                          "needs modelStore blob (the pods write captures with the workload "
                          "identity and storage account that modelStore blob declares)")
    return out


def _signer(key: str, entry: dict, image: ImageConfig) -> dict:
    """A deployment that names either signer key has its own signer (an empty value: none);
    one that names neither has the stack's."""
    if not any(k in entry for k in SIGNER_KEYS):
        return {"model_public_key": image.model_public_key,
                "model_certificate_chain": image.model_certificate_chain}
    return model_source.signer(f"{key}.", entry.get("modelPublicKey"),
                               entry.get("modelCertificateChain"), image.model_store)


def _one_scope_per_container(deployments: tuple[DeploymentConfig, ...],
                             image: ImageConfig) -> None:
    """Deployments that read one container name one resource id for it: the stack grants
    read once per container, so two spellings would be two grants of the same thing."""
    first: dict[tuple[str, str], DeploymentConfig] = {}
    for d in deployments:
        if not isinstance(d.source, External):
            continue
        seen = first.setdefault(d.external.container, d)
        if seen.external.scope != d.external.scope:
            key = "modelUriScope" if d.external is image.external else (
                f"deployments.{d.name}.modelUriScope")
            raise ConfigError(key, f"{d.external.scope!r} is not the {seen.external.scope!r} that "
                              f"{seen.name} names for the same container "
                              f"{'/'.join(d.external.container)}: use one resource id for it")
