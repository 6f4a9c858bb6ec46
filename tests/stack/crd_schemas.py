"""JSON schemas for the custom resources the stack declares, keyed by (apiVersion, kind).

kubernetes-validate only knows built-in kinds. The custom ones are checked
against the schema the API server itself would apply: each CRD's
`openAPIV3Schema`, read from the upstream CRDs beside the repository
(tests/reference/crds: Gateway API v1.4.1 standard channel, the bundle AKS's
managed Gateway API installs on Kubernetes 1.35; cert-manager v1.21.1; KEDA
v2.18.3). Envoy Gateway's EnvoyProxy is a pruned extract of its v1.9.0 CRD
(same folder, with the commit it came from); Azure managed Prometheus's
PodMonitor has a small hand-written schema.

The conversion (structural schema -> JSON Schema) follows the reference
README: `x-kubernetes-int-or-string` is "integer or string", other
`x-kubernetes-*` keys are annotations. One deliberate tightening: every object
that lists its properties and does not preserve unknown fields is closed
(additionalProperties false). The API server would *prune* such a field
silently, so a misspelt one would vanish unseen; here it fails. The CEL rules
(`x-kubernetes-validations`) are evaluated separately (cel_rules.py).
"""
from __future__ import annotations

import copy
import json
from functools import cache

import yaml

from stack_harness import reference_file

GATEWAY = "gateway-api-standard-v1.4.1/gateway.networking.k8s.io_"
#: (apiVersion, kind) -> the upstream CRD file that defines it
UPSTREAM = {
    ("gateway.networking.k8s.io/v1", "GatewayClass"): GATEWAY + "gatewayclasses.yaml",
    ("gateway.networking.k8s.io/v1", "Gateway"): GATEWAY + "gateways.yaml",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): GATEWAY + "httproutes.yaml",
    ("cert-manager.io/v1", "ClusterIssuer"): "cert-manager-v1.21.1/cert-manager.io_clusterissuers.yaml",
    ("cert-manager.io/v1", "Certificate"): "cert-manager-v1.21.1/cert-manager.io_certificates.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda-v2.18.3/keda.sh_scaledobjects.yaml",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda-v2.18.3/keda.sh_triggerauthentications.yaml",
}

STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
NAME = {"type": "string", "minLength": 1, "maxLength": 253,
        "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"}


def metadata(namespaced: bool) -> dict:
    """What the stack sets in metadata (the CRDs leave it to the API server's ObjectMeta)."""
    props = {"name": NAME, "labels": STR_MAP, "annotations": STR_MAP}
    if namespaced:
        props["namespace"] = NAME
    return {"type": "object", "properties": props, "additionalProperties": False,
            "required": ["name", "namespace"] if namespaced else ["name"]}


def to_json_schema(node):
    """A structural schema node as JSON Schema, objects closed (see the module doc)."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items()
           if k not in ("x-kubernetes-validations", "description")}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    for key in [k for k in out if k.startswith("x-kubernetes-")]:
        out.pop(key)
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
            and not preserve:
        out["additionalProperties"] = False
    if "properties" in out:
        out["properties"] = {k: to_json_schema(v) for k, v in node["properties"].items()}
    return out


def crd_version(crd: dict, version: str) -> dict:
    [found] = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return found["schema"]["openAPIV3Schema"]


@cache
def upstream_schema(api_version: str, kind: str) -> tuple[dict, dict]:
    """(JSON schema, the raw openAPIV3Schema) of one upstream kind."""
    crd = yaml.safe_load(reference_file("crds/" + UPSTREAM[(api_version, kind)]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    raw = crd_version(crd, api_version.rpartition("/")[2])
    return _finish(raw, api_version, kind, crd["spec"]["scope"] == "Namespaced"), raw


def _finish(raw: dict, api_version: str, kind: str, namespaced: bool) -> dict:
    schema = to_json_schema(copy.deepcopy(raw))
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = metadata(namespaced)
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata",
                                 "spec"})
    return schema


@cache
def envoy_proxy_schema() -> tuple[dict, dict]:
    extract = json.loads(reference_file("crds/envoyproxy-v1alpha1.pruned.json").read_text())
    raw = extract["openAPIV3Schema"]
    return _finish(raw, "gateway.envoyproxy.io/v1alpha1", "EnvoyProxy", True), raw


def _obj(required: list[str] | None = None, **properties) -> dict:
    return {"type": "object", "properties": properties, "required": required or [],
            "additionalProperties": False}


#: Azure managed Prometheus's PodMonitor (azmonitoring.coreos.com/v1), by hand: its CRD is
#: installed by the add-on and not among the reference copies. Fields from Azure's docs
#: ("Create custom Prometheus scrape jobs ... PodMonitor"), prometheus-operator's shapes.
POD_MONITOR = _obj(
    ["apiVersion", "kind", "metadata", "spec"],
    apiVersion={"const": "azmonitoring.coreos.com/v1"}, kind={"const": "PodMonitor"},
    metadata=metadata(True),
    spec=_obj(
        ["selector", "podMetricsEndpoints"],
        selector=_obj(matchLabels=STR_MAP),
        podMetricsEndpoints={"type": "array", "minItems": 1, "items": _obj(
            ["port"], port=NAME, path={"type": "string", "pattern": "^/"},
            interval={"type": "string", "pattern": r"^\d+[smh]$"},
            relabelings={"type": "array", "items": _obj(
                sourceLabels={"type": "array", "items": {
                    "type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}},
                targetLabel={"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
                action={"enum": ["replace", "keep", "drop", "labelmap", "labeldrop",
                                 "labelkeep"]},
                regex={"type": "string"}, replacement={"type": "string"})})},
        labelLimit={"type": "integer", "minimum": 0},
        labelNameLengthLimit={"type": "integer", "minimum": 0},
        labelValueLengthLimit={"type": "integer", "minimum": 0}))


def schema_for(api_version: str, kind: str) -> dict | None:
    if (api_version, kind) in UPSTREAM:
        return upstream_schema(api_version, kind)[0]
    if (api_version, kind) == ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"):
        return envoy_proxy_schema()[0]
    if (api_version, kind) == ("azmonitoring.coreos.com/v1", "PodMonitor"):
        return POD_MONITOR
    return None


def raw_schema_for(api_version: str, kind: str) -> dict | None:
    """The CRD's own openAPIV3Schema (with its CEL rules), where there is one."""
    if (api_version, kind) in UPSTREAM:
        return upstream_schema(api_version, kind)[1]
    if (api_version, kind) == ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"):
        return envoy_proxy_schema()[1]
    return None


KNOWN = {*UPSTREAM, ("gateway.envoyproxy.io/v1alpha1", "EnvoyProxy"),
         ("azmonitoring.coreos.com/v1", "PodMonitor")}
