"""The seam of docs/contract.md, checked from both sides at once: what the
Deployment gives the container must be what the container accepts."""
import re

from stack_harness import REPO

from scoring_app import settings
from scoring_app.contract import (APP_UID, DEPLOYMENT_LABEL, DEPLOYMENT_NAME_MAX, FETCHED_MODEL_PATH,
                                  HTTP_PORT, METRICS_PORT, MODEL_PATH_IN_IMAGE, Var,
                                  is_deployment_name)

DOCKERFILE = (REPO / "scoring_app" / "Dockerfile").read_text()


def _dockerfile_arg(name: str) -> str:
    return re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE, re.MULTILINE).group(1)


def _parsed_env(run):
    [container] = run.pod_spec("Deployment")["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    known = {s.name for s in settings.SETTINGS}
    names = {e["name"] for e in container["env"]}  # the downward-API ones too
    assert names <= known, f"the container does not read {sorted(names - known)}"
    # The deployment's name: the pod label's value, which the container must accept.
    [from_label] = [e for e in container["env"] if "valueFrom" in e]
    assert from_label["name"] == Var.DEPLOYMENT_NAME
    label = run.inputs("kubernetes:apps/v1:Deployment")["spec"]["template"]["metadata"][
        "labels"][DEPLOYMENT_LABEL]
    env[from_label["name"]] = label
    parsed = settings.load(env)  # raises SettingsError naming a value the container rejects
    assert (parsed.port, parsed.metrics_port) == (HTTP_PORT, METRICS_PORT)
    assert parsed.deployment_name == "blue"
    return parsed


def test_deployment_env_parses_with_the_containers_settings(stack_run):
    assert _parsed_env(stack_run).model_dir == FETCHED_MODEL_PATH  # modelStore blob: the fetched copy


def test_a_baked_model_is_read_where_the_image_holds_it(runs):
    assert _parsed_env(runs["baked"]).model_dir == MODEL_PATH_IN_IMAGE


def test_every_deployment_name_config_allows_the_container_accepts():
    """Config's name rule (the contract's) and the container's are the same rule."""
    for name in ("blue", "green-2", "a", "x" * DEPLOYMENT_NAME_MAX):
        assert is_deployment_name(name)
        assert settings.load({Var.DEPLOYMENT_NAME: name}).deployment_name == name
    for name in ("Blue", "blue-", "x" * (DEPLOYMENT_NAME_MAX + 1), "2blue"):
        assert not is_deployment_name(name)
        try:
            settings.load({Var.DEPLOYMENT_NAME: name})
        except settings.SettingsError:
            continue
        raise AssertionError(f"the container accepts {name!r}, which config refuses")


def test_image_and_deployment_agree_on_paths_and_user():
    assert _dockerfile_arg("MODEL_DIR") == MODEL_PATH_IN_IMAGE
    assert int(_dockerfile_arg("APP_UID")) == APP_UID
