"""Run the whole Pulumi program under mocks for one stack and dump what it declared as JSON.

One process per run, so each stack gets a fresh Pulumi runtime and fresh
module state (usage: mock_run.py STACK OVERRIDES_JSON OUT_JSON). Config is
what `pulumi up` would see: Pulumi.yaml defaults, then stacks/Pulumi.STACK.yaml,
then the overrides. The mocks return camelCase outputs the way Azure would
(kubelet identity, login server, digest); secrets stay marked as secrets in
the dump, as {"__secret__": value}. Each resource's options (parent,
provider, dependencies, custom timeouts, ignore_changes, replace_on_changes, delete-before-replace,
former names) are recorded too, since the mocks' new_resource does not see them.

Environment: MOCK_RUN_CLOCK (an ISO date) runs the program with the clock
moved there (time-machine), so that a test can run it twice at different
times and see whether any input changes with the clock. Azure's
getClientToken answers a fresh token on every call, as Azure does.
"""
import base64
import hashlib
import json
import os
import runpy
import sys
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PROJECT = "aks-gpu-scoring"
SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
TENANT = "99999999-8888-7777-6666-555555555555"
DEPLOYER_OID = "dddddddd-0000-0000-0000-000000000001"
KUBELET_OID = "bbbbbbbb-0000-0000-0000-000000000002"
OIDC_ISSUER = "https://westeurope.oic.prod-aks.azure.com/tenant/issuer/"
PROM_ENDPOINT = "https://prometheus-a1b2.westeurope.prometheus.monitor.azure.com"
KEDA_CLIENT_ID = "cccccccc-0000-0000-0000-000000000003"
KEDA_OID = "eeeeeeee-0000-0000-0000-000000000004"
MODELS_CLIENT_ID = "cccccccc-0000-0000-0000-000000000005"
MODELS_OID = "eeeeeeee-0000-0000-0000-000000000006"
#: AKS's own public client, which its exec kubeconfig names in --client-id.
AKS_CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"
AKS_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
#: What listManagedClusterUserCredentials(format=exec) returns, in AKS's shape.
AKS_EXEC_KUBECONFIG = {
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "c", "cluster": {"server": "https://c.hcp.westeurope.azmk8s.io:443"}}],
    "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    "current-context": "c",
    "users": [{"name": "u", "user": {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "kubelogin",
        "args": ["get-token", "--environment", "AzurePublicCloud", "--server-id", AKS_SERVER_ID,
                 "--client-id", AKS_CLIENT_ID, "--tenant-id", TENANT, "--login", "devicecode"],
        "installHint": "kubelogin is not installed"}}}],
}


#: What the README's `pulumi config set --path 'apiAuthorizedIpRanges[0]' ...` adds to a
#: user's stack (the stack files ship without it): a public address, as config demands.
DEPLOYER_EGRESS = ["20.61.17.5/32"]


#: What the stack file's `pulumi config set acmeEmail ...` adds (prod ships without one).
DEPLOYER_ACME_EMAIL = "scoring-ops@scoring-team.io"


def stack_config(stack: str, overrides: dict) -> dict:
    """Pulumi.yaml defaults < the deployer's own values (egress range, mailbox) < stack
    file < overrides, as the engine hands them to the program."""
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    values = {f"{PROJECT}:{k}": v["default"] for k, v in project["config"].items() if "default" in v}
    values[f"{PROJECT}:apiAuthorizedIpRanges"] = DEPLOYER_EGRESS
    values[f"{PROJECT}:acmeEmail"] = DEPLOYER_ACME_EMAIL
    stack_file = REPO / project["stackConfigDir"] / f"Pulumi.{stack}.yaml"
    values.update(yaml.safe_load(stack_file.read_text())["config"])
    values.update({f"{PROJECT}:{k}": v for k, v in overrides.items()})
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items() if v is not None}


def main(stack: str, overrides: dict, out: Path) -> None:
    os.chdir(REPO)  # as `pulumi up` does: the program runs from the project directory
    sys.path.insert(0, str(REPO))
    import pulumi
    from pulumi.runtime import rpc
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    def plain(value):
        if rpc.is_rpc_secret(value):
            return {"__secret__": plain(rpc.unwrap_rpc_secret(value))}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    declared, calls = [], []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args):
            declared.append({"type": args.typ, "name": args.name, "inputs": plain(args.inputs)})
            state = dict(args.inputs)
            return f"/mock/{args.typ}/{args.name}", {**state, **self._extra(args)}

        @staticmethod
        def _extra(args):
            t, inputs = args.typ, args.inputs
            if t == "azure-native:resources:ResourceGroup":
                return {"name": f"{args.name}-a1b2"}
            if t == "azure-native:containerservice:ManagedCluster":
                return {"name": f"{args.name}-c3d4", "fqdn": "c.hcp.westeurope.azmk8s.io",
                        "oidcIssuerProfile": {"enabled": True, "issuerURL": OIDC_ISSUER},
                        "identityProfile": {"kubeletidentity": {
                            "objectId": KUBELET_OID, "clientId": "kubelet-client",
                            "resourceId": "/mock/kubelet-identity"}}}
            if t == "azure-native:monitor:AzureMonitorWorkspace":
                return {"name": args.name, "metrics": {"prometheusQueryEndpoint": PROM_ENDPOINT,
                                                       "internalId": "mock"}}
            if t == "azure-native:managedidentity:UserAssignedIdentity":
                if "keda" not in args.name:  # the model store's: its own ids
                    return {"name": args.name, "clientId": MODELS_CLIENT_ID,
                            "principalId": MODELS_OID, "tenantId": TENANT}
                return {"name": args.name, "clientId": KEDA_CLIENT_ID, "principalId": KEDA_OID,
                        "tenantId": TENANT}
            if t == "azure-native:storage:StorageAccount":
                return {"name": inputs["accountName"]}
            if t == "azure-native:storage:BlobContainer":
                return {"name": inputs["containerName"]}
            if t == "azure-native:containerregistry:Registry":
                return {"name": inputs["registryName"],
                        "loginServer": f"{inputs['registryName']}.azurecr.io"}
            if t == "docker-build:index:Image":
                return {"digest": "sha256:" + hashlib.sha256(args.name.encode()).hexdigest()}
            if t == "command:local:Command":
                return {"stdout": "", "stderr": ""}
            if t.startswith("random:index/random"):
                result = hashlib.sha256(args.name.encode()).hexdigest()[: int(inputs["length"])]
                return {"result": rpc.wrap_rpc_secret(result) if "Password" in t else result}
            return {}

        def call(self, args):
            calls.append({"token": args.token, "args": plain(args.args)})
            if args.token == "azure-native:authorization:getClientConfig":
                return {"clientId": "cli", "objectId": DEPLOYER_OID,
                        "subscriptionId": SUBSCRIPTION, "tenantId": TENANT}
            if args.token == "azure-native:authorization:getClientToken":
                return {"token": f"aad-access-token-{uuid.uuid4()}"}  # fresh every call
            if args.token.startswith("azure-native:containerservice:listManagedCluster"):
                encoded = base64.b64encode(yaml.safe_dump(AKS_EXEC_KUBECONFIG).encode()).decode()
                return {"kubeconfigs": [{"name": "clusterUser", "value": encoded}]}
            raise NotImplementedError(args.token)

    pulumi.runtime.set_all_config(stack_config(stack, overrides))
    options = {}

    class Monitor(MockMonitor):
        """Also records the resource options the mocks' new_resource does not see."""

        def RegisterResource(self, request):
            timeouts = request.customTimeouts
            options[request.name] = {
                "parent": request.parent.rsplit("::", 1)[-1] if request.parent else None,
                "protect": request.protect, "retainOnDelete": request.retainOnDelete,
                "provider": request.provider or None,  # "<urn>::<id>" of the provider
                "dependsOn": sorted(urn.rsplit("::", 1)[-1] for urn in request.dependencies),
                "customTimeouts": {k: getattr(timeouts, k) for k in ("create", "update", "delete")
                                   if getattr(timeouts, k)},
                "ignoreChanges": list(request.ignoreChanges),
                "replaceOnChanges": list(request.replaceOnChanges),
                "deleteBeforeReplace": request.deleteBeforeReplace,
                # former names (Alias(name=...)); azure-native's own type aliases left out
                "aliases": [a.spec.name for a in request.aliases
                            if a.HasField("spec") and a.spec.name],
            }
            return super().RegisterResource(request)

    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False,
                             monitor=Monitor(mocks))

    exports = {}
    pulumi.export = lambda name, value: exports.__setitem__(name, pulumi.Output.from_input(value))
    error = None
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(str(REPO / "__main__.py"))))
    except Exception as err:  # noqa: BLE001 - reported to the test, which decides
        error = f"{type(err).__name__}: {err}"

    async def resolve():
        return {name: {"value": await out.future(), "secret": await out.is_secret()}
                for name, out in exports.items()}
    outputs = _sync_await(resolve()) if error is None else {}
    for resource in declared:
        resource["options"] = options.get(resource["name"], {})
    out.write_text(json.dumps({"error": error, "resources": declared, "calls": calls,
                               "outputs": outputs}, indent=1))


if __name__ == "__main__":
    clock = os.environ.get("MOCK_RUN_CLOCK")
    if clock:
        import time_machine
        with time_machine.travel(clock, tick=True):
            main(sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]))
    else:
        main(sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]))
