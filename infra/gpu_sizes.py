"""Which Azure VM sizes can run the GPU pool, and why the others cannot.

Kept apart from infra/config/ because it is reference data that changes with
Azure's catalogue (a new NC size, a retirement), not with this program.
"""
import hashlib
import json
import re

#: NC-family sizes AKS can schedule today, with the GPUs each VM carries
#: (the capacity check multiplies this by the pool's max node count).
GPUS_PER_VM = {
    "Standard_NC4as_T4_v3": 1,
    "Standard_NC8as_T4_v3": 1,
    "Standard_NC16as_T4_v3": 1,
    "Standard_NC64as_T4_v3": 4,
    "Standard_NC24ads_A100_v4": 1,
    "Standard_NC48ads_A100_v4": 2,
    "Standard_NC96ads_A100_v4": 4,
    "Standard_NC40ads_H100_v5": 1,
    "Standard_NC80adis_H100_v5": 2,
}

SUGGESTION = (
    "use Standard_NC4as_T4_v3 (T4, the closest to the 2019 NC6), or for more "
    "throughput Standard_NC24ads_A100_v4 / Standard_NC40ads_H100_v5"
)

#: (pattern, why it is gone). NCv1 (the 2019 recipe's NC6) and NCv2 were
#: retired on 2023-09-06, NCv3 (NC*s_v3) on 2025-09-30.
RETIRED = (
    (re.compile(r"^Standard_NC(6|12|24|24r)$", re.I),
     "is an NC-series (v1, K80) size, retired by Azure in September 2023"),
    (re.compile(r"^Standard_NC\d+r?s_v2$", re.I),
     "is an NCv2 (P100) size, retired by Azure in September 2023"),
    (re.compile(r"^Standard_NC\d+r?s_v3$", re.I),
     "is an NCv3 (V100) size, retired by Azure in September 2025"),
)


def gpu_size_problem(vm_size: str) -> str | None:
    """Why `vm_size` cannot back the GPU pool, or None if it can."""
    for pattern, why in RETIRED:
        if pattern.match(vm_size):
            return f"{vm_size!r} {why}; {SUGGESTION}"
    if vm_size in GPUS_PER_VM:
        return None
    if not vm_size.lower().startswith("standard_nc"):
        return f"{vm_size!r} is not an NC-family GPU size; {SUGGESTION}"
    return (f"{vm_size!r} is not a known NC-family GPU size; "
            f"choose one of {', '.join(GPUS_PER_VM)}")


#: AKS's rule for Linux agent pool names: a lowercase letter, then up to 11 more of a-z, 0-9.
_POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
#: Hex digits of the immutable shape's digest at the end of the name.
_SHAPE_DIGITS = 4


def gpu_pool_name(vm_size: str, immutable: dict | None = None) -> str:
    """The GPU pool's AKS name: its VM size, compacted (Standard_NC4as_T4_v3 -> nc4ast4), then
    a short digest of every property AKS cannot change on an existing pool (`immutable`).

    The name is part of the pool's Azure resource id. Changing any of those properties
    therefore makes a new pool under a new name, which Pulumi creates before it deletes the
    old one, instead of an in-place update AKS refuses, or a replacement under the same name
    that would collide with itself."""
    compact = re.sub(r"[^a-z0-9]", "", vm_size.lower().removeprefix("standard_"))
    compact = re.sub(r"v\d+$", "", compact)  # the size's generation suffix goes first
    shape = json.dumps({"vmSize": vm_size, **(immutable or {})}, sort_keys=True)
    digest = hashlib.sha256(shape.encode()).hexdigest()[:_SHAPE_DIGITS]
    name = compact[:12 - _SHAPE_DIGITS] + digest
    if not _POOL_NAME.match(name):
        raise ValueError(f"{vm_size!r} gives no valid AKS pool name ({name!r})")
    return name
