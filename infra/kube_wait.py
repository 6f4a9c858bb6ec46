"""Declared waits on the cluster, for what the Kubernetes provider would not wait for itself.

More: docs/deploying.md, "How the program is built".
"""
from __future__ import annotations

import shlex

import pulumi
from pulumi_command import local

#: Bounds: how long a first `up` may wait for each before it fails with a message.
RBAC_TRIES, RBAC_PAUSE_S = 60, 10
CRD_CREATE_TIMEOUT = "15m"
CRD_ESTABLISHED_TIMEOUT = "5m"

_PREAMBLE = """set -eu
kubeconfig=$(mktemp)
trap 'rm -f "$kubeconfig"' EXIT
cat > "$kubeconfig"
k() { kubectl --kubeconfig "$kubeconfig" --request-timeout=30s "$@"; }
"""


def rbac_script() -> str:
    return _PREAMBLE + f"""tries=0
until [ "$(k auth can-i create namespaces --all-namespaces 2>/dev/null || true)" = yes ]; do
  tries=$((tries + 1))
  if [ "$tries" -ge {RBAC_TRIES} ]; then
    echo "Azure RBAC has not granted cluster admin after {RBAC_TRIES * RBAC_PAUSE_S} s; run pulumi up again" >&2
    exit 1
  fi
  sleep {RBAC_PAUSE_S}
done
echo "cluster admin granted"
"""


def crd_script(crds: list[str], objects: list[tuple[str, str]]) -> str:
    """Wait for each CRD to exist and be Established, then for each (namespace, kind/name)."""
    names = " ".join(shlex.quote(f"crd/{crd}") for crd in crds)
    lines = [f"k wait --for=create --timeout={CRD_CREATE_TIMEOUT} {names}",
             f"k wait --for=condition=Established --timeout={CRD_ESTABLISHED_TIMEOUT} {names}"]
    lines += [f"k -n {shlex.quote(ns)} wait --for=create --timeout={CRD_CREATE_TIMEOUT} "
              f"{shlex.quote(obj)}" for ns, obj in objects]
    return _PREAMBLE + "\n".join(lines) + "\n"


def rbac_ready(name: str, kubeconfig: pulumi.Input[str], cluster_id: pulumi.Input[str],
               opts: pulumi.ResourceOptions) -> local.Command:
    return local.Command(name, create=rbac_script(), stdin=kubeconfig, triggers=[cluster_id],
                         opts=opts)


def crds_established(name: str, kubeconfig: pulumi.Input[str], cluster_id: pulumi.Input[str],
                     crds: list[str], opts: pulumi.ResourceOptions,
                     objects: list[tuple[str, str]] | None = None) -> local.Command:
    return local.Command(name, create=crd_script(crds, objects or []), stdin=kubeconfig,
                         triggers=[cluster_id], opts=opts)
