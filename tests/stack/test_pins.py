"""infra/pins.py: every third-party pin in one place, still supported today, and supporting
the Kubernetes minor version the cluster is created on."""
import re
from datetime import date, timedelta

import pytest
import yaml

from stack_harness import REPO, STACKS, stack_file_config
from test_stack_config import load  # noqa: F401 (config loader)

from infra import pins


def test_every_pin_is_supported_today_and_covers_each_stacks_kubernetes_minor():
    """Fails once a pin passes its supported-until date (today, from the clock), once a
    pin without a published end of life goes unchecked for six months, or once a stack's
    Kubernetes minor falls outside a pin's window."""
    today = date.today()
    for stack in STACKS:
        version = stack_file_config(stack).get("kubernetesVersion") or \
            pins.DEFAULT_KUBERNETES_MINOR
        minor = ".".join(version.split(".")[:2])
        problems = [p for pin in pins.PINS for p in pin.problems(today, minor)]
        assert problems == [], f"{stack}: {problems}"


def test_the_checks_see_an_expired_pin_a_stale_review_and_a_minor_outside():
    """Guards the guard: the same checks, on dates and minors that must fail."""
    gateway = pins.BY_KEY["envoyGatewayVersion"]
    after = gateway.supported_until + timedelta(days=1)
    assert re.search(r"Envoy Gateway v\S+ is out of support since 2027-02-14",
                     " ".join(gateway.problems(after, "1.36")))
    assert gateway.problems(gateway.supported_until, "1.36") == []
    plugin = pins.BY_KEY["devicePluginImage"]
    stale = plugin.checked + pins.REVIEW_EVERY + timedelta(days=1)
    assert "last checked" in " ".join(plugin.problems(stale, "1.36"))
    assert "supports Kubernetes 1.33-1.36, not 1.37" in " ".join(gateway.problems(after, "1.37"))


def test_the_programs_defaults_are_the_pins():
    """One place: Pulumi.yaml's defaults (empty or equal), the config's, and the
    Dockerfile's base image all read the table."""
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    for key, pin in pins.BY_KEY.items():
        assert declared[key]["default"] in ("", pin.version), key
    dockerfile = (REPO / "scoring_app" / "Dockerfile").read_text()
    tf = re.search(r"^ARG TF_VERSION=(\S+)$", dockerfile, re.M).group(1)
    assert f"tensorflow/tensorflow:{tf}-gpu" in [p.version for p in pins.PINS]
    for stack in STACKS:  # no stack file pins its own, out-of-table version
        assert not set(stack_file_config(stack)) & set(pins.BY_KEY), stack


def test_the_default_cluster_minor_is_one_every_pin_supports(model_dir):
    values = {"location": "westeurope", "apiAuthorizedIpRanges": '["20.61.17.5/32"]',
              "modelDir": str(model_dir), "acmeEmail": "ops@scoring-team.io"}
    cfg = load(values)
    assert cfg.cluster.kubernetes_version == pins.DEFAULT_KUBERNETES_MINOR
    assert pins.kubernetes_problem(pins.DEFAULT_KUBERNETES_MINOR) is None
    assert cfg.edge.cert_manager_version == pins.BY_KEY["certManagerVersion"].version


@pytest.mark.parametrize("version, message", [
    ("1.37", r"1\.37 is outside .*cert-manager v1\.21\.1 supports 1\.33-1\.36"),
    ("1.32.4", r"Envoy Gateway v1\.9\.0 supports 1\.33-1\.36"),
    ("latest", r"'latest' is not a Kubernetes version"),
])
def test_a_kubernetes_version_outside_the_pins_is_refused(version, message, model_dir):
    from infra.config import ConfigError
    values = {"location": "westeurope", "apiAuthorizedIpRanges": '["20.61.17.5/32"]',
              "modelDir": str(model_dir), "acmeEmail": "ops@scoring-team.io",
              "kubernetesVersion": version}
    with pytest.raises(ConfigError) as err:
        load(values)
    assert err.value.key == "kubernetesVersion"
    assert re.search(message, str(err.value)), str(err.value)
    assert "\n" not in str(err.value)


def test_an_envoy_gateway_line_without_its_envoy_tag_is_refused(model_dir):
    """The proxies are pulled through the registry by tag: a release line whose Envoy tag
    the table does not name cannot be deployed."""
    from infra.config import ConfigError
    values = {"location": "westeurope", "apiAuthorizedIpRanges": '["20.61.17.5/32"]',
              "modelDir": str(model_dir), "acmeEmail": "ops@scoring-team.io",
              "envoyGatewayVersion": "v1.10.0"}
    with pytest.raises(ConfigError) as err:
        load(values)
    assert err.value.key == "envoyGatewayVersion"
    assert "ENVOY_PROXY_TAGS" in str(err.value)
    assert load({**values, "envoyGatewayVersion": "v1.9.1"}).edge.envoy_proxy_tag == \
        pins.ENVOY_PROXY_TAGS["v1.9"]
