"""Helpers for the stack tests: run the program under mocks, then look at what it declared."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
#: Upstream data the stack is checked against, carried in the repository (tests/reference/README.md)
REFERENCE = REPO / "tests" / "reference"


def reference_file(relative: str) -> Path:
    """A file under tests/reference; a missing one fails the test, it never skips."""
    path = REFERENCE / relative
    if not path.is_file():
        raise AssertionError(f"reference data missing: {path} (see tests/reference/README.md)")
    return path
RUNNER = Path(__file__).with_name("mock_run.py")
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART = "kubernetes:helm.sh/v4:Chart"  # rendered by the provider at deploy time
STACKS = sorted(p.name.split(".")[1] for p in (REPO / "stacks").glob("Pulumi.*.yaml"))


def stack_file_config(stack: str) -> dict:
    """The stack file's own values, keys without the project prefix."""
    raw = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("aks-gpu-scoring:")}


def unwrap(value):
    """Inputs with the secret markers removed (what the provider would finally send)."""
    if isinstance(value, dict):
        if set(value) == {"__secret__"}:
            return unwrap(value["__secret__"])
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the RPC carries every number as a double
    return value


def plain_strings(value):
    """Every string in `value` that is not inside a secret."""
    if isinstance(value, dict):
        if set(value) == {"__secret__"}:
            return
        for v in value.values():
            yield from plain_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from plain_strings(v)
    elif isinstance(value, str):
        yield value


@dataclass
class Run:
    """What one mocked `pulumi up` declared."""

    stack: str
    data: dict

    @property
    def resources(self) -> list[dict]:
        return self.data["resources"]

    @property
    def outputs(self) -> dict:
        return self.data["outputs"]

    def all_of(self, type_: str) -> list[dict]:
        return [r for r in self.resources if r["type"] == type_]

    def one(self, type_: str, name: str | None = None) -> dict:
        found = [r for r in self.all_of(type_) if name is None or r["name"] == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, got {[r['name'] for r in found]}"
        return found[0]

    def inputs(self, type_: str, name: str | None = None) -> dict:
        return unwrap(self.one(type_, name)["inputs"])

    def kubernetes_objects(self) -> list[dict]:
        """Every Kubernetes object, as the manifest the provider would apply (Helm releases
        and charts are not objects: the provider renders them at deploy time)."""
        objects = []
        for r in self.resources:
            if (r["type"].startswith("kubernetes:") and r["type"] not in (HELM_RELEASE, HELM_CHART)
                    and not r["type"].endswith("Patch")):  # patches are partial objects
                body = unwrap(r["inputs"])
                assert body.get("apiVersion") and body.get("kind"), r["name"]
                objects.append(body)
        return objects

    def pod_spec(self, kind: str) -> dict:
        return self.inputs(f"kubernetes:apps/v1:{kind}")["spec"]["template"]["spec"]


def run_programs(runs: dict[str, tuple], workdir: Path) -> dict[str, Run]:
    """Run each (stack, overrides[, extra environment]) in its own process, two at a time,
    and load the results."""
    pending, results = list(runs.items()), {}
    while pending:
        batch, pending = pending[:2], pending[2:]
        procs = []
        for key, (stack, overrides, *env) in batch:
            out = workdir / f"{key}.json"
            procs.append((key, stack, out, subprocess.Popen(
                [sys.executable, str(RUNNER), stack, json.dumps(overrides), str(out)],
                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, **(env[0] if env else {})})))
        for key, stack, out, proc in procs:
            log, _ = proc.communicate(timeout=240)
            assert proc.returncode == 0 and out.exists(), f"{key}: runner failed\n{log}"
            results[key] = Run(stack, json.loads(out.read_text()))
            assert results[key].data["error"] is None, f"{key}: {results[key].data['error']}"
    return results


def write_manifests(run: Run, folder: Path) -> list[Path]:
    """One YAML file per Kubernetes object, named kind-namespace-name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for body in run.kubernetes_objects():
        meta = body["metadata"]
        path = folder / f"{body['kind']}-{meta.get('namespace', 'cluster')}-{meta['name']}.yaml"
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        paths.append(path)
    return paths
