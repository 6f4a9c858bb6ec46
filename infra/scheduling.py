"""How GPU workloads find GPU nodes: the one place the taint and label live.

The cluster puts them on the GPU pool; the device plugin and the scoring
Deployment tolerate and select them. Sharing the constants keeps the three in
step: a missing toleration is the top cause of "GPU never advertised".
"""
GPU_TAINT = {"key": "sku", "value": "gpu", "effect": "NoSchedule"}
#: AKS puts this taint on every spot node; tolerating it costs nothing on regular nodes.
SPOT_TAINT = {"key": "kubernetes.azure.com/scalesetpriority", "value": "spot",
              "effect": "NoSchedule"}
#: ... and labels them so; the stack declares both on a spot pool (infra/cluster.py).
SPOT_LABEL = ("kubernetes.azure.com/scalesetpriority", "spot")
GPU_NODE_LABEL = ("aks-gpu-scoring/pool", "gpu")
#: The system pool's taint: AKS add-ons tolerate it; so must the few small cluster services
#: this stack adds (cert-manager and its ACME solver), as no other untainted pool exists.
SYSTEM_TAINT = {"key": "CriticalAddonsOnly", "value": "true", "effect": "NoSchedule"}


def taint_string(taint: dict) -> str:
    """The `key=value:Effect` form AKS's nodeTaints expects."""
    return f"{taint['key']}={taint['value']}:{taint['effect']}"


def system_pool_placement() -> dict:
    """nodeSelector and tolerations that put a small helper pod on the system pool."""
    return {"nodeSelector": {"kubernetes.io/os": "linux", "kubernetes.azure.com/mode": "system"},
            "tolerations": [{**SYSTEM_TAINT, "operator": "Equal"}]}


def gpu_tolerations() -> list[dict]:
    return [{**taint, "operator": "Equal"} for taint in (GPU_TAINT, SPOT_TAINT)]


def gpu_node_selector() -> dict:
    key, value = GPU_NODE_LABEL
    return {key: value}


def locked_down_container() -> dict:
    """The container securityContext every workload here shares (PSS restricted bar the uid)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
