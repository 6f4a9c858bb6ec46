"""The public edge: managed NGINX with a DNS name, and a Let's Encrypt certificate when tls is on.

Why this shape (the README's "Production edge" section has the longer story):
- The controller is AKS's application-routing add-on (managed NGINX, patched
  and upgraded by AKS) rather than a self-run ingress-nginx chart. This stack
  declares its own NginxIngressController so the controller's LoadBalancer
  Service carries the azure-dns-label-name annotation (the
  <label>.<region>.cloudapp.azure.com name) and, in dev, the allowed source
  ranges.
- The add-on serves certificates from Key Vault but does not obtain them, so
  cert-manager (Helm, pinned) gets one from Let's Encrypt with an HTTP-01
  challenge through that same controller and renews it 30 days before expiry.
- With a TLS block on the Ingress, NGINX answers plain HTTP with a 308 to
  https (method and body kept), except the ACME challenge path.
- cert-manager and its solver pods run on the system pool (see
  infra/scheduling.py); the GPU pool is for scoring only. So does NGINX, at a
  fixed EDGE_REPLICAS: config checks that all of it fits there
  (infra/system_pool.py), with the requests set here.
- The NginxIngressController waits until the add-on's CRD is Established
  (the cluster's `addon_crds`); cert-manager's objects wait for its release,
  which installs cert-manager's CRDs first.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.config import EdgeConfig, ServiceConfig
from scoring_app import settings
from infra.scheduling import system_pool_placement
from infra.system_pool import CERT_MANAGER_REQUESTS, EDGE_REPLICAS

APP_ROUTING_NAMESPACE = "app-routing-system"  # where the add-on runs every NGINX it manages
INGRESS_CLASS = "scoring-nginx"
CERT_MANAGER_NAMESPACE = "cert-manager"
CERT_MANAGER_REPO = "https://charts.jetstack.io"
TLS_SECRET = "scoring-tls"
ISSUER = "letsencrypt"
DNS_LABEL_ANNOTATION = "service.beta.kubernetes.io/azure-dns-label-name"
ALLOWED_RANGES_ANNOTATION = "service.beta.kubernetes.io/azure-allowed-ip-ranges"


@dataclass
class EdgeArgs:
    edge: EdgeConfig
    service: ServiceConfig
    location: str
    namespace: pulumi.Input[str]
    service_name: pulumi.Input[str]
    provider: k8s.Provider
    nginx_crd: pulumi.Resource | None = None  # wait until NginxIngressController's CRD exists


def proxy_annotations(service: ServiceConfig, tls: bool) -> dict[str, str]:
    """NGINX limits set just past the service's own, so clients see the service's JSON
    errors (413, 504) rather than NGINX's HTML ones."""
    # The container's own parser and defaults (scoring_app/settings.py imports only the
    # standard library), applied to what the stack passes it.
    limits = settings.load(dict(service.extra_env))
    body = limits.max_body_bytes
    timeout_s = math.ceil(limits.request_timeout_ms / 1000)
    prefix = "nginx.ingress.kubernetes.io"
    return {
        f"{prefix}/proxy-body-size": f"{math.ceil(body / 1024 / 1024) + 1}m",
        f"{prefix}/proxy-read-timeout": str(timeout_s + 10),
        f"{prefix}/proxy-send-timeout": str(timeout_s + 10),
        f"{prefix}/ssl-redirect": "true" if tls else "false",
        f"{prefix}/force-ssl-redirect": "true" if tls else "false",
    }


class Edge(pulumi.ComponentResource):
    """How clients reach the scoring Service: one host name, HTTPS when tls is on."""

    fqdn: pulumi.Output[str]
    scoring_uri: pulumi.Output[str]
    swagger_uri: pulumi.Output[str]

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-gpu-scoring:infra:Edge", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        cfg = args.edge
        dns_label = self._dns_label(name, args.service)
        self.fqdn = pulumi.Output.concat(dns_label, f".{args.location}.cloudapp.azure.com")

        self._controller(name, dns_label, args.service, args.nginx_crd)
        tls_block = None
        if cfg.tls:
            issuer = self._issuer(name, cfg)
            k8s.apiextensions.CustomResource(
                f"{name}-certificate", api_version="cert-manager.io/v1", kind="Certificate",
                metadata={"name": "scoring", "namespace": args.namespace},
                spec={
                    "secretName": TLS_SECRET,
                    "dnsNames": [self.fqdn],
                    "issuerRef": {"name": ISSUER, "kind": "ClusterIssuer",
                                  "group": "cert-manager.io"},
                    "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                },
                opts=pulumi.ResourceOptions.merge(
                    self._child, pulumi.ResourceOptions(depends_on=[issuer])))
            tls_block = [{"hosts": [self.fqdn], "secretName": TLS_SECRET}]
        k8s.networking.v1.Ingress(
            f"{name}-ingress",
            metadata={"name": "scoring", "namespace": args.namespace,
                      "annotations": proxy_annotations(args.service, cfg.tls)},
            spec={
                "ingressClassName": INGRESS_CLASS,
                "tls": tls_block,
                "rules": [{"host": self.fqdn, "http": {"paths": [{
                    "path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": args.service_name,
                                            "port": {"name": "http"}}}}]}}],
            },
            opts=self._child)

        scheme = "https" if cfg.tls else "http"
        self.scoring_uri = pulumi.Output.concat(f"{scheme}://", self.fqdn, "/score")
        self.swagger_uri = pulumi.Output.concat(f"{scheme}://", self.fqdn, "/swagger.json")
        self.register_outputs({"scoringUri": self.scoring_uri, "swaggerUri": self.swagger_uri})

    def _dns_label(self, name, cfg: ServiceConfig) -> pulumi.Output[str]:
        """The configured label, or project-stack plus a stable random suffix: Azure DNS
        labels are unique per region, so a bare project-stack would collide between users."""
        if cfg.dns_label:
            return pulumi.Output.from_input(cfg.dns_label)
        suffix = random.RandomString(f"{name}-dns-suffix", length=6, special=False, upper=False,
                                     opts=pulumi.ResourceOptions(parent=self))
        return pulumi.Output.concat(
            f"{pulumi.get_project()}-{pulumi.get_stack()}-"[:56], suffix.result)

    def _controller(self, name, dns_label, service: ServiceConfig, crd) -> None:
        """An NGINX of the add-on's, whose public LoadBalancer carries the DNS label."""
        annotations = {DNS_LABEL_ANNOTATION: dns_label}
        if service.source_ranges:
            annotations[ALLOWED_RANGES_ANNOTATION] = ",".join(service.source_ranges)
        k8s.apiextensions.CustomResource(
            f"{name}-nginx", api_version="approuting.kubernetes.azure.com/v1alpha1",
            kind="NginxIngressController",
            metadata={"name": INGRESS_CLASS},
            spec={"ingressClassName": INGRESS_CLASS, "controllerNamePrefix": "scoring",
                  "loadBalancerAnnotations": annotations,
                  # Fixed, so the system pool's capacity check counts what really runs
                  # (the add-on's HPA would otherwise go from 2 up to 100 pods).
                  "scaling": {"minReplicas": EDGE_REPLICAS, "maxReplicas": EDGE_REPLICAS}},
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(
                depends_on=[crd] if crd else None)))

    def _issuer(self, name, cfg: EdgeConfig) -> k8s.apiextensions.CustomResource:
        """cert-manager, pinned, and a Let's Encrypt issuer answering HTTP-01 through NGINX."""
        placement = system_pool_placement()
        namespace = k8s.core.v1.Namespace(
            f"{name}-cert-manager-ns",
            metadata={"name": CERT_MANAGER_NAMESPACE, "labels": {
                f"pod-security.kubernetes.io/{mode}": "restricted"
                for mode in ("enforce", "audit", "warn")}},
            opts=self._child)
        pods = {"nodeSelector": placement["nodeSelector"],
                "tolerations": placement["tolerations"]}

        def sized(part: str) -> dict:
            cpu, memory = CERT_MANAGER_REQUESTS[part]
            return {**pods, "resources": {"requests": {"cpu": cpu, "memory": memory}}}
        release = k8s.helm.v3.Release(
            f"{name}-cert-manager",
            chart="cert-manager", version=cfg.cert_manager_version,
            repository_opts={"repo": CERT_MANAGER_REPO},
            namespace=namespace.metadata.name,
            atomic=True, cleanup_on_fail=True,
            values={
                "crds": {"enabled": True, "keep": True},
                **sized("controller"),
                "webhook": sized("webhook"), "cainjector": sized("cainjector"),
                "startupapicheck": pods,
                "prometheus": {"enabled": False},
            },
            opts=self._child)
        return k8s.apiextensions.CustomResource(
            f"{name}-issuer", api_version="cert-manager.io/v1", kind="ClusterIssuer",
            metadata={"name": ISSUER},
            spec={"acme": {
                "email": cfg.acme_email,
                "server": cfg.acme_server,
                "privateKeySecretRef": {"name": "letsencrypt-account-key"},
                "solvers": [{"http01": {"ingress": {
                    "ingressClassName": INGRESS_CLASS,
                    # The solver pod must fit somewhere: both pools are tainted.
                    "podTemplate": {"spec": pods},
                }}}],
            }},
            opts=pulumi.ResourceOptions.merge(self._child,
                                              pulumi.ResourceOptions(depends_on=[release])))
