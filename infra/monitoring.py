"""Azure Monitor managed Prometheus: where the cluster's metrics go, and how they get there.

More: docs/deploying.md, "How the program is built".
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import monitor

PROMETHEUS_STREAM = "Microsoft-PrometheusMetrics"


@dataclass
class ManagedPrometheusArgs:
    resource_group_name: pulumi.Input[str]
    location: str
    cluster_id: pulumi.Input[str]


class ManagedPrometheus(pulumi.ComponentResource):
    """An Azure Monitor workspace fed by the cluster's metrics add-on."""

    workspace_id: pulumi.Output[str]
    query_endpoint: pulumi.Output[str]

    def __init__(self, name: str, args: ManagedPrometheusArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-gpu-scoring:infra:ManagedPrometheus", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        where = {"resource_group_name": args.resource_group_name, "location": args.location}

        workspace = monitor.AzureMonitorWorkspace(f"{name}-workspace", **where, opts=child)
        endpoint = monitor.DataCollectionEndpoint(
            f"{name}-dce", **where, kind="Linux",
            network_acls={"public_network_access": "Enabled"}, opts=child)
        account = "workspace"
        rule = monitor.DataCollectionRule(
            f"{name}-dcr", **where, kind="Linux",
            description="Managed Prometheus: the AKS metrics add-on -> the Azure Monitor workspace",
            data_collection_endpoint_id=endpoint.id,
            data_sources={"prometheus_forwarder": [{
                "name": "prometheus", "streams": [PROMETHEUS_STREAM]}]},
            destinations={"monitoring_accounts": [{
                "name": account, "account_resource_id": workspace.id}]},
            data_flows=[{"streams": [PROMETHEUS_STREAM], "destinations": [account]}],
            opts=child)
        monitor.DataCollectionRuleAssociation(
            f"{name}-dcra", resource_uri=args.cluster_id, data_collection_rule_id=rule.id,
            description="Sends this cluster's Prometheus metrics to the workspace; deleting "
                        "it stops collection.",
            opts=child)

        self.workspace_id = workspace.id
        self.query_endpoint = workspace.metrics.apply(lambda m: m.prometheus_query_endpoint)
        self.register_outputs({"workspaceId": self.workspace_id,
                               "queryEndpoint": self.query_endpoint})
