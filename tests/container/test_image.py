"""What the image holds, who its processes run as, and where they write."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import requests

from tests.app import media
from tests.container import runtime
from tests.container.conftest import KEYS, start

sys.path.insert(0, str(runtime.REPO))
from infra.content_tag import content_tag  # noqa: E402

APP = "/app/scoring_app"  # docs/contract.md: the code's place in the image


def in_image(image: str, script: str, pod, scoring) -> str:
    """Run a Python script in `image` under the Deployment's security context (no network)."""
    argv = [runtime.DOCKER, "run", "--rm", "--network", "none",
            *runtime.security_args(pod, scoring), "--tmpfs", "/tmp",
            "--entrypoint", "python3", image, "-c", textwrap.dedent(script)]
    return runtime.run(argv, "python3 in the image", timeout=300)


def env_of(scoring) -> dict:
    return {e["name"]: e.get("value") for e in scoring["env"]}


def test_every_process_runs_as_the_deployments_user(baked, pod):
    user, group = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    procs = baked.processes()
    assert len(procs) >= 2, procs  # the gunicorn master and its workers
    assert {(p["uid"], p["gid"]) for p in procs} == {(str(user), str(group))}, procs
    # the image's own USER too, not only docker run's --user
    assert runtime.run([runtime.DOCKER, "image", "inspect", "--format", "{{.Config.User}}",
                        baked.image], "docker image inspect").strip() == str(user)
    assert not baked.inspect()["HostConfig"]["Privileged"]


def test_the_kernel_applies_the_security_context(baked, pod, scoring):
    """What the kernel holds for the container's first process: the Deployment's
    capabilities (none), no-new-privileges, the RuntimeDefault seccomp filter (Docker's
    default profile), and the user and groups, fsGroup among them."""
    pid = baked.inspect()["State"]["Pid"]
    status = dict(line.split(":\t", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    assert status["CapEff"].strip() == status["CapPrm"].strip() == "0" * 16
    assert status["CapBnd"].strip() == "0" * 16
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # 2: a filter is installed
    sc = pod["securityContext"]
    assert status["Uid"].split() == [str(sc["runAsUser"])] * 4
    assert status["Gid"].split() == [str(sc["runAsGroup"])] * 4
    assert str(sc["fsGroup"]) in status["Groups"].split()
    mounts = Path(f"/proc/{pid}/mounts").read_text().splitlines()
    [root] = [m.split() for m in mounts if m.split()[1] == "/"]
    assert "ro" in root[3].split(","), root
    # /tmp: the emptyDir, writable, no bigger than its sizeLimit
    [tmp_mount] = [m for m in scoring["volumeMounts"] if m["mountPath"] == "/tmp"]
    volume = next(v for v in pod["volumes"] if v["name"] == tmp_mount["name"])
    [tmp] = [m.split() for m in mounts if m.split()[1] == "/tmp"]
    limit = runtime.quantity_bytes(volume["emptyDir"]["sizeLimit"])
    assert tmp[2] == "tmpfs" and "rw" in tmp[3].split(",")
    assert f"size={limit // 1024}k" in tmp[3].split(","), tmp


def test_writes_nothing_outside_tmp(baked_image, pod, scoring, keys):
    """Once without --read-only: after start-up, scoring and metrics, `docker diff` lists
    nothing but the mount points the engine itself made for the Deployment's volumes."""
    container = start(baked_image, pod, scoring, keys, read_only=False)
    try:
        assert "--read-only" not in container.argv()
        assert requests.post(container.url() + "/score", data=media.jpeg(), timeout=60, headers={
            "Authorization": f"Bearer {KEYS['primary']}", "Content-Type": "image/jpeg"}).ok
        assert requests.get(container.url("metrics") + "/metrics", timeout=10).ok
        runtime.run([runtime.DOCKER, "stop", "--time", "60", container.name], "docker stop", 120)
        changed = container.diff()
    finally:
        container.remove()
    made_by_engine = set()
    for mount in scoring["volumeMounts"]:
        parts = Path(mount["mountPath"]).parts
        made_by_engine |= {str(Path(*parts[:i])) for i in range(2, len(parts) + 1)}
    outside = [line for line in changed
               if not line.split(None, 1)[1].startswith("/tmp/")
               and line.split(None, 1)[1] not in made_by_engine]
    assert outside == [], f"written outside /tmp: {outside}"


def test_startup_imports_resolve_inside_the_image(baked_image, pod, scoring, keys):
    """Every module the server imported on its way to ready (Python's own -X importtime list,
    master and workers) and every import statement in the image's modules among them resolve
    in the image, optional ones too: a guarded `except ImportError` would hide a missing one."""
    container = start(baked_image, pod, scoring, keys,
                      extra_args=["--env", "PYTHONPROFILEIMPORTTIME=1"])
    try:
        log = container.logs(limit=None)
    finally:
        container.remove()
    assert "ModuleNotFoundError" not in log and "ImportError" not in log, log[-3000:]
    imported = set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)$", log, re.MULTILINE))
    assert {"gunicorn", "tensorflow", "flask", "gevent"} <= imported, sorted(imported)[:50]
    ours = sorted(m for m in imported if m.split(".")[0] == "scoring_app")
    assert ours, "no module of the app was imported"
    missing = json.loads(in_image(baked_image, f"""
        import ast, importlib.util, json, sys
        sys.path.insert(0, "/app")
        missing = []
        for name in {ours!r}:
            spec = importlib.util.find_spec(name)
            if spec.origin is None or not spec.origin.endswith(".py"):
                continue
            tree = ast.parse(open(spec.origin).read())
            package = name if spec.submodule_search_locations else name.rpartition(".")[0]
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                                       package) if node.level else node.module
                    targets = [base]
                else:
                    continue
                for target in targets:
                    try:
                        found = importlib.util.find_spec(target)
                    except ImportError as error:  # a parent package that fails to import
                        found, why = None, f" ({{error}})"
                    else:
                        why = ""
                    if found is None:
                        missing.append(f"{{name}}: {{target}}{{why}}")
        print(json.dumps(missing))
    """, pod, scoring).splitlines()[-1])
    assert missing == [], missing


def test_no_laptop_tools_samples_or_tests(baked_image, pod, scoring):
    files = json.loads(in_image(baked_image, """
        import json, os
        print(json.dumps([os.path.relpath(os.path.join(d, f), "/app")
                          for d, _, fs in os.walk("/app") for f in fs]))
    """, pod, scoring).splitlines()[-1])
    unwanted = re.compile(r"(^|/)(tests?|samples|scoring_tools)(/|$)|"
                          r"(^|/)(client|quickstart|demo_model)\.py$|(^|/)conftest\.py$")
    assert [f for f in files if unwanted.search(f)] == []


def test_the_image_holds_what_its_content_tag_hashes(baked_image, stack, scoring, tmp_path):
    """The stack tags the image with a hash of the app and the model; that hash, taken over
    what the image really holds, must be the same: no file the tag misses (host bytecode,
    caches) slipped in through the build context, and none the tag counts was left out."""
    [declared] = stack.inputs("docker-build:index:Image")["tags"]
    model_dir = env_of(scoring)["SCORING_MODEL_DIR"]
    container = f"scoring-test-cp-{tmp_path.name[-8:]}"
    runtime.run([runtime.DOCKER, "create", "--name", container, baked_image], "docker create")
    try:
        for source, target in ((APP, "app"), (model_dir, "model")):
            runtime.run([runtime.DOCKER, "cp", f"{container}:{source}", str(tmp_path / target)],
                        f"docker cp {source}")
    finally:
        subprocess.run([runtime.DOCKER, "rm", container], capture_output=True)
    held = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert not [p for p in held if "__pycache__" in p or p.endswith(".pyc")], held
    source = {f"app/{p.relative_to(runtime.REPO / 'scoring_app')}"
              for p in (runtime.REPO / "scoring_app").rglob("*")
              if p.is_file() and "__pycache__" not in p.parts}
    assert declared.endswith(":" + content_tag(tmp_path / "app", tmp_path / "model")), (
        f"hashed but not in the image: {sorted(source - set(held))[:20]}")


def test_the_blob_image_has_no_model(blob_image, baked_image, scoring, pod):
    model_dir = env_of(scoring)["SCORING_MODEL_DIR"]
    listing = in_image(blob_image, f"""
        import os
        print(sorted(os.listdir({model_dir!r})))
    """, pod, scoring).splitlines()[-1]
    assert listing == "['README.md']"  # infra/no_model: the note that the model is data
    baked = in_image(baked_image, f"""
        import os
        print(sorted(os.listdir({model_dir!r})))
    """, pod, scoring).splitlines()[-1]
    assert "saved_model.pb" in baked


def test_image_sizes_reported(baked_image, blob_image, base, record_property, capsys):
    sizes = {}
    for name, image in (("base", base), ("baked", baked_image), ("blob", blob_image)):
        out = runtime.run([runtime.DOCKER, "image", "inspect", "--format", "{{.Size}}", image],
                          "docker image inspect")
        sizes[name] = int(out.strip())
        record_property(f"image_size_{name}", sizes[name])
    with capsys.disabled():
        print("\nimage sizes (MB): " + ", ".join(f"{k} {v / 1e6:.0f}" for k, v in sizes.items()))
    assert sizes["base"] < sizes["blob"] < sizes["baked"]
