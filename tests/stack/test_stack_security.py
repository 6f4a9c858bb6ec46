"""Security settings checkov does not judge, over every stack file: no pod the
program declares can reach the node's instance metadata service (IMDS, whose
managed identity tokens would let a compromised pod act as the node), because
every workload's namespace has a NetworkPolicy restricting its egress and no
egress rule admits 169.254.169.254. (Local accounts, the restricted namespace
and the ingress sources are checked in test_stack_program.py.)"""

from __future__ import annotations

import ipaddress

IMDS = ipaddress.ip_address("169.254.169.254")
POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _admits_imds(rule: dict) -> bool:
    """Whether one egress rule lets traffic reach IMDS. No ``to`` (or an empty
    one) means every destination; pod and namespace selectors match pods only."""
    peers = rule.get("to") or [{"ipBlock": {"cidr": "0.0.0.0/0"}}]
    for peer in peers:
        block = peer.get("ipBlock")
        if block and IMDS in ipaddress.ip_network(block["cidr"]) and not any(
                IMDS in ipaddress.ip_network(e) for e in block.get("except", [])):
            return True
    return False


def test_admits_imds_reads_rules_as_kubernetes_does():
    assert _admits_imds({}) and _admits_imds({"to": []})
    assert _admits_imds({"to": [{"ipBlock": {"cidr": "169.254.0.0/16"}}]})
    assert not _admits_imds({"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                                 "except": ["169.254.169.254/32"]}}]})
    assert not _admits_imds({"to": [{"namespaceSelector": {}}], "ports": [{"port": 53}]})


def _selects(policy: dict, workload: dict) -> bool:
    """Whether ``policy`` applies to the workload's pods (same namespace, labels match)."""
    if policy["metadata"]["namespace"] != workload["metadata"]["namespace"]:
        return False
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    labels = workload["spec"]["template"]["metadata"].get("labels", {})
    return wanted.items() <= labels.items()


def test_no_workload_can_reach_imds(stack_run):
    objects = stack_run.kubernetes_objects()
    egress = [o for o in objects if o["kind"] == "NetworkPolicy"
              and "Egress" in o["spec"].get("policyTypes", [])]
    for policy in egress:
        assert not any(_admits_imds(r) for r in policy["spec"].get("egress", [])), policy
    workloads = [o for o in objects if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]
    assert "Deployment" in {w["kind"] for w in workloads}
    for workload in workloads:
        assert any(_selects(p, workload) for p in egress), (
            f"{workload['kind']} {workload['metadata']['name']}: no NetworkPolicy limits its egress")
