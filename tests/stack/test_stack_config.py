"""infra/config/: bad config stops the program before any resource, naming the key."""
import json
import re

import pulumi
import pytest
import yaml

import mock_run
from stack_harness import REPO
from scoring_app.contract import Var


class _NoResources(pulumi.runtime.Mocks):
    def new_resource(self, args):
        raise AssertionError("config tests declare no resources")

    def call(self, args):
        raise AssertionError("config tests invoke nothing")


def project_defaults() -> dict:
    """Pulumi.yaml's defaults, which the engine hands the program under the stack's values."""
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    return {k: v["default"] for k, v in declared.items() if "default" in v}


def load(values: dict, defaults: bool = True):
    """config.load() with these project keys over Pulumi.yaml's defaults, as the engine would
    pass them (``defaults=False``: exactly these keys)."""
    from infra import config
    pulumi.runtime.set_mocks(_NoResources(), project="aks-gpu-scoring", stack="test", preview=False)
    pulumi.runtime.set_all_config({
        f"aks-gpu-scoring:{k}": v if isinstance(v, str) else json.dumps(v)
        for k, v in {**(project_defaults() if defaults else {}), **values}.items()})
    return config.load()


@pytest.fixture
def dev_values(model_dir):
    values = mock_run.stack_config("dev", {"modelDir": str(model_dir)})
    return {k.split(":", 1)[1]: v for k, v in values.items()}


BAD = [
    ({"gpuVmSize": "Standard_NC6"}, "gpuVmSize", r"retired.*2023.*Standard_NC4as_T4_v3"),
    ({"gpuVmSize": "Standard_NC12s_v2"}, "gpuVmSize", r"NCv2.*retired.*2023"),
    ({"gpuVmSize": "Standard_NC6s_v3"}, "gpuVmSize", r"NCv3.*retired.*2025.*NC24ads_A100_v4"),
    ({"gpuVmSize": "Standard_D4s_v5"}, "gpuVmSize", r"not an NC-family GPU size"),
    ({"gpuVmSize": "Standard_NC999_v9"}, "gpuVmSize", r"not a known NC-family"),
    ({"gpuMinCount": "3", "gpuMaxCount": "2"}, "gpuMinCount", r"greater than gpuMaxCount"),
    ({"replicas": "4", "gpuMaxCount": "3"}, "replicas", r"at most 3"),
    ({"apiAuthorizedIpRanges": '["10.0.0.300/32"]'}, "apiAuthorizedIpRanges", r"not an IP range"),
    ({"apiAuthorizedIpRanges": '["10.0.0.1/24"]'}, "apiAuthorizedIpRanges", r"host bits"),
    ({"apiAuthorizedIpRanges": None}, "apiAuthorizedIpRanges", r"is required"),
    # The old shipped placeholder, a private and a shared range: nothing could reach the API.
    ({"apiAuthorizedIpRanges": '["203.0.113.0/24"]'}, "apiAuthorizedIpRanges",
     r"documentation.*put in your egress address"),
    ({"apiAuthorizedIpRanges": '["20.61.17.5/32", "10.1.0.0/16"]'}, "apiAuthorizedIpRanges",
     r"'10\.1\.0\.0/16'.*egress"),
    ({"apiAuthorizedIpRanges": '["100.64.0.0/10"]'}, "apiAuthorizedIpRanges", r"non-public"),
    ({"systemVmSize": "Standard_B2s"}, "systemVmSize", r"not one of Standard_D2s_v5"),
    ({"systemVmSize": "Standard_D2s_v5"}, "systemVmSize",
     r"1 x Standard_D2s_v5 cannot hold.*CPU.*systemVmSize.*systemNodeCount"),
    ({"loadBalancerSourceRanges": '["anywhere"]'}, "loadBalancerSourceRanges", r"not an IP range"),
    ({"location": None}, "location", r"is required"),
    ({"upgradeChannel": "weekly"}, "upgradeChannel", r"not one of rapid"),
    ({"nodeOsUpgradeChannel": "nodeimage"}, "nodeOsUpgradeChannel", r"not one of"),
    ({"zones": '["4"]'}, "zones", r"not availability zones"),
    ({"dnsLabel": "Bad_Label"}, "dnsLabel", r"3-63 characters"),
    ({"prebuiltImage": "contoso.azurecr.io/scoring:latest"}, "prebuiltImage", r"pinned by digest"),
    ({"modelDir": "no/such/dir"}, "modelDir", r"no saved_model\.pb"),
    ({"modelName": ""}, "modelName", r"must not be empty"),
    ({"modelVersion": " "}, "modelVersion", r"must not be empty"),
    ({"primaryKeyVersion": ""}, "primaryKeyVersion", r"must not be empty"),
    ({"scoringEnv": json.dumps([f"{Var.API_KEYS_DIR}=/x"])}, "scoringEnv", r"does not set itself"),
    ({"scoringEnv": '["PATH=/x"]'}, "scoringEnv", r"NAME=value"),
    ({"scoringEnv": json.dumps([f"{Var.PRECISION}=mixed"])}, "scoringEnv", r"does not set itself"),
    ({"precision": "bf16"}, "precision", r"'bf16' is not one of fp32, mixed"),
    ({"preprocess": "BGR"}, "preprocess", r"'BGR' is not one of none, caffe, tf, torch"),
    ({"scoringEnv": json.dumps([f"{Var.PREPROCESS}=caffe"])}, "scoringEnv", r"does not set itself"),
    ({"scoringEnv": json.dumps([f"{Var.MAX_BATCH_SIZE}=lots"])}, "scoringEnv",
     rf"{Var.MAX_BATCH_SIZE}=.lots. is not valid"),
    ({"devicePluginImage": "nvcr.io/nvidia/k8s-device-plugin:latest"}, "devicePluginImage", "pinned"),
    ({"cpuLimit": "lots"}, "cpuLimit", r"not a Kubernetes quantity"),
    ({"gpuSpotMaxPrice": "cheap"}, "gpuSpotMaxPrice", r"not a number"),
    ({"gpuDriver": "nouveau"}, "gpuDriver", r"not one of aks, gpu-operator"),
    ({"tls": "true", "acmeEmail": None}, "acmeEmail", r"is required when tls is true"),
    ({"tls": "true", "acmeEmail": "ops"}, "acmeEmail", r"not an e-mail address"),
    ({"tls": "true", "acmeEmail": "scoring-ops@contoso.com"}, "acmeEmail", r"documentation domain"),
    ({"tls": "true", "acmeEmail": "me@mail.Example.org"}, "acmeEmail", r"documentation domain"),
    ({"tls": "true", "acmeEmail": "a@b.io", "loadBalancerSourceRanges": '["198.51.100.0/24"]'},
     "loadBalancerSourceRanges", r"HTTP-01"),
    ({"acmeServer": "zerossl"}, "acmeServer", r"not one of production, staging"),
    ({"certManagerVersion": "~1.19"}, "certManagerVersion", r"exact chart version"),
    ({"autoscaling": "true"}, "autoscaling", r"needs monitoring true"),
    ({"minReplicas": "0"}, "minReplicas", r">= 1"),
    ({"minReplicas": "3", "maxReplicas": "2"}, "minReplicas", r"greater than maxReplicas"),
    ({"autoscaling": "true", "monitoring": "true", "maxReplicas": "2"}, "maxReplicas",
     r"at most 1"),
    ({"scaleRequestsPerReplica": "0"}, "scaleRequestsPerReplica", r"must be > 0"),
    ({"scaleRequestsPerReplica": "many"}, "scaleRequestsPerReplica", r"not a number"),
]


@pytest.mark.parametrize("change, key, message", BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
def test_bad_config_names_the_key(change, key, message, dev_values):
    from infra.config import ConfigError
    values = {**dev_values, **change}
    values = {k: v for k, v in values.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        load(values)
    assert err.value.key == key
    assert str(err.value).startswith(f"aks-gpu-scoring:{key}: ")
    assert re.search(message, str(err.value)), str(err.value)


def test_the_stack_files_load(dev_values, model_dir):
    assert load(dev_values).gpu.spot is True
    prod = {k.split(":", 1)[1]: v
            for k, v in mock_run.stack_config("prod", {"modelDir": str(model_dir)}).items()}
    prod = load(prod)
    assert (prod.edge.tls, prod.monitoring, prod.scaling.enabled) == (True, True, True)
    assert (prod.scaling.min_replicas, prod.scaling.max_replicas) == (3, 6)
    assert load(dev_values).edge.tls is False  # dev's plain HTTP is a visible choice


def test_tls_is_the_default():
    """Pulumi.yaml says HTTPS unless a stack file opts out."""
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    assert declared["tls"]["default"] is True


def test_the_code_keeps_no_default_of_its_own(model_dir):
    """Pulumi.yaml is the one place a default lives: without it, a key it defaults is
    missing, and the error says where defaults come from."""
    from infra.config import ConfigError
    required = {"location": "westeurope", "apiAuthorizedIpRanges": json.dumps(mock_run.DEPLOYER_EGRESS),
                "modelDir": str(model_dir), "acmeEmail": "ops@scoring-team.io"}
    assert load(required).cluster.location == "westeurope"
    with pytest.raises(ConfigError) as err:
        load(required, defaults=False)
    assert "Pulumi.yaml gives every optional key a default" in str(err.value)
    # Read only beside another key: modelUri's digest and scope, domain's zone.
    beside = {"modelDigest", "modelUriScope", "dnsZoneName", "dnsZoneResourceGroup"}
    unread = []
    for key in project_defaults():
        if key in required:
            continue
        partial = {k: v for k, v in project_defaults().items() if k != key}
        try:
            load({**partial, **required}, defaults=False)
            unread.append(key)
        except ConfigError as err:
            assert err.key == key, key
    assert sorted(unread) == sorted(beside)


def test_every_key_the_code_reads_is_described_in_pulumi_yaml():
    source = "\n".join(p.read_text() for p in sorted((REPO / "infra" / "config").glob("*.py")))
    read = set(re.findall(r'cfg(?:\.get\w*)?\(?\s*,?\s*"([a-zA-Z]+)"', source))
    read |= set(re.findall(r'\w+\(cfg, "([a-zA-Z]+)"', source))
    from infra.config.capture import KEYS
    from infra.config.model_source import MODEL_URI_KEYS
    read |= {*KEYS, *MODEL_URI_KEYS[:3]}
    declared = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    assert len(read) > 30
    assert read == set(declared)
    for key, spec in declared.items():
        assert spec.get("description"), key
        assert "default" in spec or key in {"location", "apiAuthorizedIpRanges"}, key


def test_every_acme_server_is_lets_encrypt_over_https():
    from infra.config import ACME_SERVERS
    assert all(url.startswith("https://acme-") and url.endswith("letsencrypt.org/directory")
               for url in ACME_SERVERS.values())


def test_premium_tier_comes_with_long_term_support(dev_values):
    """AKS takes Premium only with supportPlan AKSLongTermSupport; the tier decides both."""
    assert load({**dev_values, "clusterTier": "Premium"}).cluster.support_plan == "AKSLongTermSupport"
    for tier in ("Free", "Standard"):
        assert load({**dev_values, "clusterTier": tier}).cluster.support_plan == "KubernetesOfficial"


def test_two_small_system_nodes_hold_dev_and_the_default_is_one_that_fits(dev_values):
    two = {**dev_values, "systemVmSize": "Standard_D2s_v5", "systemNodeCount": "2"}
    assert load(two).cluster.system_node_count == 2
    assert load({**dev_values, "systemNodeCount": "1"}).cluster.system_vm_size == "Standard_D4s_v5"


def test_stack_files_ship_no_api_range_placeholder():
    for stack in ("dev", "prod"):
        text = (REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text()
        assert "aks-gpu-scoring:apiAuthorizedIpRanges:" not in text
        assert "203.0.113" not in text


def test_the_stacks_preprocessings_are_the_containers():
    from infra import config
    from scoring_app import settings
    for value in config.PREPROCESSES:
        assert settings.load({Var.PREPROCESS: value}).preprocess == value
    assert settings.SETTINGS[[s.name for s in settings.SETTINGS].index(Var.PREPROCESS)
                             ].default == "", "unset unless said, on both sides"


def test_the_stacks_precisions_are_the_containers():
    from infra import config
    from scoring_app import settings
    for value in config.PRECISIONS:
        assert settings.load({Var.PRECISION: value}).precision == value
    with pytest.raises(settings.SettingsError):
        settings.load({Var.PRECISION: "bf16"})
