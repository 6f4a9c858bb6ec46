"""Session fixtures for the container tests: the engine, the base, the stack's
declaration under mocks, the two images (model baked in; no model, for the Blob
path) and a running container of each kind.

If the engine cannot be had, every test here fails with the reason: these are
not optional checks."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.app.conftest import SecretDir
from tests.container import base_image, runtime
from tests.stack.stack_harness import run_programs

KEYS = {"primary": "container-primary-1", "secondary": "container-secondary-1"}
#: The images the tests build, removed from both stores when the session ends; the base
#: image (and buildah's layer cache) stays, since rebuilding it is the slow part.
BAKED, BLOB = "aks-gpu-scoring/scoring:test-baked", "aks-gpu-scoring/scoring:test-blob"


#: pytest's timeout counts a test's set-up, and the first container test's set-up builds the
#: local base on a machine that has none (debootstrap and TensorFlow: minutes on 2 cores).
FIRST_BUILD_TIMEOUT_S = 1800


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.timeout(FIRST_BUILD_TIMEOUT_S))


@pytest.fixture(scope="session")
def engine():
    try:
        handle = runtime.Engine.ensure()
    except runtime.EngineError as error:
        pytest.fail(f"container engine unavailable: {error}", pytrace=False)
    try:
        yield handle
    finally:
        out = subprocess.run([runtime.DOCKER, "ps", "-aq", "--filter", f"label={runtime.LABEL}"],
                             capture_output=True, text=True).stdout.split()
        if out:
            subprocess.run([runtime.DOCKER, "rm", "--force", *out], capture_output=True)
        # images from earlier sessions that a newer build untagged
        subprocess.run([runtime.DOCKER, "rmi", "--force", BAKED, BLOB], capture_output=True)
        subprocess.run([runtime.BUILDAH, "rmi", "--force", BAKED, BLOB], capture_output=True)
        subprocess.run([runtime.DOCKER, "image", "prune", "--force", "--filter",
                        f"label={runtime.LABEL}"], capture_output=True)
        handle.stop()


@pytest.fixture(scope="session")
def base(engine):
    """The local CPU base (built once; an unchanged one is found by its content tag)."""
    try:
        return base_image.ensure(runtime.DOCKER, log=lambda message: print(message, flush=True))
    except base_image.BaseImageError as error:
        pytest.fail(f"local base image: {error}", pytrace=False)


@pytest.fixture(scope="session")
def stacks(encoded_model_dir, tmp_path_factory):
    """The dev stack under mocks, with the test SavedModel as its modelDir: "baked" with
    modelStore image, "blob" with the default (the init container fetches it)."""
    return run_programs({
        "baked": ("dev", {"modelDir": str(encoded_model_dir), "modelStore": "image"}),
        "blob": ("dev", {"modelDir": str(encoded_model_dir)})}, tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="session")
def stack(stacks):
    return stacks["baked"]


@pytest.fixture(scope="session")
def blob_stack(stacks):
    return stacks["blob"]


@pytest.fixture(scope="session")
def pod(stack):
    return runtime.pod_of(stack)


@pytest.fixture(scope="session")
def scoring(pod):
    [container] = [c for c in pod["containers"] if c["name"] == "scoring"]
    return container


@pytest.fixture(scope="session")
def build_spec(stack):
    return runtime.BuildSpec.from_stack(stack.inputs("docker-build:index:Image"))


@pytest.fixture(scope="session")
def baked_image(engine, base, build_spec):
    """modelStore image: the model comes in as the named context the stack declares."""
    return runtime.build_image(build_spec, base, BAKED)


@pytest.fixture(scope="session")
def blob_image(engine, base, blob_stack):
    """modelStore blob: the build the stack declares then, the app alone (infra/no_model as
    the `model` context)."""
    spec = runtime.BuildSpec.from_stack(blob_stack.inputs("docker-build:index:Image"))
    assert spec.named == {"model": "infra/no_model"}
    return runtime.build_image(spec, base, BLOB)


class KubeletSecret(SecretDir):
    """A Secret volume as the kubelet writes it, files with defaultMode and the fsGroup."""

    def __init__(self, path: Path, mode: int, group: int | None):
        super().__init__(path)
        self.mode, self.group = mode, group

    def write(self, **keys: str) -> None:
        super().write(**keys)
        for path in self.path.rglob("*"):
            if path.is_file() and not path.is_symlink():
                os.chown(path, 0, self.group if self.group is not None else 0)
                path.chmod(self.mode)


def secret_volume(pod, scoring) -> str:
    [mount] = [m for m in scoring["volumeMounts"]
               if "secret" in next(v for v in pod["volumes"] if v["name"] == m["name"])]
    return mount["name"]


@pytest.fixture(scope="session")
def keys(pod, scoring, tmp_path_factory):
    name = secret_volume(pod, scoring)
    secret = KubeletSecret(tmp_path_factory.mktemp("secret") / name, *runtime.secret_mode(pod, name))
    secret.write(**KEYS)
    return secret


def start(image, pod, scoring, keys, **kw) -> runtime.Container:
    container = runtime.Container(image, pod, scoring, {secret_volume(pod, scoring): keys.path}, **kw)
    try:
        return container.start().wait_started()
    except BaseException:
        container.remove()
        raise


@pytest.fixture(scope="session")
def baked(baked_image, pod, scoring, keys):
    """The baked image, running as the Deployment runs it."""
    container = start(baked_image, pod, scoring, keys)
    yield container
    container.remove()


def model_mount(scoring, model_dir: Path) -> list[str]:
    """Stands in for the model-store issue's fetch step: the model directory, read-only,
    where SCORING_MODEL_DIR points (there, an emptyDir the init container fills)."""
    env = {e["name"]: e.get("value") for e in scoring["env"]}
    return ["--mount", f"type=bind,source={model_dir},target={env['SCORING_MODEL_DIR']},readonly"]
