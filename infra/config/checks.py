"""Reading config values and the checks more than one key needs, each written once.

Every key has its default in Pulumi.yaml, which Pulumi hands the program with the
stack's own values, so the readers here require a value: a key that is absent
means the project file is not this project's.
"""
from __future__ import annotations

import ipaddress
import re

import pulumi

from infra.config.errors import ConfigError
from infra.gpu_sizes import GPUS_PER_VM

_CHART_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_DIGEST_REF = re.compile(r"^[a-z0-9.\-:/_]+@sha256:[0-9a-f]{64}$")
_PINNED_TAG = re.compile(r"^[^@]+:(?!latest$)[\w][\w.\-]{0,127}$")


def _present(key: str, value):
    if value is None:
        raise ConfigError(key, "is missing: Pulumi.yaml gives every optional key a default, so "
                          "run the program from this project's directory")
    return value


def text(cfg: pulumi.Config, key: str) -> str:
    """A string key ("" where Pulumi.yaml's default is empty)."""
    return _present(key, cfg.get(key))


def nonempty(cfg: pulumi.Config, key: str) -> str:
    """A string key that must say something: the container refuses an empty model name or
    version at start, and an empty key version would rotate the key it names."""
    value = text(cfg, key)
    if not value.strip():
        raise ConfigError(key, "must not be empty (leave the key out for Pulumi.yaml's default)")
    return value


def optional(cfg: pulumi.Config, key: str) -> str | None:
    """A string key whose empty default means "not set"."""
    return text(cfg, key) or None


def boolean(cfg: pulumi.Config, key: str) -> bool:
    return _present(key, cfg.get_bool(key))


def obj(cfg: pulumi.Config, key: str):
    """A structured key (a list or a map), as Pulumi decoded it."""
    return _present(key, cfg.get_object(key))


def choice(cfg: pulumi.Config, key: str, allowed: tuple[str, ...]) -> str:
    value = text(cfg, key)
    if value not in allowed:
        raise ConfigError(key, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def integer(cfg: pulumi.Config, key: str, minimum: int) -> int:
    value = _present(key, cfg.get_int(key))
    if value < minimum:
        raise ConfigError(key, f"{value} must be >= {minimum}")
    return value


def number(cfg: pulumi.Config, key: str) -> float:
    """A number kept as a string in config (Pulumi.yaml's schema has no float type)."""
    value = text(cfg, key)
    try:
        return float(value)
    except ValueError:
        raise ConfigError(key, f"{value!r} is not a number") from None


def whole(value) -> int | None:
    """An int, or the digits `pulumi config set --path` may store as a string; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def flag(key: str, value) -> bool:
    """true or false, or the string `pulumi config set --path` may store for one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(key, f"{value!r} must be true or false")


def str_list(cfg: pulumi.Config, key: str) -> tuple[str, ...]:
    value = obj(cfg, key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, "must be a list of strings")
    return tuple(value)


def cidrs(key: str, ranges: tuple[str, ...]) -> tuple[str, ...]:
    """IPv4/IPv6 ranges, each normalised by the ipaddress module."""
    out = []
    for value in ranges:
        try:
            out.append(str(ipaddress.ip_network(value, strict=True)))
        except ValueError as err:
            raise ConfigError(key, f"{value!r} is not an IP range: {err}") from None
    return tuple(out)


def quantity(key: str, value: str, example: str = " (e.g. 2, 500m, 8Gi)") -> str:
    """A Kubernetes quantity; `example` ends the message."""
    if not _QUANTITY.match(value):
        raise ConfigError(key, f"{value!r} is not a Kubernetes quantity{example}")
    return value


def pinned_by_digest(key: str, ref) -> str:
    """An image reference pinned by digest (a prebuilt scoring image)."""
    if not isinstance(ref, str) or not _DIGEST_REF.match(ref):
        raise ConfigError(key, f"{ref!r} must be pinned by digest: "
                          "<registry>/<repo>@sha256:<64 hex>")
    return ref


def pinned_image(key: str, ref: str) -> str:
    """An image reference with a version tag (not latest) or a digest."""
    if not (_PINNED_TAG.match(ref) or _DIGEST_REF.match(ref)):
        raise ConfigError(key, f"{ref!r} must carry a pinned version tag (not latest) or a digest")
    return ref


def chart_version(key: str, version: str, example: str) -> str:
    """An exact chart version: the charts are pinned, never ranges."""
    if not _CHART_VERSION.match(version):
        raise ConfigError(key, f"{version!r} must be an exact chart version such as {example} "
                          "(no ranges: the chart is pinned)")
    return version


def not_above(low_key: str, low: int, high: int, high_name: str) -> None:
    """A range's lower end is not above its upper end."""
    if low > high:
        raise ConfigError(low_key, f"{low} is greater than {high_name} ({high})")


def gpus_fit(key: str, replicas: int, gpu) -> None:
    """`replicas` pods, one GPU each, fit the GPU pool at its largest."""
    if replicas > gpu.max_gpus:
        raise ConfigError(key, f"{replicas} replicas need {replicas} GPUs, but the GPU pool "
                          f"has at most {gpu.max_gpus} ({gpu.max_count} x {gpu.vm_size}); "
                          f"raise gpuMaxCount or lower {key}")


def all_gpus_fit(pods: dict[str, int], gpu, autoscaled: bool) -> None:
    """Every deployment at its largest, at once (blue and green run side by side)."""
    if sum(pods.values()) > gpu.max_gpus:
        raise ConfigError("deployments", (
            f"together they need up to {sum(pods.values())} GPUs ({pods}, "
            f"{'maxReplicas' if autoscaled else 'replicas'}), but the GPU pool has at most "
            f"{gpu.max_gpus} ({gpu.max_count} x {gpu.vm_size}, {GPUS_PER_VM[gpu.vm_size]} GPU "
            "per VM); raise gpuMaxCount or lower a deployment's replicas"))
