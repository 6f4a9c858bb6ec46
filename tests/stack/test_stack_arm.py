"""The Azure resources' inputs, shaped as ARM bodies, against Azure's published ARM schemas.

`pulumi up` cannot run here, so this is where a wrong enum value, type or
required field shows up instead. Schemas: tests/reference/arm-schemas, at the
API versions pulumi-azure-native 3.29 uses.
"""
import json

import jsonschema
import pytest
import referencing
import referencing.jsonschema

from stack_harness import reference_file, unwrap

PREFIX = "https://schema.management.azure.com/schemas/"
#: Pulumi type -> (schema file, definition path, ARM type, apiVersion, the input holding the name)
TARGETS = {
    "azure-native:containerservice:ManagedCluster": (
        "2025-09-01/Microsoft.ContainerService.Aks.json", "resourceDefinitions/managedClusters",
        "Microsoft.ContainerService/managedClusters", "2025-09-01", "resourceName"),
    "azure-native:containerservice:AgentPool": (
        "2025-09-01/Microsoft.ContainerService.Aks.json",
        "resourceDefinitions/managedClusters_agentPools",
        "Microsoft.ContainerService/managedClusters/agentPools", "2025-09-01", "agentPoolName"),
    "azure-native:containerregistry:Registry": (
        "2023-01-01-preview/Microsoft.ContainerRegistry.json", "resourceDefinitions/registries",
        "Microsoft.ContainerRegistry/registries", "2023-01-01-preview", "registryName"),
    "azure-native:containerregistry:CacheRule": (
        "2024-11-01-preview/Microsoft.ContainerRegistry.json",
        "resourceDefinitions/registries_cacheRules",
        "Microsoft.ContainerRegistry/registries/cacheRules", "2024-11-01-preview", "cacheRuleName"),
    "azure-native:authorization:RoleAssignment": (
        "2022-04-01/Microsoft.Authorization.json", "resourceDefinitions/roleAssignments",
        "Microsoft.Authorization/roleAssignments", "2022-04-01", "roleAssignmentName"),
    "azure-native:resources:ResourceGroup": (
        "2024-03-01/Microsoft.Resources.json", "subscription_resourceDefinitions/resourceGroups",
        "Microsoft.Resources/resourceGroups", "2024-03-01", "resourceGroupName"),
    # Models as data (infra/model_store.py)
    "azure-native:storage:StorageAccount": (
        "2024-01-01/Microsoft.Storage.json", "resourceDefinitions/storageAccounts",
        "Microsoft.Storage/storageAccounts", "2024-01-01", "accountName"),
    "azure-native:storage:BlobServiceProperties": (
        "2024-01-01/Microsoft.Storage.json", "resourceDefinitions/storageAccounts_blobServices",
        "Microsoft.Storage/storageAccounts/blobServices", "2024-01-01", "blobServicesName"),
    "azure-native:storage:BlobContainer": (
        "2024-01-01/Microsoft.Storage.json",
        "resourceDefinitions/storageAccounts_blobServices_containers",
        "Microsoft.Storage/storageAccounts/blobServices/containers", "2024-01-01", "containerName"),
    # Payload capture's retention (infra/capture.py)
    "azure-native:storage:ManagementPolicy": (
        "2024-01-01/Microsoft.Storage.json", "resourceDefinitions/storageAccounts_managementPolicies",
        "Microsoft.Storage/storageAccounts/managementPolicies", "2024-01-01", "managementPolicyName"),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "2023-01-31/Microsoft.ManagedIdentity.json", "resourceDefinitions/userAssignedIdentities",
        "Microsoft.ManagedIdentity/userAssignedIdentities", "2023-01-31", "resourceName"),
    "azure-native:managedidentity:FederatedIdentityCredential": (
        "2023-01-31/Microsoft.ManagedIdentity.json",
        "resourceDefinitions/userAssignedIdentities_federatedIdentityCredentials",
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        "2023-01-31", "federatedIdentityCredentialResourceName"),
}
#: ARM spells some child resources' names with their parent's (blobServices: "<account>/default").
QUALIFIED_NAMES = {"azure-native:storage:BlobServiceProperties": "accountName",
                   "azure-native:storage:ManagementPolicy": "accountName"}
TOP_LEVEL = {"location", "identity", "sku", "tags", "extendedLocation", "kind", "managedBy"}
PATH_PARAMETERS = {"resourceGroupName", "resourceName", "agentPoolName", "registryName",
                   "cacheRuleName",
                   "scope", "roleAssignmentName", "accountName", "blobServicesName", "containerName",
                   "managementPolicyName", "federatedIdentityCredentialResourceName"}


def _retrieve(uri: str) -> referencing.Resource:
    if not uri.startswith(PREFIX):
        raise referencing.exceptions.NoSuchResource(uri)
    contents = json.loads(reference_file("arm-schemas/" + uri[len(PREFIX):]).read_text(encoding="utf-8-sig"))
    return referencing.Resource.from_contents(contents, default_specification=referencing.jsonschema.DRAFT4)


REGISTRY = referencing.Registry(retrieve=_retrieve)


def arm_body(resource: dict, type_: str) -> dict:
    """Pulumi's flattened camelCase inputs -> {name, type, apiVersion, top-level..., properties}."""
    _, _, arm_type, api_version, name_key = TARGETS[type_]
    inputs = unwrap(resource["inputs"])
    body = {"name": inputs.get(name_key) or resource["name"], "type": arm_type,
            "apiVersion": api_version, "properties": {}}
    for key, value in inputs.items():
        if key in TOP_LEVEL:
            body[key] = value
        elif key not in PATH_PARAMETERS:
            body["properties"][key] = value
    if type_ in QUALIFIED_NAMES:
        body["name"] = f"{inputs[QUALIFIED_NAMES[type_]]}/{body['name']}"
    if type_ == "azure-native:managedidentity:UserAssignedIdentity":
        assert not body["properties"], body["properties"]
        del body["properties"]  # the schema has no properties object for it
    return body


def validator(type_: str) -> jsonschema.Draft4Validator:
    schema_file, definition = TARGETS[type_][:2]
    return jsonschema.Draft4Validator({"$ref": f"{PREFIX}{schema_file}#/{definition}"},
                                      registry=REGISTRY)


@pytest.mark.parametrize("type_", sorted(TARGETS))
def test_each_schema_is_carried_in_the_repository(type_):
    assert json.loads(reference_file("arm-schemas/" + TARGETS[type_][0]).read_text(encoding="utf-8-sig"))


@pytest.mark.parametrize("type_", sorted(TARGETS))
def test_azure_inputs_match_the_arm_schema(type_, stack_run, runs):
    resources = [r for run in (stack_run, runs["variant"], runs["rollout"], runs["mixed-plus"],
                               runs["external"], runs["capture"]) for r in run.all_of(type_)]
    assert resources, f"{stack_run.stack} declares no {type_}"
    check = validator(type_)
    errors = [f"{r['name']}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
              for r in resources for e in check.iter_errors(arm_body(r, type_))]
    assert errors == []


def test_the_validator_catches_a_storage_setting_azure_rejects(stack_run):
    """Guards the storage guard: a TLS version ARM does not know fails here."""
    account = stack_run.one("azure-native:storage:StorageAccount")
    body = arm_body(account, "azure-native:storage:StorageAccount")
    body["properties"]["minimumTlsVersion"] = "TLS1_4"
    assert list(validator("azure-native:storage:StorageAccount").iter_errors(body))


def test_the_modeluri_grants_are_in_what_the_schema_checks(runs):
    """Each container's read grant (mixed-plus: two modelUri containers and the stack's own)
    is among the bodies above, so the schema sees every new role assignment."""
    names = {r["name"] for r in runs["mixed-plus"].all_of("azure-native:authorization:RoleAssignment")}
    assert {"models-pods-read", "models-read-theirmodels-published",
            "models-read-othermodels-resnets"} <= names


def test_the_validator_catches_a_bad_role_assignment(runs):
    """Guards the grant's guard: a principal type ARM does not know fails here."""
    grant = runs["mixed-plus"].one("azure-native:authorization:RoleAssignment",
                                   "models-read-othermodels-resnets")
    body = arm_body(grant, "azure-native:authorization:RoleAssignment")
    assert not list(validator("azure-native:authorization:RoleAssignment").iter_errors(body))
    body["properties"]["principalType"] = "ManagedIdentity"
    assert list(validator("azure-native:authorization:RoleAssignment").iter_errors(body))


def test_the_validator_catches_a_wrong_enum(stack_run):
    """Guards the guard: a body the service would reject must fail here too."""
    pool = stack_run.one("azure-native:containerservice:AgentPool")
    body = arm_body(pool, "azure-native:containerservice:AgentPool")
    body["properties"]["mode"] = "user"  # ARM's enum is case-sensitive: User
    assert list(validator("azure-native:containerservice:AgentPool").iter_errors(body))


def test_the_validator_catches_a_bad_lifecycle_rule(runs):
    """Guards the retention's guard: a fractional day count ARM refuses fails here."""
    policy = runs["capture"].one("azure-native:storage:ManagementPolicy")
    body = arm_body(policy, "azure-native:storage:ManagementPolicy")
    check = validator("azure-native:storage:ManagementPolicy")
    assert not list(check.iter_errors(body))
    body["properties"]["policy"]["rules"][0]["definition"]["actions"]["baseBlob"]["delete"][
        "daysAfterCreationGreaterThan"] = 7.5
    assert list(check.iter_errors(body))
