"""`pulumi up` needs nothing but requirements.txt.

Pulumi's own install (Pulumi.yaml: `toolchain: pip`, `virtualenv: .venv`) fills
a virtual environment from requirements.txt and nothing else, so that file must
hold every package the program and its local commands import. Here a venv is
built from it alone (uv, the same pins pip would resolve), the program runs in
it under mocks, and every Python module the program starts as a local command
runs in it too: with --help, and far enough to import what it needs.
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from stack_harness import REPO, RUNNER, Run

COMMAND = "command:local:Command"


@pytest.fixture(scope="module")
def deploy_python(tmp_path_factory) -> Path:
    """The interpreter of a venv that holds requirements.txt and nothing more."""
    venv = tmp_path_factory.mktemp("deploy") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    uv = Path(sys.executable).with_name("uv")  # make setup installs uv into the test venv
    done = subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(python),
                           "-r", str(REPO / "requirements.txt")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return python


@pytest.fixture(scope="module")
def deploy_run(deploy_python, model_dir, tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("deploy-run") / "dev.json"
    done = subprocess.run([str(deploy_python), str(RUNNER), "dev",
                           json.dumps({"modelDir": str(model_dir)}), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and out.exists(), done.stdout + done.stderr
    run = Run("dev", json.loads(out.read_text()))
    assert run.data["error"] is None, run.data["error"]
    return run


def _python_commands(run: Run, python: Path) -> list[list[str]]:
    argvs = [shlex.split(run.inputs(COMMAND, r["name"])["create"]) for r in run.all_of(COMMAND)]
    return [argv for argv in argvs if argv[0] == str(python)]


def test_the_program_runs_from_requirements_txt_alone(deploy_run):
    assert deploy_run.all_of("azure-native:containerservice:ManagedCluster")
    assert deploy_run.outputs["scoringUri"]


def test_local_commands_name_the_interpreter_that_runs_the_program(deploy_run, deploy_python):
    python_commands = _python_commands(deploy_run, deploy_python)
    assert python_commands, "expected the model upload among the local commands"
    for resource in deploy_run.all_of(COMMAND):
        create = deploy_run.inputs(COMMAND, resource["name"])["create"]
        # never a path relative to the checkout, nor whichever python is first on PATH
        assert not create.startswith((".venv", "python")), create


def test_every_local_python_module_runs_in_that_venv(deploy_run, deploy_python, tmp_path):
    for argv in _python_commands(deploy_run, deploy_python):
        assert argv[1] == "-m", argv
        module = argv[:3]
        shown = subprocess.run([*module, "--help"], cwd=REPO, capture_output=True, text=True,
                               timeout=120)
        assert shown.returncode == 0 and "usage:" in shown.stdout, shown.stderr
        # past the argument parser: the Azure SDK imports, then the digest check refuses
        stale = [*argv[:-1], "0" * 64]
        refused = subprocess.run(stale, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1, refused.stderr
        assert "changed since the plan" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr


def test_the_preflight_check_runs_in_that_venv(deploy_python):
    # The README runs it with the venv `pulumi install` makes, before the first `up`.
    shown = subprocess.run([str(deploy_python), "-m", "scoring_tools.preflight", "--help"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "usage:" in shown.stdout, shown.stderr
