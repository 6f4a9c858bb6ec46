"""The public edge on the Gateway API: Envoy Gateway, one Gateway, and the routes that split,
mirror and target the endpoint's deployments; a Let's Encrypt certificate when tls is on.

More: docs/deploying.md, "How the program is built".
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
from pulumi_azure_native import authorization, dns, managedidentity

from infra import kube_wait
from infra.config import DeploymentConfig, EdgeConfig, ServiceConfig
from infra.identity import workload_identity
from infra.roles import DNS_ZONE_CONTRIBUTOR, grant
from infra.scheduling import system_pool_placement
from infra.scoring import EDGE_NAMESPACE
from infra.system_pool import (CERT_MANAGER_REQUESTS, EDGE_CONTROLLER_REQUESTS,
                               EDGE_PROXY_REQUESTS, EDGE_REPLICAS)
from scoring_app import settings
from scoring_app.contract import DEPLOYMENT_HEADER, SCORE_PATH, SWAGGER_PATH

GATEWAY_CHARTS = "oci://docker.io/envoyproxy"
GATEWAY_CONTROLLER = "gateway.envoyproxy.io/gatewayclass-controller"
GATEWAY_CLASS = GATEWAY = "scoring"
GATEWAY_API = "gateway.networking.k8s.io/v1"
ENVOY_PROXY_API = "gateway.envoyproxy.io/v1alpha1"
#: What the waits check before any Gateway API or Envoy Gateway object is applied.
GATEWAY_CRDS = ["gatewayclasses.gateway.networking.k8s.io", "gateways.gateway.networking.k8s.io",
                "httproutes.gateway.networking.k8s.io", "envoyproxies.gateway.envoyproxy.io"]
CERT_MANAGER_CRDS = ["clusterissuers.cert-manager.io", "certificates.cert-manager.io"]
CERT_MANAGER_NAMESPACE = "cert-manager"
#: The Helm release's name. The chart names its controller's ServiceAccount after the release
#: (cert-manager.fullname in its _helpers.tpl: a release name containing "cert-manager" is used
#: whole), and pulumi-kubernetes would otherwise name the release `<resource>-<random hex>`; the
#: DNS-01 identity is federated with exactly this account.
CERT_MANAGER_RELEASE = CERT_MANAGER_ACCOUNT = "cert-manager"
CERT_MANAGER_REPO = "https://charts.jetstack.io"
TLS_SECRET = "scoring-tls"
ISSUER = "letsencrypt"
DNS_LABEL_ANNOTATION = "service.beta.kubernetes.io/azure-dns-label-name"
ALLOWED_RANGES_ANNOTATION = "service.beta.kubernetes.io/azure-allowed-ip-ranges"
WORKLOAD_IDENTITY_LABEL = {"azure.workload.identity/use": "true"}
#: How far past the service's own deadline the route waits before answering 504 itself.
TIMEOUT_MARGIN_S = 10


@dataclass
class EdgeArgs:
    edge: EdgeConfig
    service: ServiceConfig
    deployments: tuple[DeploymentConfig, ...]
    service_names: dict[str, str]  # deployment -> the Service the routes send its traffic to
    location: str
    namespace: pulumi.Input[str]
    provider: k8s.Provider
    kubeconfig: pulumi.Input[str]  # for the CRD waits
    cluster_id: pulumi.Input[str]
    resource_group_name: pulumi.Input[str]  # where cert-manager's DNS identity lives
    oidc_issuer_url: pulumi.Input[str]  # DNS-01 through workload identity
    ready: pulumi.Resource | None = None  # the cluster's RBAC wait: first Kubernetes call
    #: The stack's registry, whose cache rules serve Envoy Gateway's images (infra/registry.py)
    image_registry: pulumi.Input[str] | None = None
    mirrors: tuple[pulumi.Resource, ...] = ()  # its cache rules and the nodes' pull right


def request_timeout(service: ServiceConfig) -> str:
    """The route's request timeout: the service's own deadline plus a margin."""
    # The container's own parser and defaults (scoring_app/settings.py imports only the
    # standard library), applied to what the stack passes it.
    limits = settings.load(dict(service.extra_env))
    return f"{math.ceil(limits.request_timeout_ms / 1000) + TIMEOUT_MARGIN_S}s"


def route_rules(deployments: tuple[DeploymentConfig, ...], service_names: dict[str, str],
                timeout: str) -> list[dict]:
    """The endpoint's HTTPRoute rules, in precedence order:
    1. `azureml-model-deployment: <name>` reaches that deployment only, never mirrored;
    2. the rest is split by traffic (weighted backendRefs; a 0% deployment is left out);
    3. the split copies each shadow's percent to it (RequestMirror), answers discarded."""
    def ref(deployment: DeploymentConfig) -> dict:
        return {"kind": "Service", "name": service_names[deployment.name], "port": 80}
    root = {"type": "PathPrefix", "value": "/"}
    rules = [{
        "matches": [{"path": root, "headers": [
            {"type": "Exact", "name": DEPLOYMENT_HEADER, "value": d.name}]}],
        "backendRefs": [ref(d)],
        "timeouts": {"request": timeout},
    } for d in deployments]
    split = {
        "matches": [{"path": root}],
        "backendRefs": [{**ref(d), "weight": d.traffic} for d in deployments if d.traffic],
        "timeouts": {"request": timeout},
    }
    mirrors = [{"type": "RequestMirror", "requestMirror": {"backendRef": ref(d),
                                                           "percent": d.mirror}}
               for d in deployments if d.mirror]
    if mirrors:
        split["filters"] = mirrors
    return [*rules, split]


class Edge(pulumi.ComponentResource):
    """How clients reach the deployments: one host name, HTTPS when tls is on."""

    fqdn: pulumi.Output[str]  # the cloudapp name the Gateway's public IP carries
    host: pulumi.Output[str]  # what clients use: `domain` when set, else fqdn
    scoring_uri: pulumi.Output[str]
    swagger_uri: pulumi.Output[str]

    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-gpu-scoring:infra:Edge", name, None, opts)
        self._args = args
        # Only a DNS-01 issuer needs it (the zone's id, the issuer's subscriptionID).
        self._subscription = (authorization.get_client_config_output().subscription_id
                              if args.edge.domain else None)
        self._child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        cfg = args.edge
        dns_label = self._dns_label(name, args.service)
        self.fqdn = pulumi.Output.concat(dns_label, f".{args.location}.cloudapp.azure.com")
        self.host = pulumi.Output.from_input(cfg.domain) if cfg.domain else self.fqdn

        crds = self._controller(name, cfg)
        proxy = self._custom(
            f"{name}-envoyproxy", ENVOY_PROXY_API, "EnvoyProxy",
            {"name": GATEWAY_CLASS, "namespace": EDGE_NAMESPACE},
            self._proxy_spec(dns_label, args.service, cfg.envoy_proxy_tag), crds)
        gateway_class = self._custom(
            f"{name}-gatewayclass", GATEWAY_API, "GatewayClass", {"name": GATEWAY_CLASS},
            {"controllerName": GATEWAY_CONTROLLER, "parametersRef": {
                "group": "gateway.envoyproxy.io", "kind": "EnvoyProxy",
                "name": GATEWAY_CLASS, "namespace": EDGE_NAMESPACE}},
            crds, after=[proxy])
        listeners = [{"name": "http", "port": 80, "protocol": "HTTP",
                      "allowedRoutes": {"namespaces": {"from": "Same"}}}]
        if cfg.tls:
            listeners.append({
                "name": "https", "port": 443, "protocol": "HTTPS", "hostname": self.host,
                "tls": {"mode": "Terminate",
                        "certificateRefs": [{"kind": "Secret", "name": TLS_SECRET}]},
                "allowedRoutes": {"namespaces": {"from": "Same"}}})
        gateway = self._custom(
            f"{name}-gateway", GATEWAY_API, "Gateway",
            {"name": GATEWAY, "namespace": args.namespace},
            {"gatewayClassName": GATEWAY_CLASS, "listeners": listeners},
            crds, after=[gateway_class])
        parent = {"name": GATEWAY, "sectionName": "https" if cfg.tls else "http"}
        self._custom(
            f"{name}-route", GATEWAY_API, "HTTPRoute",
            {"name": "scoring", "namespace": args.namespace},
            {"parentRefs": [parent],
             "rules": route_rules(args.deployments, args.service_names,
                                  request_timeout(args.service))},
            crds, after=[gateway])
        if cfg.tls:
            self._custom(
                f"{name}-redirect", GATEWAY_API, "HTTPRoute",
                {"name": "scoring-https-redirect", "namespace": args.namespace},
                {"parentRefs": [{"name": GATEWAY, "sectionName": "http"}],
                 "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {
                     "scheme": "https", "statusCode": 301}}]}]},
                crds, after=[gateway])
            self._certificate(name, cfg, crds, gateway)
        if cfg.domain:
            self._cname(name, cfg)

        scheme = "https" if cfg.tls else "http"
        self.scoring_uri = pulumi.Output.concat(f"{scheme}://", self.host, SCORE_PATH)
        self.swagger_uri = pulumi.Output.concat(f"{scheme}://", self.host, SWAGGER_PATH)
        self.register_outputs({"scoringUri": self.scoring_uri, "swaggerUri": self.swagger_uri})

    def _custom(self, name, api_version, kind, metadata, spec, wait, after=()):
        return k8s.apiextensions.CustomResource(
            name, api_version=api_version, kind=kind, metadata=metadata, spec=spec,
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(
                depends_on=[wait, *after])))

    def _wait(self, name, crds, after) -> pulumi.Resource:
        return kube_wait.crds_established(
            name, self._args.kubeconfig, self._args.cluster_id, crds,
            pulumi.ResourceOptions(parent=self, depends_on=after))

    def _dns_label(self, name, cfg: ServiceConfig) -> pulumi.Output[str]:
        """The configured label, or project-stack plus a stable random suffix: Azure DNS
        labels are unique per region, so a bare project-stack would collide between users."""
        if cfg.dns_label:
            return pulumi.Output.from_input(cfg.dns_label)
        suffix = random.RandomString(f"{name}-dns-suffix", length=6, special=False, upper=False,
                                     opts=pulumi.ResourceOptions(parent=self))
        return pulumi.Output.concat(
            f"{pulumi.get_project()}-{pulumi.get_stack()}-"[:56], suffix.result)

    def _controller(self, name, cfg: EdgeConfig) -> pulumi.Resource:
        """Envoy Gateway, pinned: the standard-channel CRDs and its own, then the controller
        on the system pool. Returns the wait every Gateway object depends on."""
        placement = system_pool_placement()
        namespace = k8s.core.v1.Namespace(
            # Every pod here meets `restricted`: the chart's controller and certgen values,
            # and the proxies' containers from Envoy Gateway's DefaultSecurityContext (no
            # escalation, ALL dropped, non-root 65532, RuntimeDefault seccomp; v1.9.0
            # internal/infrastructure/kubernetes/proxy/resource.go).
            f"{name}-gateway-ns", metadata={"name": EDGE_NAMESPACE, "labels": {
                f"pod-security.kubernetes.io/{mode}": "restricted"
                for mode in ("enforce", "audit", "warn")}},
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(
                depends_on=[self._args.ready] if self._args.ready else None)))
        # Rendered here and applied object by object (server-side apply), not installed as
        # a Helm release: the CRDs are several MB, over the 1 MiB a release's Secret may
        # hold (envoyproxy/gateway's install guide: helm template | kubectl apply
        # --server-side, helm/helm#12277). helm.v4.Chart is exactly that.
        crds = k8s.helm.v4.Chart(
            f"{name}-gateway-crds", chart=f"{GATEWAY_CHARTS}/gateway-crds-helm",
            version=cfg.envoy_gateway_version, namespace=namespace.metadata.name,
            values={"crds": {"gatewayAPI": {"enabled": True, "channel": "standard"},
                             "envoyGateway": {"enabled": True}}},
            opts=self._child)
        cpu, memory = EDGE_CONTROLLER_REQUESTS
        controller = k8s.helm.v3.Release(
            f"{name}-envoy-gateway", chart=f"{GATEWAY_CHARTS}/gateway-helm",
            version=cfg.envoy_gateway_version, namespace=namespace.metadata.name,
            atomic=True, cleanup_on_fail=True, skip_crds=True,
            values={
                # The controller's, certgen's and the shutdown manager's images through the
                # stack's registry (gateway-helm's eg.image helper: imageRegistry wins).
                **({"global": {"imageRegistry": self._args.image_registry}}
                   if self._args.image_registry else {}),
                "crds": {"enabled": False},  # the release above owns them
                "deployment": {
                    "replicas": 1,
                    "envoyGateway": {"resources": {"requests": {"cpu": cpu, "memory": memory}}},
                    "pod": placement},
                "certgen": {"job": placement},
            },
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(
                depends_on=[crds, *self._args.mirrors])))
        return self._wait(f"{name}-gateway-crds-ready", GATEWAY_CRDS, [crds, controller])

    def _proxy_spec(self, dns_label, service: ServiceConfig, envoy_tag: str) -> dict:
        """The Gateway's Envoy pods: on the system pool, fixed replicas (the system pool's
        capacity check counts them), and the public Service's Azure annotations."""
        annotations = {DNS_LABEL_ANNOTATION: dns_label}
        if service.source_ranges:
            annotations[ALLOWED_RANGES_ANNOTATION] = ",".join(service.source_ranges)
        cpu, memory = EDGE_PROXY_REQUESTS["envoy"]
        return {"provider": {"type": "Kubernetes", "kubernetes": {
            "envoyDeployment": {
                "replicas": EDGE_REPLICAS,
                "pod": system_pool_placement(),
                # No securityContext of ours: Envoy Gateway's default is restricted-safe
                # and leaves the root filesystem writable, which Envoy needs for its log
                # file and UDS socket (a read-only one would stop it).
                "container": {
                    "resources": {"requests": {"cpu": cpu, "memory": memory}},
                    **({"image": pulumi.Output.concat(
                        self._args.image_registry, f"/envoyproxy/envoy:{envoy_tag}")}
                       if self._args.image_registry else {})},
            },
            "envoyService": {"type": "LoadBalancer", "annotations": annotations},
        }}}

    def _certificate(self, name, cfg: EdgeConfig, gateway_crds, gateway) -> None:
        """cert-manager, pinned, with its Gateway API support on; a Let's Encrypt issuer
        answering HTTP-01 through the Gateway (or DNS-01 with `domain`); the certificate the
        HTTPS listener serves."""
        identity = self._dns_identity(name, cfg) if cfg.domain else None
        ready = self._cert_manager(name, cfg, gateway_crds, identity)
        issuer = self._custom(
            f"{name}-issuer", "cert-manager.io/v1", "ClusterIssuer", {"name": ISSUER},
            {"acme": {"email": cfg.acme_email, "server": cfg.acme_server,
                      "privateKeySecretRef": {"name": "letsencrypt-account-key"},
                      "solvers": [self._solver(cfg, identity)]}},
            ready, after=[gateway])
        self._custom(
            f"{name}-certificate", "cert-manager.io/v1", "Certificate",
            {"name": "scoring", "namespace": self._args.namespace},
            {"secretName": TLS_SECRET, "dnsNames": [self.host],
             "issuerRef": {"name": ISSUER, "kind": "ClusterIssuer", "group": "cert-manager.io"},
             "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}},
            ready, after=[issuer])

    def _cert_manager(self, name, cfg: EdgeConfig, gateway_crds, identity) -> pulumi.Resource:
        """The pinned release on the system pool, signing in to Azure DNS as `identity` when
        there is one; returns the wait until its CRDs are Established."""
        placement = system_pool_placement()
        namespace = k8s.core.v1.Namespace(
            f"{name}-cert-manager-ns",
            metadata={"name": CERT_MANAGER_NAMESPACE, "labels": {
                f"pod-security.kubernetes.io/{mode}": "restricted"
                for mode in ("enforce", "audit", "warn")}},
            opts=self._child)

        def sized(part: str) -> dict:
            cpu, memory = CERT_MANAGER_REQUESTS[part]
            return {**placement, "resources": {"requests": {"cpu": cpu, "memory": memory}}}
        values = {
            "crds": {"enabled": True, "keep": True},
            # Reads Gateways and writes the HTTP-01 solver's HTTPRoute: the Gateway API
            # CRDs must exist before cert-manager starts (the release waits for them).
            "config": {"apiVersion": "controller.config.cert-manager.io/v1alpha1",
                       "kind": "ControllerConfiguration", "enableGatewayAPI": True},
            **sized("controller"),
            "webhook": sized("webhook"), "cainjector": sized("cainjector"),
            "startupapicheck": placement,
            "prometheus": {"enabled": False},
        }
        if identity is not None:  # the controller signs in to Azure DNS as the identity
            values["podLabels"] = WORKLOAD_IDENTITY_LABEL
            values["serviceAccount"] = {"labels": WORKLOAD_IDENTITY_LABEL}
        release = k8s.helm.v3.Release(
            f"{name}-cert-manager", name=CERT_MANAGER_RELEASE,
            chart="cert-manager", version=cfg.cert_manager_version,
            repository_opts={"repo": CERT_MANAGER_REPO},
            namespace=namespace.metadata.name,
            atomic=True, cleanup_on_fail=True, values=values,
            opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(
                depends_on=[gateway_crds])))
        return self._wait(f"{name}-cert-manager-crds-ready", CERT_MANAGER_CRDS, [release])

    def _solver(self, cfg: EdgeConfig, identity) -> dict:
        """DNS-01 in the user's zone as `identity`, else HTTP-01 through the Gateway."""
        if identity is not None:
            return {"dns01": {"azureDNS": {
                "subscriptionID": self._subscription,
                "resourceGroupName": cfg.dns_zone_resource_group,
                "hostedZoneName": cfg.dns_zone_name,
                "environment": "AzurePublicCloud",
                "managedIdentity": {"clientID": identity.client_id}}}}
        return {"http01": {"gatewayHTTPRoute": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                            "name": GATEWAY, "namespace": self._args.namespace,
                            "sectionName": "http"}],
            # The solver pod must fit somewhere: both pools are tainted.
            "podTemplate": {"spec": system_pool_placement()},
        }}}

    def _dns_identity(self, name, cfg: EdgeConfig) -> managedidentity.UserAssignedIdentity:
        """cert-manager's identity in Azure: federated with its service account, allowed to
        write TXT records in the user's zone (DNS Zone Contributor on that zone only)."""
        args, azure = self._args, pulumi.ResourceOptions(parent=self)
        group = pulumi.Output.from_input(cfg.dns_zone_resource_group)
        identity, _ = workload_identity(
            f"{name}-dns01", args.resource_group_name, args.location, args.oidc_issuer_url,
            CERT_MANAGER_NAMESPACE, CERT_MANAGER_ACCOUNT, azure)
        zone_id = pulumi.Output.concat("/subscriptions/", self._subscription,
                                       "/resourceGroups/", group,
                                       "/providers/Microsoft.Network/dnszones/", cfg.dns_zone_name)
        grant(f"{name}-dns01-zone", identity.principal_id, DNS_ZONE_CONTRIBUTOR, zone_id,
              self._subscription, azure, principal_type="ServicePrincipal")
        return identity

    def _cname(self, name, cfg: EdgeConfig) -> None:
        """domain -> the Gateway's cloudapp name, in the user's zone."""
        dns.RecordSet(
            f"{name}-cname", resource_group_name=cfg.dns_zone_resource_group,
            zone_name=cfg.dns_zone_name, record_type="CNAME",
            relative_record_set_name=cfg.domain[: -len(cfg.dns_zone_name) - 1],
            ttl=300, cname_record={"cname": self.fqdn},
            opts=pulumi.ResourceOptions(parent=self))

