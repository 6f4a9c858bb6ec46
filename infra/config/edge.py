"""The edge's keys: TLS and its ACME account, the pinned charts, and a domain of the user's own."""
from __future__ import annotations

import re

import pulumi

from infra import pins
from infra.config import checks
from infra.config.errors import ConfigError
from infra.config.types import EdgeConfig, ServiceConfig

ACME_SERVERS = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.IGNORECASE)
#: Domains of documentation and samples (RFC 2606's, and Microsoft's own).
_PLACEHOLDER_DOMAIN = re.compile(r"[@.](example\.(com|net|org)|contoso\.com|fabrikam\.com)$",
                                 re.IGNORECASE)
_HOST = re.compile(r"^(?=.{4,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def edge(cfg: pulumi.Config, service: ServiceConfig) -> EdgeConfig:
    tls = checks.boolean(cfg, "tls")
    email = _acme_email(cfg, tls)
    version = checks.chart_version("certManagerVersion", checks.text(cfg, "certManagerVersion"),
                                   "v1.21.1")
    server = checks.choice(cfg, "acmeServer", tuple(ACME_SERVERS))
    gateway = checks.chart_version("envoyGatewayVersion",
                                   checks.text(cfg, "envoyGatewayVersion"), "v1.9.0")
    line = "v" + ".".join(gateway.lstrip("v").split(".")[:2])
    if line not in pins.ENVOY_PROXY_TAGS:
        raise ConfigError("envoyGatewayVersion", f"{gateway} has no Envoy proxy tag in "
                          "infra/pins.py ENVOY_PROXY_TAGS: add the one its compatibility "
                          "matrix names (the proxies are pulled through the stack's registry)")
    domain, zone, zone_group = _domain(cfg, tls)
    if tls and service.source_ranges and not domain:
        raise ConfigError("loadBalancerSourceRanges", "must be [] when tls is true without "
                          "domain: Let's Encrypt's HTTP-01 check comes from addresses it does "
                          "not publish, so a source filter would stop the certificate from being "
                          "issued (with domain, DNS-01 needs no inbound path)")
    return EdgeConfig(tls=tls, acme_email=email, acme_server=ACME_SERVERS[server],
                      cert_manager_version=version, envoy_gateway_version=gateway,
                      envoy_proxy_tag=pins.ENVOY_PROXY_TAGS[line],
                      domain=domain, dns_zone_name=zone, dns_zone_resource_group=zone_group)


def _acme_email(cfg: pulumi.Config, tls: bool) -> str | None:
    email = checks.optional(cfg, "acmeEmail")
    if tls and not email:
        raise ConfigError("acmeEmail", "is required when tls is true: Let's Encrypt sends expiry "
                          "warnings there (`pulumi config set acmeEmail you@example.com`), "
                          "or set tls false for plain HTTP")
    if email and not _EMAIL.match(email):
        raise ConfigError("acmeEmail", f"{email!r} is not an e-mail address")
    if email and _PLACEHOLDER_DOMAIN.search(email):
        raise ConfigError("acmeEmail", f"{email!r} is a documentation domain: nobody reads it "
                          "(and Let's Encrypt refuses example.com); put your operations mailbox")
    return email


def _domain(cfg: pulumi.Config, tls: bool) -> tuple[str | None, str | None, str | None]:
    """`domain` in a zone the user owns: a CNAME to the cloudapp name, and DNS-01."""
    domain = checks.text(cfg, "domain").lower().rstrip(".") or None
    if not domain:
        return None, None, None
    if not _HOST.match(domain):
        raise ConfigError("domain", f"{domain!r} is not a host name (e.g. scoring.contoso.com)")
    if not tls:
        raise ConfigError("domain", "needs tls true: the domain exists to get a certificate "
                          "that does not depend on the shared cloudapp.azure.com name")
    zone = checks.text(cfg, "dnsZoneName").lower().rstrip(".")
    group = checks.text(cfg, "dnsZoneResourceGroup")
    if not zone:
        raise ConfigError("dnsZoneName", "is required with domain: the Azure DNS zone that "
                          "holds it (e.g. contoso.com)")
    if not group:
        raise ConfigError("dnsZoneResourceGroup", "is required with domain: the resource group "
                          f"of the zone {zone}")
    if not domain.endswith("." + zone):
        raise ConfigError("domain", f"{domain!r} is not below dnsZoneName {zone!r} (a CNAME "
                          "cannot sit at the zone apex either)")
    return domain, zone, group
