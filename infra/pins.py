"""Every third-party release the stack pins, with how long upstream supports it and which
Kubernetes minor versions it supports: the one place a version bump starts.

Config takes each default from here, checks that the cluster's Kubernetes minor version
lies inside every pin's range, and the tests (tests/stack/test_pins.py) fail once a pin is
past its supported-until date. A pin whose project publishes no end-of-life date carries
the day its support was last checked instead, and fails once that check is six months old.
docs/deploying.md ("Pinned releases") gives the evidence for each row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

#: How old a "last checked" date may get for a pin without a published end of life.
REVIEW_EVERY = timedelta(days=183)
#: What every pin must still have ahead of it when moved (the bar a bump aims for).
MOVE_TO_SUPPORTED_FOR = timedelta(days=183)


@dataclass(frozen=True)
class Pin:
    name: str
    config_key: str | None  # the stack key that overrides it (None: fixed in a file)
    version: str  # the default the stack ships
    kubernetes: tuple[str, str | None]  # oldest and newest minor upstream supports; None: open
    supported_until: date | None  # upstream's end of life for this release line
    checked: date  # when the row was last read against its source
    source: str
    estimated: bool = False  # supported_until derived from upstream's stated cadence

    def problems(self, today: date, minor: str | None) -> list[str]:
        """Why this pin is not fit on `today` for a cluster on Kubernetes `minor`."""
        out = []
        if self.supported_until and today > self.supported_until:
            out.append(f"{self.name} {self.version} is out of support since "
                       f"{self.supported_until.isoformat()} ({self.source})")
        if not self.supported_until and today - self.checked > REVIEW_EVERY:
            out.append(f"{self.name} {self.version}: no published end of life, and its "
                       f"support was last checked on {self.checked.isoformat()} ({self.source})")
        if minor and not supports(self.kubernetes, minor):
            low, high = self.kubernetes
            out.append(f"{self.name} {self.version} supports Kubernetes {low}-{high or 'newer'}, "
                       f"not {minor} ({self.source})")
        return out


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def supports(window: tuple[str, str | None], minor: str) -> bool:
    low, high = window
    return _minor(low) <= _minor(minor) and (high is None or _minor(minor) <= _minor(high))


PINS = (
    Pin("cert-manager", "certManagerVersion", "v1.21.1", ("1.33", "1.36"),
        # "Supported until the release of 1.23"; releases "roughly every 4 months", 1.22
        # announced for ~Nov 2026: 1.23 about March 2027.
        date(2027, 3, 8), date(2026, 12, 7),
        "cert-manager.io/docs/releases, Supported Releases", estimated=True),
    Pin("Envoy Gateway", "envoyGatewayVersion", "v1.9.0", ("1.33", "1.36"),
        date(2027, 2, 14), date(2026, 12, 7),
        "envoyproxy/gateway site/content/en/news/releases/matrix.md"),
    Pin("NVIDIA device plugin", "devicePluginImage",
        "nvcr.io/nvidia/k8s-device-plugin:v0.20.0", ("1.10", None),
        None, date(2026, 12, 7),
        "NVIDIA/k8s-device-plugin README: device-plugin API v1beta1, any v0.x on Kubernetes "
        ">= 1.10; no end-of-life table"),
    Pin("TensorFlow GPU base image", None, "tensorflow/tensorflow:2.21.0-gpu", ("1.10", None),
        None, date(2026, 12, 7),
        "scoring_app/Dockerfile TF_VERSION; TensorFlow publishes no end-of-life table; "
        "not a Kubernetes component"),
)

BY_KEY = {pin.config_key: pin for pin in PINS if pin.config_key}
#: The Envoy proxy each Envoy Gateway release line is built and tested with (the bold
#: column of its compatibility matrix; DefaultEnvoyProxyImage in api/v1alpha1/shared_types.go).
ENVOY_PROXY_TAGS = {"v1.9": "distroless-v1.39.0"}
#: Docker Hub repositories the nodes would pull from, pulled through the stack's registry
#: instead (ACR cache rules, infra/registry.py): Envoy Gateway's controller (also the
#: proxies' shutdown manager and certgen) and the Envoy proxy.
MIRRORED = {"envoyproxy/gateway": "docker.io/envoyproxy/gateway",
            "envoyproxy/envoy": "docker.io/envoyproxy/envoy"}
#: The minor a cluster gets when kubernetesVersion is left empty: the newest every pin
#: supports (AKS's own default could be a newer minor, outside the pins' windows).
DEFAULT_KUBERNETES_MINOR = "1.36"
_VERSION = re.compile(r"^\d+\.\d+(\.\d+)?$")


def kubernetes_problem(version: str) -> str | None:
    """Why a kubernetesVersion cannot carry the pinned releases, or None if it can."""
    if not _VERSION.match(version):
        return f"{version!r} is not a Kubernetes version such as 1.36 or 1.36.2"
    minor = ".".join(version.split(".")[:2])
    outside = [p for p in PINS if not supports(p.kubernetes, minor)]
    if outside:
        return (f"{version} is outside what the pinned releases support: " + "; ".join(
            f"{p.name} {p.version} supports {p.kubernetes[0]}-{p.kubernetes[1] or 'newer'}"
            for p in outside) + " (infra/pins.py)")
    return None
