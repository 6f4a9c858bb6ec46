"""Azure built-in role ids this stack grants, and how to spell a role definition id.

The ids are fixed by Azure for every tenant (see "Azure built-in roles"), so
they are constants, not config.
"""
import pulumi
from pulumi_azure_native import authorization

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
AKS_RBAC_CLUSTER_ADMIN = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"
#: Query an Azure Monitor workspace (KEDA reading the Prometheus metrics).
MONITORING_DATA_READER = "b0d8363b-8ddd-447d-831f-62ca05bff136"
#: Manage record sets in one DNS zone (cert-manager's DNS-01 TXT records).
DNS_ZONE_CONTRIBUTOR = "befefa01-2a29-4197-83a8-272ff33ce314"


def role_definition_id(subscription_id: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "/subscriptions/", subscription_id,
        "/providers/Microsoft.Authorization/roleDefinitions/", role)


def grant(name: str, principal_id: pulumi.Input[str], role: str, scope: pulumi.Input[str],
          subscription_id: pulumi.Input[str], opts: pulumi.ResourceOptions,
          principal_type: str | None = None) -> authorization.RoleAssignment:
    """Assign built-in `role` to `principal_id` on `scope` (a resource inside the stack's group)."""
    return authorization.RoleAssignment(
        name, principal_id=principal_id, principal_type=principal_type,
        role_definition_id=role_definition_id(subscription_id, role), scope=scope, opts=opts)
#: Read blobs (the scoring pods' identity, on the models container only).
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
#: Write blobs (the deployer, to publish the model; the models container only).
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
