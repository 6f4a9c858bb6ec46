"""Payload capture (docs/capture.md): where each deployment's sampled requests go, for how long,
and the one permission the pods get to write them.

Config, per deployment and stack-wide (a deployment's key overrides the stack's, as
precision's does): `capture` (off by default), `captureSamplingRate` (0 to 1, Azure ML's
data collector's `sampling_rate`), `captureImages` (off by default: images may be personal
data; off keeps each input's sha256, size and format), `captureRetentionDays`.

Declared (infra/model_store.py calls `declare` with the stack's storage account):
- a private `captures` container beside `models`;
- the account's lifecycle management policy (an account has one, named `default`): one rule
  per capturing deployment deleting its blobs (prefix `captures/<deployment>/`) once older
  than its retention;
- Storage Blob Data Contributor for the scoring pods' identity on the captures container
  only: the models container keeps its read-only grant, so the pods still cannot write or
  delete a model. No key or SAS: the pods write with their workload identity.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi_azure_native import storage

from infra.roles import STORAGE_BLOB_DATA_CONTRIBUTOR, grant

CONTAINER = "captures"
KEYS = ("capture", "captureSamplingRate", "captureImages", "captureRetentionDays")
#: Azure's lifecycle rules take whole days up to 99999 (ARM schema: DateAfterCreation).
MAX_RETENTION_DAYS = 99999


@dataclass(frozen=True)
class CaptureConfig:
    enabled: bool = False
    sampling_rate: float = 1.0
    images: bool = False
    retention_days: int = 30


def parse(prefix: str, entry: Mapping, default: CaptureConfig, flag) -> CaptureConfig:
    """The four keys from ``entry`` (a deployment's map, or the stack's values), each
    defaulting to ``default``'s; ``prefix`` names them (``deployments.green.``);
    ``flag(key, value)`` is config's boolean reader. Raises ConfigError naming the key."""
    from infra.config import ConfigError
    rate = entry.get("captureSamplingRate", default.sampling_rate)
    if isinstance(rate, str):
        try:
            rate = float(rate)
        except ValueError:
            pass
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise ConfigError(f"{prefix}captureSamplingRate", f"{rate!r} must be a fraction above 0 "
                          "and at most 1 (0.05: one request in twenty)")
    days = entry.get("captureRetentionDays", default.retention_days)
    whole = int(days) if isinstance(days, str) and days.strip().isdigit() else days
    if isinstance(whole, bool) or not isinstance(whole, int) or not 1 <= whole <= MAX_RETENTION_DAYS:
        raise ConfigError(f"{prefix}captureRetentionDays", f"{days!r} must be a whole number of "
                          f"days, 1 to {MAX_RETENTION_DAYS}")
    return CaptureConfig(
        enabled=flag(f"{prefix}capture", entry.get("capture", default.enabled)),
        sampling_rate=float(rate),
        images=flag(f"{prefix}captureImages", entry.get("captureImages", default.images)),
        retention_days=whole)


def service_env(container_url: pulumi.Input[str], capture: CaptureConfig) -> dict:
    """A capturing deployment's fields of the scoring container's ServiceEnv."""
    return {"capture_uri": container_url, "capture_sample_rate": capture.sampling_rate,
            "capture_images": capture.images}


def rule_names(deployments) -> dict[str, str]:
    """deployment -> its rule's name: ARM's rule names are alphanumeric (no '-'), unique."""
    names: dict[str, str] = {}
    for deployment in sorted(deployments):
        name = "captures" + "".join(c for c in deployment if c.isalnum())
        names[deployment] = name if name not in names.values() else f"{name}{len(names)}"
    return names


def lifecycle_rules(captures: Mapping[str, CaptureConfig]) -> list[dict]:
    """One delete rule per capturing deployment, on its own prefix."""
    names = rule_names(captures)
    return [{"name": names[deployment], "enabled": True, "type": "Lifecycle",
             "definition": {
                 "filters": {"blobTypes": ["blockBlob"],
                             "prefixMatch": [f"{CONTAINER}/{deployment}/"]},
                 "actions": {"baseBlob": {"delete": {
                     "daysAfterCreationGreaterThan": capture.retention_days}}}}}
            for deployment, capture in sorted(captures.items())]


def declare(name: str, account: storage.StorageAccount, resource_group_name: pulumi.Input[str],
            principal_id: pulumi.Input[str], subscription_id: pulumi.Input[str],
            captures: Mapping[str, CaptureConfig], opts: pulumi.ResourceOptions):
    """The container, its lifecycle rules and the pods' write grant; returns (container,
    grant) for the Deployments to depend on."""
    container = storage.BlobContainer(
        f"{name}-captures", account_name=account.name, resource_group_name=resource_group_name,
        container_name=CONTAINER, public_access="None", opts=opts)
    storage.ManagementPolicy(
        f"{name}-captures-retention", account_name=account.name,
        resource_group_name=resource_group_name, management_policy_name="default",
        policy={"rules": lifecycle_rules(captures)},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[container])))
    writer = grant(f"{name}-pods-capture", principal_id, STORAGE_BLOB_DATA_CONTRIBUTOR,
                   container.id, subscription_id, opts, principal_type="ServicePrincipal")
    return container, writer
