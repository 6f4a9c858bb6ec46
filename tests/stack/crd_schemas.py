"""JSON schemas for the custom resources the stack declares, keyed by (apiVersion, kind).

kubernetes-validate only knows built-in kinds. These schemas cover the fields
this stack sets, with types and enums taken from each project's CRD reference
(cert-manager v1.19, KEDA v2 on AKS, Azure managed Prometheus's PodMonitor,
AKS application routing's NginxIngressController). Every object level is
closed (additionalProperties false), so a misspelt field fails here instead
of being pruned silently by the API server.
"""


def obj(required: list[str] | None = None, **properties) -> dict:
    return {"type": "object", "properties": properties, "required": required or [],
            "additionalProperties": False}


def string(**extra) -> dict:
    return {"type": "string", "minLength": 1, **extra}


STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
INT = {"type": "integer", "minimum": 0}
NAME = string(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", maxLength=253)
CLUSTER_META = obj(["name"], name=NAME, labels=STR_MAP, annotations=STR_MAP)
META = obj(["name", "namespace"], name=NAME, namespace=NAME, labels=STR_MAP, annotations=STR_MAP)
TOLERATION = obj(["key", "operator", "effect"], key=string(), operator={"enum": ["Equal", "Exists"]},
                 value={"type": "string"}, effect={"enum": ["NoSchedule", "PreferNoSchedule",
                                                           "NoExecute"]})
PLACEMENT = obj(nodeSelector=STR_MAP, tolerations={"type": "array", "items": TOLERATION})


def resource(api_version: str, kind: str, spec: dict, metadata: dict = META) -> dict:
    return obj(["apiVersion", "kind", "metadata", "spec"], apiVersion={"const": api_version},
               kind={"const": kind}, metadata=metadata, spec=spec)


CRD_SCHEMAS = {
    ("cert-manager.io/v1", "ClusterIssuer"): resource(
        "cert-manager.io/v1", "ClusterIssuer", metadata=CLUSTER_META, spec=obj(["acme"], acme=obj(
            ["server", "privateKeySecretRef", "solvers"],
            email=string(pattern=r"^[^@\s]+@[^@\s]+$"),
            server=string(pattern=r"^https://"),
            privateKeySecretRef=obj(["name"], name=NAME),
            solvers={"type": "array", "minItems": 1, "items": obj(http01=obj(["ingress"], ingress=obj(
                ingressClassName=NAME, podTemplate=obj(spec=PLACEMENT))))},
        ))),
    ("cert-manager.io/v1", "Certificate"): resource("cert-manager.io/v1", "Certificate", obj(
        ["secretName", "issuerRef", "dnsNames"],
        secretName=NAME,
        dnsNames={"type": "array", "minItems": 1, "items": string(maxLength=253)},
        issuerRef=obj(["name"], name=NAME, kind={"enum": ["Issuer", "ClusterIssuer"]},
                      group={"const": "cert-manager.io"}),
        privateKey=obj(algorithm={"enum": ["RSA", "ECDSA", "Ed25519"]},
                       size={"enum": [256, 384, 521, 2048, 3072, 4096]},
                       rotationPolicy={"enum": ["Never", "Always"]}),
    )),
    ("keda.sh/v1alpha1", "TriggerAuthentication"): resource(
        "keda.sh/v1alpha1", "TriggerAuthentication", obj(["podIdentity"], podIdentity=obj(
            ["provider"], provider={"enum": ["none", "azure-workload", "aws", "gcp"]},
            identityId=string()))),
    ("keda.sh/v1alpha1", "ScaledObject"): resource("keda.sh/v1alpha1", "ScaledObject", obj(
        ["scaleTargetRef", "triggers"],
        scaleTargetRef=obj(["name"], apiVersion=string(), kind=string(), name=NAME),
        minReplicaCount=INT, maxReplicaCount={"type": "integer", "minimum": 1},
        pollingInterval={"type": "integer", "minimum": 1},
        advanced=obj(horizontalPodAutoscalerConfig=obj(behavior={"type": "object"})),
        triggers={"type": "array", "minItems": 1, "items": obj(
            ["type", "metadata"], type={"const": "prometheus"}, name=NAME,
            metricType={"enum": ["AverageValue", "Value", "Utilization"]},
            metadata=obj(["serverAddress", "query", "threshold"],
                         serverAddress=string(pattern=r"^https://"), query=string(),
                         threshold=string(pattern=r"^\d+(\.\d+)?$"),
                         ignoreNullValues={"enum": ["true", "false"]}),
            authenticationRef=obj(["name"], name=NAME))},
    )),
    ("azmonitoring.coreos.com/v1", "PodMonitor"): resource(
        "azmonitoring.coreos.com/v1", "PodMonitor", obj(
            ["selector", "podMetricsEndpoints"],
            selector=obj(matchLabels=STR_MAP),
            podMetricsEndpoints={"type": "array", "minItems": 1, "items": obj(
                ["port"], port=NAME, path=string(pattern="^/"),
                interval=string(pattern=r"^\d+[smh]$"))},
            labelLimit=INT, labelNameLengthLimit=INT, labelValueLengthLimit=INT)),
    ("approuting.kubernetes.azure.com/v1alpha1", "NginxIngressController"): resource(
        "approuting.kubernetes.azure.com/v1alpha1", "NginxIngressController",
        metadata=CLUSTER_META, spec=obj(
            ["ingressClassName", "controllerNamePrefix"], ingressClassName=NAME,
            controllerNamePrefix=string(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength=60),
            loadBalancerAnnotations=STR_MAP,
            # Azure/aks-app-routing-operator api/v1alpha1 Scaling: minReplicas/maxReplicas >= 1.
            scaling=obj(minReplicas={"type": "integer", "minimum": 1},
                        maxReplicas={"type": "integer", "minimum": 1},
                        threshold={"enum": ["rapid", "balanced", "steady"]}))),
}
