"""The seam of docs/contract.md, checked from both sides at once: what the
Deployment gives the container must be what the container accepts."""
import re

from infra.model_store import MODEL_PATH
from infra.registry import MODEL_PATH_IN_IMAGE
from infra.scoring import APP_UID, HTTP_PORT, METRICS_PORT
from stack_harness import REPO

from scoring_app import settings

DOCKERFILE = (REPO / "scoring_app" / "Dockerfile").read_text()


def _dockerfile_arg(name: str) -> str:
    return re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE, re.MULTILINE).group(1)


def _parsed_env(run):
    [container] = run.pod_spec("Deployment")["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    known = {s.name for s in settings.SETTINGS}
    assert set(env) <= known, f"the container does not read {sorted(set(env) - known)}"
    parsed = settings.load(env)  # raises SettingsError naming a value the container rejects
    assert (parsed.port, parsed.metrics_port) == (HTTP_PORT, METRICS_PORT)
    return parsed


def test_deployment_env_parses_with_the_containers_settings(stack_run):
    assert _parsed_env(stack_run).model_dir == MODEL_PATH  # modelStore blob: the fetched copy


def test_a_baked_model_is_read_where_the_image_holds_it(runs):
    assert _parsed_env(runs["baked"]).model_dir == MODEL_PATH_IN_IMAGE


def test_image_and_deployment_agree_on_paths_and_user():
    assert _dockerfile_arg("MODEL_DIR") == MODEL_PATH_IN_IMAGE
    assert int(_dockerfile_arg("APP_UID")) == APP_UID
