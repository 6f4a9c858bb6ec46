"""What the system pool must hold, against what its VMs can give: checked in config, before `up`.

More: docs/deploying.md, "How the program is built".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

#: Azure CNI Overlay's default max pods per node (the stack does not override it).
MAX_PODS = 250
EVICTION_MI = 100
#: Kept free on top of the requests: the add-on figures are estimates, and a rolling
#: update of a system Deployment briefly runs one pod more.
HEADROOM = 0.10
#: AKS kube-reserved CPU (millicores) by cores on the host.
KUBE_RESERVED_CPU_M = {1: 60, 2: 100, 4: 140, 8: 180, 16: 260, 32: 420, 64: 740}
#: General-purpose sizes a system pool is usually built from: (vCPUs, memory GiB).
VM_SIZES = {
    "Standard_D2s_v5": (2, 8), "Standard_D4s_v5": (4, 16), "Standard_D8s_v5": (8, 32),
    "Standard_D2ds_v5": (2, 8), "Standard_D4ds_v5": (4, 16), "Standard_D8ds_v5": (8, 32),
    "Standard_D2as_v5": (2, 8), "Standard_D4as_v5": (4, 16), "Standard_D8as_v5": (8, 32),
    "Standard_D2ads_v5": (2, 8), "Standard_D4ads_v5": (4, 16), "Standard_D8ads_v5": (8, 32),
    "Standard_D2s_v6": (2, 8), "Standard_D4s_v6": (4, 16), "Standard_D8s_v6": (8, 32),
    "Standard_D2ds_v6": (2, 8), "Standard_D4ds_v6": (4, 16), "Standard_D8ds_v6": (8, 32),
    "Standard_E2s_v5": (2, 16), "Standard_E4s_v5": (4, 32), "Standard_E8s_v5": (8, 64),
}
#: The Envoy proxy replicas behind the Gateway (the EnvoyProxy's envoyDeployment.replicas).
EDGE_REPLICAS = 2
#: Per proxy pod, the stack sets both containers' requests (infra/edge.py): Envoy itself,
#: and Envoy Gateway's shutdown manager at its own default (api/v1alpha1/shared_types.go).
EDGE_PROXY_REQUESTS = {"envoy": ("200m", "256Mi"), "shutdown-manager": ("10m", "32Mi")}
#: The Envoy Gateway controller (one replica, gateway-helm's default requests).
EDGE_CONTROLLER_REQUESTS = ("100m", "256Mi")
#: cert-manager's pods: the chart sets no requests, so the stack sets these (infra/edge.py).
CERT_MANAGER_REQUESTS = {"controller": ("10m", "64Mi"), "webhook": ("10m", "32Mi"),
                         "cainjector": ("10m", "64Mi")}


@dataclass(frozen=True)
class Workload:
    """Pods of one Deployment (replicas) or DaemonSet (per_node) on the system pool."""
    name: str
    cpu_m: int
    memory_mi: int
    replicas: int = 0
    per_node: bool = False
    when: str = "always"  # always | monitoring | autoscaling | tls
    estimate: bool = True  # False: the stack sets (or read from source) the exact figure

    def pods(self, nodes: int) -> int:
        return nodes if self.per_node else self.replicas


def _m(cpu: str) -> int:
    return int(cpu[:-1]) if cpu.endswith("m") else int(float(cpu) * 1000)


def _mi(memory: str) -> int:
    return int(memory[:-2]) * (1024 if memory.endswith("Gi") else 1)


SYSTEM_WORKLOADS: tuple[Workload, ...] = (
    # AKS, always there (kube-system); estimates.
    Workload("coredns", 100, 70, replicas=2),
    Workload("coredns-autoscaler", 20, 10, replicas=1),
    Workload("metrics-server", 50, 80, replicas=2),
    Workload("konnectivity-agent", 20, 20, replicas=2),
    Workload("konnectivity-agent-autoscaler", 20, 10, replicas=1),
    Workload("azure-wi-webhook-controller-manager", 100, 20, replicas=2),
    Workload("cilium-operator", 10, 64, replicas=2),
    Workload("cloud-node-manager", 50, 50, per_node=True),
    Workload("azure-ip-masq-agent", 100, 50, per_node=True),
    Workload("azure-cns", 40, 250, per_node=True),
    Workload("cilium", 100, 300, per_node=True),
    Workload("csi-azuredisk-node", 30, 60, per_node=True),
    Workload("csi-azurefile-node", 30, 60, per_node=True),
    # The Azure Policy add-on (the stack enables it) and its Gatekeeper.
    Workload("azure-policy", 30, 50, replicas=1),
    Workload("azure-policy-webhook", 30, 50, replicas=1),
    Workload("gatekeeper-audit", 100, 256, replicas=1),
    Workload("gatekeeper-controller", 100, 256, replicas=2),
    # The edge: Envoy Gateway's controller and the Gateway's Envoy proxies; exact.
    Workload("envoy-gateway", _m(EDGE_CONTROLLER_REQUESTS[0]), _mi(EDGE_CONTROLLER_REQUESTS[1]),
             replicas=1, estimate=False),
    Workload("envoy (scoring gateway)",
             sum(_m(cpu) for cpu, _ in EDGE_PROXY_REQUESTS.values()),
             sum(_mi(mem) for _, mem in EDGE_PROXY_REQUESTS.values()),
             replicas=EDGE_REPLICAS, estimate=False),
    # Managed Prometheus's collector (monitoring: true); estimates.
    Workload("ama-metrics", 150, 500, replicas=2, when="monitoring"),
    Workload("ama-metrics-ksm", 5, 50, replicas=1, when="monitoring"),
    Workload("ama-metrics-operator-targets", 10, 50, replicas=1, when="monitoring"),
    Workload("ama-metrics-node", 50, 150, per_node=True, when="monitoring"),
    # The KEDA add-on (autoscaling: true); estimates.
    Workload("keda-operator", 100, 100, replicas=1, when="autoscaling"),
    Workload("keda-operator-metrics-apiserver", 100, 100, replicas=1, when="autoscaling"),
    Workload("keda-admission-webhooks", 100, 100, replicas=1, when="autoscaling"),
    # cert-manager (tls: true); exact, the stack sets them.
    *(Workload(f"cert-manager-{part}" if part != "controller" else "cert-manager",
               _m(cpu), _mi(mem), replicas=1, when="tls", estimate=False)
      for part, (cpu, mem) in CERT_MANAGER_REQUESTS.items()),
)


@dataclass(frozen=True)
class Capacity:
    cpu_m: int
    memory_mi: int


def allocatable(vm_size: str) -> Capacity:
    """What one node of `vm_size` offers pods, by AKS's reservation rules."""
    cores, memory_gib = VM_SIZES[vm_size]
    total_mi = memory_gib * 1024
    reserved_mi = min(math.ceil((20 * MAX_PODS + 50) * 1e6 / 2**20), total_mi // 4)
    return Capacity(cores * 1000 - KUBE_RESERVED_CPU_M[cores],
                    total_mi - reserved_mi - EVICTION_MI)


def requested(nodes: int, enabled: set[str]) -> tuple[Capacity, list[tuple[Workload, int]]]:
    """The summed requests of every workload that runs, and the rows that made them."""
    rows = [(w, w.pods(nodes)) for w in SYSTEM_WORKLOADS if w.when == "always" or w.when in enabled]
    return (Capacity(sum(w.cpu_m * n for w, n in rows), sum(w.memory_mi * n for w, n in rows)),
            rows)


def shortfall(vm_size: str, nodes: int, enabled: set[str]) -> str | None:
    """Why `nodes` x `vm_size` cannot hold the system workloads, or None when they fit."""
    one = allocatable(vm_size)
    have = Capacity(one.cpu_m * nodes, one.memory_mi * nodes)
    need, _ = requested(nodes, enabled)
    want_cpu, want_mem = math.ceil(need.cpu_m * (1 + HEADROOM)), math.ceil(need.memory_mi * (1 + HEADROOM))
    short = []
    if want_cpu > have.cpu_m:
        short.append(f"CPU: {need.cpu_m}m requested (+{HEADROOM:.0%} headroom) > {have.cpu_m}m "
                     "allocatable")
    if want_mem > have.memory_mi:
        short.append(f"memory: {need.memory_mi}Mi requested (+{HEADROOM:.0%} headroom) > "
                     f"{have.memory_mi}Mi allocatable")
    if not short:
        return None
    return (f"{nodes} x {vm_size} cannot hold what runs on the system pool "
            f"({'; '.join(short)}; the GPU pool's taint keeps these pods off the GPU nodes). "
            "Raise systemVmSize (e.g. Standard_D4s_v5) or systemNodeCount; "
            "docs/deploying.md lists what runs there")
