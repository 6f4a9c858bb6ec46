"""The harness itself, without an engine: the pod spec becomes the docker flags it
should, the base's tag follows its inputs, and a missing engine is an error that says why."""
from __future__ import annotations

import os
import re

import pytest

from tests.container import base_image, runtime


def test_the_deployments_security_context_becomes_docker_flags(pod, scoring):
    args = runtime.security_args(pod, scoring)
    sc = scoring["securityContext"]
    assert args[args.index("--user") + 1] == f"{sc['runAsUser']}:{sc['runAsGroup']}"
    assert args[args.index("--group-add") + 1] == str(pod["securityContext"]["fsGroup"])
    assert "--read-only" in args and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and args[args.index("--cap-drop") + 1] == "ALL"
    assert args[args.index("--security-opt") + 1] == "no-new-privileges"


def test_the_deployments_mounts_become_docker_mounts(pod, scoring, tmp_path):
    args = runtime.mount_args(pod, scoring, {"api-keys": tmp_path})
    tmpfs = args[args.index("--tmpfs") + 1]
    size = next(v["emptyDir"]["sizeLimit"] for v in pod["volumes"] if "emptyDir" in v)
    assert tmpfs.startswith("/tmp:") and f"size={runtime.quantity_bytes(size)}" in tmpfs
    keys = next(m for m in scoring["volumeMounts"] if m["name"] == "api-keys")
    assert args[args.index("--mount") + 1] == (
        f"type=bind,source={tmp_path},target={keys['mountPath']},readonly")


@pytest.mark.parametrize("text, expected", [("1Gi", 2**30), ("512Mi", 512 * 2**20),
                                            ("1000", 1000), ("2G", 2 * 10**9)])
def test_quantities(text, expected):
    assert runtime.quantity_bytes(text) == expected


@pytest.mark.parametrize("text", ["1.5Gi", "1gi", "", "-1Mi"])
def test_quantities_the_harness_cannot_read_are_refused(text):
    with pytest.raises(ValueError, match="quantity"):
        runtime.quantity_bytes(text)


def test_a_privileged_or_root_pod_is_refused(pod, scoring):
    with pytest.raises(ValueError, match="privileged"):
        runtime.security_args(pod, {**scoring, "securityContext": {"privileged": True}})
    with pytest.raises(ValueError, match="runAsNonRoot"):
        runtime.security_args({"securityContext": {"runAsNonRoot": True}}, {})


def test_the_build_is_read_from_the_stacks_image(build_spec):
    assert build_spec.context == "scoring_app" and build_spec.dockerfile == "scoring_app/Dockerfile"
    assert set(build_spec.named) == {"model"}
    assert "MODEL_DIR" in build_spec.build_args and build_spec.platforms == ("linux/amd64",)


def test_the_base_runs_the_tensorflow_the_dockerfile_names():
    dockerfile = (runtime.REPO / "scoring_app" / "Dockerfile").read_text()
    [tf_version] = re.findall(r"^ARG TF_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert base_image.tf_pin() == tf_version


def test_the_base_tag_changes_with_its_inputs_only():
    assert base_image.tag("2.21.0") == base_image.tag("2.21.0")
    assert base_image.tag("2.21.0") != base_image.tag("2.20.0")
    assert re.fullmatch(rf"{base_image.REPOSITORY}:[0-9a-f]{{16}}", base_image.tag())


def test_the_debian_mirror_comes_from_apts_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.example/\nSuites: bookworm-security\n")
    assert base_image.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    with pytest.raises(base_image.BaseImageError, match="no apt source"):
        base_image.debian_mirror(tmp_path)


def test_a_missing_engine_tool_is_an_error_naming_it(monkeypatch):
    monkeypatch.setattr(runtime.shutil, "which", lambda tool: None if tool == "dockerd" else tool)
    with pytest.raises(runtime.EngineError, match=r"`dockerd` is not installed.*apt-get install"):
        runtime.Engine.ensure()


def test_an_engine_that_will_not_start_is_an_error_with_its_log(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "_docker_ok", lambda: False)
    monkeypatch.setattr(runtime, "DOCKERD_FLAGS", ("--no-such-flag",))
    with pytest.raises(runtime.EngineError, match="dockerd exited"):
        runtime.Engine.ensure(timeout=30)


def test_the_deployments_limits_become_docker_limits(scoring):
    args = runtime.resource_args(scoring)
    limits = scoring["resources"]["limits"]
    assert args[args.index("--memory") + 1] == str(runtime.quantity_bytes(limits["memory"]))
    assert float(args[args.index("--cpus") + 1]) == min(float(limits["cpu"]), os.cpu_count())
    assert runtime.resource_args({"resources": {"limits": {"cpu": "500m"}}}) == ["--cpus", "0.5"]


def test_the_deployers_prepare_step_builds_with_the_same_tensorflow():
    """requirements-prepare.txt (prepare_model on the deployer's machine) writes the
    SavedModel the image's TensorFlow loads: one release on both sides."""
    dockerfile = (runtime.REPO / "scoring_app" / "Dockerfile").read_text()
    [tf_version] = re.findall(r"^ARG TF_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    prepare = (runtime.REPO / "requirements-prepare.txt").read_text()
    assert re.findall(r"^tensorflow==(\S+)$", prepare, re.MULTILINE) == [tf_version]
