"""Scoring pods that follow load: a KEDA ScaledObject on the service's own Prometheus metrics.

More: docs/deploying.md, "How the program is built".
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import authorization

from infra.config import DeploymentConfig, ScalingConfig
from infra.identity import workload_identity
from infra.roles import MONITORING_DATA_READER, grant
from scoring_app.contract import WORK_ROUTES_REGEX

KEDA_NAMESPACE, KEDA_OPERATOR = "kube-system", "keda-operator"
CLIENT_ID_ANNOTATION = "azure.workload.identity/client-id"
USE_LABEL = "azure.workload.identity/use"
#: On the operator's pod template: a new client id rolls the operator once.
RESTART_ANNOTATION = "aks-gpu-scoring/keda-identity"
#: Server-side apply takes over fields another manager (the add-on) also set.
PATCH_FORCE = {"pulumi.com/patchForce": "true"}


def load_queries(namespace: str, deployment: str) -> dict[str, str]:
    """The PromQL KEDA evaluates, by trigger name; each returns one number for one deployment
    (the `deployment` label the PodMonitor sets from the pod's label)."""
    where = f'namespace="{namespace}",deployment="{deployment}"'
    return {
        "request-rate": f'sum(rate(scoring_requests_total{{{where},route=~"{WORK_ROUTES_REGEX}"}}[1m]))',
        "queue-depth": f"sum(scoring_queue_depth{{{where}}})",
    }


@dataclass
class AutoscalerArgs:
    scaling: ScalingConfig
    resource_group_name: pulumi.Input[str]
    location: str
    oidc_issuer_url: pulumi.Input[str]
    workspace_id: pulumi.Input[str]
    query_endpoint: pulumi.Input[str]
    namespace: str
    deployments: tuple[DeploymentConfig, ...]
    deployment_names: dict[str, pulumi.Input[str]]  # deployment -> its Deployment's name
    provider: k8s.Provider
    keda_crds: pulumi.Resource | None = None  # wait until the add-on's CRDs and operator exist


class Autoscaler(pulumi.ComponentResource):
    """KEDA's identity in Azure, and one ScaledObject per deployment, each in its own range."""

    def __init__(self, name: str, args: AutoscalerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-gpu-scoring:infra:Autoscaler", name, None, opts)
        self._kube = pulumi.ResourceOptions(parent=self, provider=args.provider)
        deployer = authorization.get_client_config_output()
        azure = pulumi.ResourceOptions(parent=self)
        identity, federation = workload_identity(
            f"{name}-keda", args.resource_group_name, args.location, args.oidc_issuer_url,
            KEDA_NAMESPACE, KEDA_OPERATOR, azure)
        reader = grant(f"{name}-keda-reader", identity.principal_id, MONITORING_DATA_READER,
                       args.workspace_id, deployer.subscription_id, azure,
                       principal_type="ServicePrincipal")
        ready = [args.keda_crds] if args.keda_crds else []
        auth = self._operator_identity(name, args, identity, [*ready, federation, reader])
        for deployment in args.deployments:
            self._scaled_object(name, args, deployment, [*ready, auth])
        self.register_outputs({"identityClientId": identity.client_id})

    def _operator_identity(self, name: str, args: AutoscalerArgs, identity,
                           after: list) -> pulumi.Resource:
        """Steps 2 to 4 of the module docstring: the operator's account annotated, the
        operator restarted once per identity, then the TriggerAuthentication (returned)."""
        kube = self._kube
        account = k8s.core.v1.ServiceAccountPatch(
            f"{name}-keda-sa", metadata={
                "name": KEDA_OPERATOR, "namespace": KEDA_NAMESPACE,
                "annotations": {**PATCH_FORCE, CLIENT_ID_ANNOTATION: identity.client_id}},
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=after)))
        restart = k8s.apps.v1.DeploymentPatch(
            f"{name}-keda-restart",
            metadata={"name": KEDA_OPERATOR, "namespace": KEDA_NAMESPACE,
                      "annotations": PATCH_FORCE},
            spec={"template": {"metadata": {
                "labels": {USE_LABEL: "true"},
                "annotations": {RESTART_ANNOTATION: identity.client_id}}}},
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(depends_on=[account])))
        return k8s.apiextensions.CustomResource(
            f"{name}-trigger-auth", api_version="keda.sh/v1alpha1", kind="TriggerAuthentication",
            metadata={"name": "scoring-prometheus", "namespace": args.namespace},
            spec={"podIdentity": {"provider": "azure-workload", "identityId": identity.client_id}},
            opts=pulumi.ResourceOptions.merge(kube, pulumi.ResourceOptions(
                depends_on=[*after, restart])))

    def _scaled_object(self, name: str, args: AutoscalerArgs, deployment: DeploymentConfig,
                       after: list) -> None:
        """One deployment's ScaledObject: its own range, both triggers, up fast and down
        slowly."""
        cfg = args.scaling
        thresholds = {"request-rate": f"{cfg.requests_per_replica:g}",
                      "queue-depth": str(cfg.queue_per_replica)}
        triggers = [{
            "type": "prometheus", "name": trigger, "metricType": "AverageValue",
            "metadata": {"serverAddress": args.query_endpoint, "query": query,
                         "threshold": thresholds[trigger], "ignoreNullValues": "false"},
            "authenticationRef": {"name": "scoring-prometheus"},
        } for trigger, query in load_queries(args.namespace, deployment.name).items()]
        k8s.apiextensions.CustomResource(
            f"{name}-{deployment.name}-scaledobject", api_version="keda.sh/v1alpha1",
            kind="ScaledObject",
            metadata={"name": f"scoring-{deployment.name}", "namespace": args.namespace},
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "name": args.deployment_names[deployment.name]},
                "minReplicaCount": deployment.min_replicas,
                "maxReplicaCount": deployment.max_replicas,
                "pollingInterval": 15,
                "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
                    # Up fast (a new GPU node takes minutes anyway), down slowly and one
                    # pod at a time: each pod drains its in-flight requests first.
                    "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [
                        {"type": "Pods", "value": 2, "periodSeconds": 60}]},
                    "scaleDown": {"stabilizationWindowSeconds": 300, "policies": [
                        {"type": "Pods", "value": 1, "periodSeconds": 60}]},
                }}},
                "triggers": triggers,
            },
            opts=pulumi.ResourceOptions.merge(self._kube, pulumi.ResourceOptions(
                depends_on=after)))
