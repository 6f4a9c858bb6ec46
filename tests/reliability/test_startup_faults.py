"""A SavedModel missing or corrupt at start: each worker fails to boot with
one line naming the path and the problem; gunicorn's master then exits
non-zero instead of respawning workers forever (a crash loop would only show
as a pod that never turns ready). The cases start in parallel: one boot's
wait for all."""

from __future__ import annotations

import shutil

from tests.app.conftest import Server


def _corrupt_variables(model_dir):
    data = next((model_dir / "variables").glob("variables.data-*"))
    data.write_bytes(bytes(255 - b for b in data.read_bytes()))  # same size, checksum fails


CASES = {  # name -> (how to break a copy of the model, what the message must say)
    "missing directory": (lambda d: shutil.rmtree(d), "SavedModel file does not exist"),
    "corrupt variables": (_corrupt_variables, "checksum does not match"),
}


def test_missing_or_corrupt_model_exits_non_zero_naming_path_and_problem(
        encoded_model_dir, secret_dir, tmp_path):
    servers = {}
    for name, (breaks, _) in CASES.items():
        model_dir = tmp_path / name.replace(" ", "-") / "model"
        shutil.copytree(encoded_model_dir, model_dir)
        breaks(model_dir)
        servers[name] = (model_dir, Server({
            "SCORING_MODEL_DIR": str(model_dir), "SCORING_API_KEYS_DIR": str(secret_dir.path),
            "SCORING_WORKERS": "1", "TMPDIR": str(model_dir.parent)}))
    try:
        codes = {name: srv.proc.wait(timeout=240) for name, (_, srv) in servers.items()}
    finally:
        for _, srv in servers.values():
            srv.stop()
    for name, (model_dir, srv) in servers.items():
        output = srv.output()
        assert codes[name] != 0, output
        assert f"cannot serve this model: cannot load a SavedModel from {model_dir}: " in output
        assert CASES[name][1] in output, output
        assert "Traceback" not in output
        assert "Worker failed to boot" in output
        assert output.count("Booting worker") == 1, "gunicorn respawned a failing worker"
