"""A user-assigned identity that one Kubernetes ServiceAccount signs in as (workload identity).

The identity plus its federated credential for ``system:serviceaccount:<namespace>:<name>``
on the cluster's OIDC issuer, with the audience AKS's webhook projects tokens for. The
model store's pods, KEDA's operator and cert-manager each get one.
"""
from __future__ import annotations

import pulumi
from pulumi_azure_native import managedidentity

#: The audience of the service-account tokens that Entra ID exchanges.
TOKEN_AUDIENCE = "api://AzureADTokenExchange"


def workload_identity(prefix: str, resource_group_name: pulumi.Input[str], location: str,
                      issuer: pulumi.Input[str], namespace: str, service_account: str,
                      opts: pulumi.ResourceOptions,
                      ) -> tuple[managedidentity.UserAssignedIdentity,
                                 managedidentity.FederatedIdentityCredential]:
    """``<prefix>-identity`` and ``<prefix>-federation``, federated with that ServiceAccount."""
    identity = managedidentity.UserAssignedIdentity(
        f"{prefix}-identity", resource_group_name=resource_group_name, location=location,
        opts=opts)
    federation = managedidentity.FederatedIdentityCredential(
        f"{prefix}-federation", resource_group_name=resource_group_name,
        resource_name_=identity.name, issuer=issuer,
        subject=f"system:serviceaccount:{namespace}:{service_account}",
        audiences=[TOKEN_AUDIENCE], opts=opts)
    return identity, federation
