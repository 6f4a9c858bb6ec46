"""The contract module: the one list of names both the stack and the container use."""
from __future__ import annotations

import subprocess
import sys

import pytest

from scoring_app import contract, settings
from scoring_app.contract import Var


def test_settings_declare_exactly_the_service_variables():
    assert tuple(s.name for s in settings.SETTINGS) == contract.SERVICE_VARIABLES


def test_every_name_is_prefixed_and_unique():
    names = [*contract.SERVICE_VARIABLES, *contract.FETCH_ONLY]
    assert all(n.startswith(contract.PREFIX) for n in names)
    assert len(names) == len(set(names))
    assert set(contract.STACK_VARIABLES) <= set(contract.SERVICE_VARIABLES)


def test_imports_only_the_standard_library():
    code = ("import sys; before = set(sys.modules); import scoring_app.contract; "
            "extra = {m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names); "
            "print(sorted(extra - {'scoring_app'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name, ok", [
    ("blue", True), ("a", True), ("green-2", True), ("x" * 24, True), ("x" * 25, False),
    ("Blue", False), ("2blue", False), ("blue-", False), ("", False), ("blue_1", False),
    ("blue\n", False), (None, False)])
def test_deployment_name_rule(name, ok):
    assert contract.is_deployment_name(name) is ok


def test_service_env_renders_the_variables_the_container_parses():
    env = contract.ServiceEnv(model_name="resnet50", model_version="3", precision="fp32",
                              graceful_timeout_s=30, drain_s=5, preprocess="caffe",
                              capture_uri="https://acct.blob.core.windows.net/captures",
                              capture_sample_rate=0.25, extra={"SCORING_MAX_QUEUE": "64"}).env()
    assert env[0] == {"name": Var.DEPLOYMENT_NAME, "valueFrom": {"fieldRef": {
        "fieldPath": f"metadata.labels['{contract.DEPLOYMENT_LABEL}']"}}}
    values = {e["name"]: e["value"] for e in env[1:]}
    assert values[Var.PORT] == str(contract.HTTP_PORT)
    assert values[Var.DRAIN_SECONDS] == "5"
    assert values[Var.CAPTURE_SAMPLE_RATE] == "0.25"
    assert values[Var.CAPTURE_IMAGES] == "false"
    # what the stack writes, the container's own parser takes as it is
    cfg = settings.load({**values, Var.DEPLOYMENT_NAME: "blue"})
    assert (cfg.model_name, cfg.preprocess, cfg.max_queue, cfg.capture_sample_rate) == \
        ("resnet50", "caffe", 64, 0.25)
    assert cfg.api_keys_dir == contract.KEYS_PATH


def test_service_env_leaves_unsaid_things_unset():
    env = contract.ServiceEnv(model_name="m", model_version="1", precision="fp32",
                              graceful_timeout_s=30, drain_s=5).env()
    names = {e["name"] for e in env}
    assert Var.PREPROCESS not in names and Var.CAPTURE_URI not in names


def test_fetch_env():
    env = contract.FetchEnv(model_uri="https://a.blob.core.windows.net/models/m", digest="sha256:" + "0" * 64,
                            scan=True, certificate_chain=("/a.pem", "/b.pem")).env()
    values = {e["name"]: e["value"] for e in env}
    assert values == {Var.MODEL_URI: "https://a.blob.core.windows.net/models/m",
                      Var.MODEL_DIGEST: "sha256:" + "0" * 64, Var.MODEL_DIR: contract.FETCHED_MODEL_PATH,
                      Var.MODEL_CERTIFICATE_CHAIN: "/a.pem:/b.pem", Var.MODEL_SCAN: "true"}


def test_service_env_order_puts_what_the_model_store_adds_after_scoring_env():
    """A reordered list rolls every pod, so the order the stack has always declared holds:
    an image's model directory first; a fetched one, and capture, after scoringEnv."""
    fields = dict(model_name="m", model_version="1", precision="fp32", graceful_timeout_s=30,
                  drain_s=5, extra={Var.MAX_QUEUE: "64"})
    baked = [e["name"] for e in contract.ServiceEnv(**fields).env()]
    assert baked[:3] == [Var.DEPLOYMENT_NAME, Var.MODEL_DIR, Var.MODEL_NAME]
    assert baked[-1] == Var.MAX_QUEUE
    fetched = [e["name"] for e in contract.ServiceEnv(
        **fields, model_dir=contract.FETCHED_MODEL_PATH, capture_uri="https://a/captures").env()]
    assert fetched[-5:] == [Var.MAX_QUEUE, Var.MODEL_DIR, Var.CAPTURE_URI,
                            Var.CAPTURE_SAMPLE_RATE, Var.CAPTURE_IMAGES]
