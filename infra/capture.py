"""Payload capture (docs/capture.md): where each deployment's sampled requests go, for how long,
and the one permission the pods get to write them.

More: docs/deploying.md, "How the program is built".
"""
from __future__ import annotations

from collections.abc import Mapping

import pulumi
from pulumi_azure_native import storage

from infra.config.capture import CaptureConfig
from infra.roles import STORAGE_BLOB_DATA_CONTRIBUTOR, grant

CONTAINER = "captures"


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
