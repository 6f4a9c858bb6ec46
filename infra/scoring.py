"""The scoring endpoint: shared keys, network policy and scrape; per deployment a Deployment,
Service and disruption budget.

More: docs/deploying.md, "How the program is built".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.config import DeploymentConfig, ServiceConfig
from infra.model_store import PodModel, signer_config_map
from infra.scheduling import gpu_node_selector, gpu_tolerations, locked_down_container
from scoring_app.contract import (APP_UID, DEPLOYMENT_LABEL, HTTP_PORT, KEY_FILES, KEYS_PATH,
                                  LIVE_PATH, METRICS_PATH, METRICS_PORT, READY_PATH, ServiceEnv)

NAMESPACE = "scoring"
#: The Envoy Gateway proxies run in the controller's namespace (its default deploy type).
EDGE_NAMESPACE = "envoy-gateway-system"
APP_LABEL = {"app.kubernetes.io/name": "scoring"}
IMDS = "169.254.169.254/32"
SERVICE_ACCOUNT = "scoring"
CONTAINER_NAME = "scoring"
SCRAPER_NAMESPACE = "kube-system"  # managed Prometheus's ama-metrics pods
SCRAPE_INTERVAL = "15s"
#: Probe budgets (seconds x failures): model load and warm-up may take up to 10 minutes.
STARTUP_PERIOD_S, STARTUP_FAILURES = 10, 60
READINESS_PERIOD_S, READINESS_FAILURES = 5, 2
#: A spot T4 scaling from zero: VM, node bootstrap and AKS's NVIDIA driver install.
NODE_READY_BUDGET_S = 20 * 60
#: A multi-GB TensorFlow GPU image pulled onto a fresh node.
IMAGE_PULL_BUDGET_S = 10 * 60


@dataclass
class ScoringServiceArgs:
    deployments: tuple[DeploymentConfig, ...]
    image_refs: dict[str, pulumi.Input[str]]  # deployment -> image
    service: ServiceConfig
    provider: k8s.Provider
    autoscaled: bool = False  # KEDA owns the replica count
    scraped: bool = False  # managed Prometheus is on: declare the PodMonitor
    gpu_pool: pulumi.Resource | None = None  # the pods' nodes: deleted only after the pods
    podmonitor_crd: pulumi.Resource | None = None  # wait until PodMonitor's CRD is Established
    #: modelStore blob: per deployment, what the model store adds to its pods (one
    #: identity per endpoint: every PodModel names the same one)
    models: dict[str, PodModel] | None = None


def deployment_labels(deployment: str) -> dict[str, str]:
    return {**APP_LABEL, DEPLOYMENT_LABEL: deployment}


def object_name(deployment: str) -> str:
    """The Deployment's, Service's and budget's name: scoring-<deployment>."""
    return f"{NAMESPACE}-{deployment}"


def container_env(cfg: ServiceConfig, deployment: DeploymentConfig,
                  model: PodModel | None = None) -> list[dict]:
    """The contract's variables (the keys are files, never variables), with the model
    store's fields (the fetched model's directory, capture) when it fetches the model."""
    return ServiceEnv(
        model_name=deployment.model_name, model_version=deployment.model_version,
        precision=deployment.precision, graceful_timeout_s=cfg.graceful_timeout_s,
        drain_s=cfg.drain_s, preprocess=deployment.preprocess, extra=dict(cfg.extra_env),
        **(model.service_env if model else {})).env()


def scoring_container(cfg: ServiceConfig, deployment: DeploymentConfig, image: pulumi.Input[str],
                      model: PodModel | None = None) -> dict:
    """The scoring container as docs/contract.md has it: one GPU, the probes on the
    contract's paths, the preStop pause, the keys as files, a read-only root."""
    probe = {"httpGet": {"path": READY_PATH, "port": "http"}, "timeoutSeconds": 3}
    return {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "Always",
        "ports": [{"name": "http", "containerPort": HTTP_PORT},
                  {"name": "metrics", "containerPort": METRICS_PORT}],
        "env": container_env(cfg, deployment, model),
        "resources": {
            "requests": {"cpu": cfg.cpu_request, "memory": cfg.memory_request},
            "limits": {"cpu": cfg.cpu_limit, "memory": cfg.memory_limit, "nvidia.com/gpu": "1"},
        },
        # Model load and warm-up may take minutes: up to 10 before liveness starts.
        "startupProbe": {**probe, "periodSeconds": STARTUP_PERIOD_S,
                         "failureThreshold": STARTUP_FAILURES},
        "readinessProbe": {**probe, "periodSeconds": READINESS_PERIOD_S,
                           "failureThreshold": READINESS_FAILURES},
        "livenessProbe": {"httpGet": {"path": LIVE_PATH, "port": "http"},
                          "timeoutSeconds": 3, "periodSeconds": 10, "failureThreshold": 3},
        # Lets the load balancer and endpoints drop the pod before SIGTERM arrives.
        "lifecycle": {"preStop": {"sleep": {"seconds": cfg.pre_stop_s}}},
        "securityContext": {**locked_down_container(), "runAsNonRoot": True,
                            "runAsUser": APP_UID, "runAsGroup": APP_UID},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "api-keys", "mountPath": KEYS_PATH, "readOnly": True},
                         *(model.mounts if model else ())],
    }


def rollout_timeouts(cfg: ServiceConfig, max_replicas: int,
                     fetch_budget_s: int = 0) -> pulumi.CustomTimeouts:
    """What `pulumi up` allows the Deployment: the probes' budgets, not the provider's 10 minutes.

    create: one node from zero + one image pull + the startup and readiness allowance (the
    pods start side by side); update: one node, then per pod a pull and the allowance
    (maxSurge 0: one pod at a time, each on the node its predecessor freed);
    delete: the grace period plus five minutes. With the model in Blob Storage the init
    container's fetch comes before the startup probe starts (probes do not run on init
    containers), so its budget (infra/model_store.py) is added to each pod's start."""
    start_s = (IMAGE_PULL_BUDGET_S + fetch_budget_s + STARTUP_PERIOD_S * STARTUP_FAILURES
               + READINESS_PERIOD_S * READINESS_FAILURES)
    minutes = lambda s: f"{math.ceil(s / 60)}m"  # noqa: E731
    return pulumi.CustomTimeouts(
        create=minutes(NODE_READY_BUDGET_S + start_s),
        update=minutes(NODE_READY_BUDGET_S + max(max_replicas, 1) * start_s),
        delete=minutes(grace_period_s(cfg) + 300))


def grace_period_s(cfg: ServiceConfig) -> int:
    """preStop pause + drain + gunicorn's graceful timeout + a margin, so SIGKILL never
    cuts a request (the shutdown timeline in docs/contract.md)."""
    return cfg.pre_stop_s + cfg.drain_s + cfg.graceful_timeout_s + 10


class ScoringService(pulumi.ComponentResource):
    """The GPU scoring deployments, each behind its own cluster-internal Service."""

    namespace: str
    service_names: dict[str, str]  # deployment -> its Service's name (the edge routes to it)
    deployment_names: dict[str, pulumi.Output[str]]  # deployment -> Deployment name
    primary_key: pulumi.Output[str]
    secondary_key: pulumi.Output[str]

    def __init__(self, name: str, args: ScoringServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-gpu-scoring:infra:ScoringService", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        cfg = args.service

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={"name": NAMESPACE, "labels": {
                f"pod-security.kubernetes.io/{mode}": "restricted"
                for mode in ("enforce", "audit", "warn")}},
            opts=self._child,
        )
        ns = namespace.metadata.name
        keys = self._keys(name, cfg, ns)
        first = next(iter(args.models.values()), None) if args.models else None
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata={"name": SERVICE_ACCOUNT, "namespace": ns, **(
                {"annotations": first.service_account_annotations} if first else {})},
            automount_service_account_token=False, opts=self._child)
        signer = signer_config_map(ns, args.models) if args.models else None
        self._signer = None
        if signer:  # modelPublicKey: the public keys the fetches check signatures with
            self._signer = k8s.core.v1.ConfigMap(f"{name}-model-signer", **signer,
                                                 opts=self._child)
        self.service_names, self.deployment_names = {}, {}
        for deployment in args.deployments:
            labels = deployment_labels(deployment.name)
            prefix, k8s_name = f"{name}-{deployment.name}", object_name(deployment.name)
            created = self._deployment(prefix, k8s_name, args, deployment, ns, labels, keys,
                                       account)
            k8s.core.v1.Service(
                f"{prefix}-svc",
                metadata={"name": k8s_name, "namespace": ns, "labels": labels},
                spec={"type": "ClusterIP", "selector": labels,
                      "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                 "protocol": "TCP"}]},
                opts=self._child)
            k8s.policy.v1.PodDisruptionBudget(
                f"{prefix}-pdb", metadata={"name": k8s_name, "namespace": ns, "labels": labels},
                spec={"maxUnavailable": 1, "selector": {"matchLabels": labels}},
                opts=self._child)
            self.service_names[deployment.name] = k8s_name
            self.deployment_names[deployment.name] = created.metadata.name
        if args.scraped:
            self._pod_monitor(name, ns, APP_LABEL, args.podmonitor_crd)
        self._network_policy(name, ns, APP_LABEL)

        self.namespace = NAMESPACE
        self.register_outputs({"serviceNames": self.service_names,
                               "deploymentNames": self.deployment_names})

    def _keys(self, name: str, cfg: ServiceConfig, ns) -> k8s.core.v1.Secret:
        """Two independent keys. Bumping one key's version in config replaces only that key,
        so clients on the other keep working while you roll the new one out."""
        primary, secondary = KEY_FILES
        versions = {primary: cfg.primary_key_version, secondary: cfg.secondary_key_version}
        results = {}
        for key in KEY_FILES:
            password = random.RandomPassword(
                f"{name}-{key}-key", length=48, special=False,
                keepers={"version": versions[key]}, opts=pulumi.ResourceOptions(parent=self))
            results[key] = pulumi.Output.secret(password.result)
        self.primary_key, self.secondary_key = results[primary], results[secondary]
        return k8s.core.v1.Secret(
            f"{name}-keys", metadata={"name": "scoring-api-keys", "namespace": ns},
            type="Opaque", string_data=results, opts=self._child)

    def _deployment(self, name, k8s_name, args: ScoringServiceArgs,
                    deployment: DeploymentConfig, ns, labels, keys, account):
        """One deployment's pods: rolled one at a time (maxSurge 0), waited for as long as
        the probes allow, after the GPU pool and whatever the model store needs first."""
        model = args.models.get(deployment.name) if args.models else None
        template_metadata = {"labels": {**labels, **(model.labels if model else {})},
                             **({"annotations": model.annotations} if model else {})}
        return k8s.apps.v1.Deployment(
            f"{name}-deploy",
            metadata={"name": k8s_name, "namespace": ns, "labels": labels},
            spec={
                "replicas": None if args.autoscaled else deployment.replicas,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "RollingUpdate",
                             "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                "template": {"metadata": template_metadata,
                             "spec": self._pod_spec(args, deployment, model, labels, keys,
                                                    account)},
            },
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(
                custom_timeouts=rollout_timeouts(
                    args.service, deployment.max_pods(args.autoscaled),
                    model.fetch_budget_s if model else 0),
                depends_on=[*([args.gpu_pool] if args.gpu_pool else []),
                            *(model.depends_on if model else []),
                            # its key is in the ConfigMap before a pod mounts it
                            *([self._signer] if model and model.signer_pem else [])]
                or None)),
        )

    @staticmethod
    def _pod_spec(args: ScoringServiceArgs, deployment: DeploymentConfig,
                  model: PodModel | None, labels, keys, account) -> dict:
        """On the GPU pool, spread over nodes and zones, as the image's user; the model
        store's init container and volumes when it fetches the model."""
        cfg = args.service
        return {
            "serviceAccountName": account.metadata.name,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": grace_period_s(cfg),
            "nodeSelector": gpu_node_selector(),
            "tolerations": gpu_tolerations(),
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": {"matchLabels": labels}}
                for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")],
            "securityContext": {
                "runAsNonRoot": True, "runAsUser": APP_UID, "runAsGroup": APP_UID,
                "fsGroup": APP_UID, "seccompProfile": {"type": "RuntimeDefault"}},
            **({"initContainers": [model.init_container]} if model else {}),
            "containers": [scoring_container(cfg, deployment, args.image_refs[deployment.name],
                                             model)],
            "volumes": [
                {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "api-keys", "secret": {
                    "secretName": keys.metadata.name, "defaultMode": 0o440,
                    "items": [{"key": key, "path": key} for key in KEY_FILES]}},
                *(model.volumes if model else ()),
            ],
        }

    def _pod_monitor(self, name, ns, labels, crd) -> None:
        """Managed Prometheus scrapes the metrics port of every scoring pod (its own CRD group,
        azmonitoring.coreos.com: the add-on ignores monitoring.coreos.com objects)."""
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor", api_version="azmonitoring.coreos.com/v1", kind="PodMonitor",
            metadata={"name": "scoring", "namespace": ns},
            spec={
                "selector": {"matchLabels": labels},
                "podMetricsEndpoints": [{
                    "port": "metrics", "path": METRICS_PATH, "interval": SCRAPE_INTERVAL,
                    # Every series carries the pod's deployment: the dashboard, KEDA and
                    # `compare` tell blue from green by it.
                    "relabelings": [{
                        "sourceLabels": [_meta_label(DEPLOYMENT_LABEL)],
                        "targetLabel": "deployment", "action": "replace"}]}],
                # The limits Azure's templates ask for, so no series is dropped unseen.
                "labelLimit": 63, "labelNameLengthLimit": 511, "labelValueLengthLimit": 1023,
            },
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(
                depends_on=[crd] if crd else None)))

    def _network_policy(self, name, ns, labels):
        """In: the scoring port from the edge's Envoy proxies only, the metrics port from the scraper's
        namespace only (so no path from the internet reaches it). Out: DNS and the internet,
        never the instance metadata service (it would hand out the node's identity tokens)."""
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata={"name": "scoring", "namespace": ns},
            spec={
                "podSelector": {"matchLabels": labels},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [_namespace(EDGE_NAMESPACE)],
                     "ports": [{"port": HTTP_PORT, "protocol": "TCP"}]},
                    {"from": [_namespace(SCRAPER_NAMESPACE)],
                     "ports": [{"port": METRICS_PORT, "protocol": "TCP"}]},
                ],
                "egress": [
                    {"to": [_namespace("kube-system")],
                     "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [IMDS]}}]},
                ],
            },
            opts=self._child,
        )



def _namespace(name: str) -> dict:
    """A NetworkPolicy peer: every pod of one namespace, by the label Kubernetes sets on it."""
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _meta_label(label: str) -> str:
    """Prometheus's discovery label for a pod label (every other character becomes _)."""
    return "__meta_kubernetes_pod_label_" + "".join(c if c.isalnum() else "_" for c in label)
