"""Check, with the Azure CLI, what stops a first `pulumi up` outside the code.

    .venv/bin/python -m scoring_tools.preflight --stack dev  # reads Pulumi.yaml + stacks/

Checks, each reported as ok / WARN / FAIL with the command that fixes it:
- tools on PATH: az, pulumi, docker (with buildx), kubectl (1.31 or later, for
  `kubectl wait --for=create`), and kubelogin when localAccounts is false;
- the signed-in subscription (`az account show`);
- resource providers registered (`az provider show`): what the stack creates,
  plus Microsoft.Monitor / Microsoft.Insights with monitoring and
  Microsoft.PolicyInsights for the Azure Policy add-on;
- the GPU and system VM sizes offered in the region, unrestricted for this
  subscription, in every configured zone (`az vm list-skus --zone`);
- vCPU quota for both pools at their maximum node counts (`az vm list-usage`;
  spot nodes count against the regional low-priority quota);
- Azure Policy assignments that may deny the device plugin's hostPath
  (`az policy assignment list`): a warning, since only the assignment's
  effect and exclusions decide, and those can live at a management group.

Each tool that is missing names how to install it; the Azure checks that could
not run (no az, or not signed in) are listed as SKIP. Exit status 1 when any
check FAILs, 0 otherwise. Nothing is changed.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PROJECT = "aks-gpu-scoring"
ALWAYS_PROVIDERS = ("Microsoft.ContainerService", "Microsoft.ContainerRegistry",
                    "Microsoft.Compute", "Microsoft.Network", "Microsoft.ManagedIdentity",
                    "Microsoft.Storage", "Microsoft.PolicyInsights")
MONITORING_PROVIDERS = ("Microsoft.Monitor", "Microsoft.Insights", "Microsoft.AlertsManagement")
#: Built-in policies that can deny a hostPath volume: the hostPath policy itself and the
#: pod security baseline / restricted initiatives that contain it.
HOSTPATH_POLICIES = {
    "098fc59e-46c7-4d99-9b16-64990e543d75": "Kubernetes cluster pod hostPath volumes should "
                                            "only use allowed host paths",
    "a8640138-9b0a-4a28-b8cb-1666c838647d": "Kubernetes cluster pod security baseline standards",
    "42b8ef37-b724-4e24-bbc8-7a7708edfe00": "Kubernetes cluster pod security restricted standards",
}
MIN_KUBECTL = (1, 31)
INSTALL_HINTS = {
    "az": "install the Azure CLI (learn.microsoft.com/cli/azure/install-azure-cli)",
    "pulumi": "install the Pulumi CLI (pulumi.com/docs/install)",
    "docker": "install Docker with the buildx plugin (Docker Desktop, or the engine on Linux)",
    "kubectl": "`az aks install-cli` installs kubectl and kubelogin",
    "kubelogin": "`az aks install-cli` installs kubectl and kubelogin",
}
#: The checks that ask Azure, in order; each is listed as skipped when az cannot run them.
AZURE_CHECKS = ("subscription", "resource providers", "VM sizes in the region and zones",
                "vCPU quota", "policy assignments")


@dataclass
class Result:
    status: str  # ok | WARN | FAIL | SKIP
    check: str
    detail: str


def stack_config(stack: str) -> dict:
    """Pulumi.yaml defaults, then stacks/Pulumi.<stack>.yaml (keys without the project)."""
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    values = {k: v["default"] for k, v in project["config"].items() if "default" in v}
    path = REPO / project["stackConfigDir"] / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise SystemExit(f"no stack file {path}")
    for key, value in (yaml.safe_load(path.read_text()).get("config") or {}).items():
        if key.startswith(f"{PROJECT}:"):
            values[key.split(":", 1)[1]] = value
    return values


def az(*args: str):
    """Run `az ... -o json` and return the parsed answer (None for an empty one)."""
    proc = subprocess.run(["az", *args, "-o", "json"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"az {' '.join(args)} failed")
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def check_tools(cfg: dict) -> list[Result]:
    out = []
    needed = ["az", "pulumi", "docker", "kubectl"]
    if not cfg.get("localAccounts"):
        needed.append("kubelogin")
    for tool in needed:
        found = shutil.which(tool)
        out.append(Result("ok" if found else "FAIL", f"tool {tool}",
                          found or f"not on PATH: {INSTALL_HINTS[tool]}"))
    if shutil.which("docker"):
        buildx = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True)
        out.append(Result("ok" if buildx.returncode == 0 else "FAIL", "docker buildx",
                          buildx.stdout.strip() or "missing: install the buildx plugin"))
    if shutil.which("kubectl"):
        proc = subprocess.run(["kubectl", "version", "--client", "-o", "json"],
                              capture_output=True, text=True)
        try:
            info = json.loads(proc.stdout)["clientVersion"]
            version = (int(info["major"]), int(re.sub(r"\D.*", "", info["minor"])))
        except (ValueError, KeyError):
            out.append(Result("FAIL", "kubectl version", "could not read `kubectl version`"))
        else:
            good = version >= MIN_KUBECTL
            out.append(Result("ok" if good else "FAIL", "kubectl version",
                              f"{version[0]}.{version[1]}" + ("" if good else
                              " < 1.31: `kubectl wait --for=create` is missing; az aks install-cli")))
    return out


def check_providers(cfg: dict) -> list[Result]:
    names = ALWAYS_PROVIDERS + (MONITORING_PROVIDERS if cfg.get("monitoring") else ())
    out = []
    for name in names:
        state = az("provider", "show", "--namespace", name, "--query", "registrationState")
        good = state == "Registered"
        out.append(Result("ok" if good else "FAIL", f"provider {name}",
                          str(state) if good else f"{state}: az provider register --namespace {name} --wait"))
    return out


def _sku(location: str, size: str) -> dict | None:
    skus = az("vm", "list-skus", "--location", location, "--size", size, "--zone",
              "--resource-type", "virtualMachines") or []
    return next((s for s in skus if s.get("name", "").lower() == size.lower()), None)


def _vcpus(sku: dict) -> int:
    caps = {c["name"]: c["value"] for c in sku.get("capabilities") or []}
    return int(caps.get("vCPUs", 0))


def check_skus(cfg: dict) -> tuple[list[Result], dict]:
    """Each pool's size offered in the region and zones; returns the SKUs for the quota check."""
    location, zones = cfg["location"], [str(z) for z in cfg.get("zones") or []]
    out, found = [], {}
    for pool, size in (("gpu", cfg["gpuVmSize"]), ("system", cfg["systemVmSize"])):
        sku = _sku(location, size)
        if sku is None:
            out.append(Result("FAIL", f"{pool} size {size}", f"not offered in {location} with "
                              "zones (az vm list-skus --zone); pick another region or size"))
            continue
        found[pool] = sku
        blocked = [r for r in sku.get("restrictions") or []
                   if r.get("reasonCode") == "NotAvailableForSubscription"]
        offered = sorted({z for info in sku.get("locationInfo") or [] for z in info.get("zones") or []})
        missing = [z for z in zones if z not in offered]
        restricted_zones = sorted({z for r in blocked if r.get("type") == "Zone"
                                   for z in (r.get("restrictionInfo") or {}).get("zones") or []})
        if any(r.get("type") == "Location" for r in blocked):
            out.append(Result("FAIL", f"{pool} size {size}", f"restricted for this subscription in "
                              f"{location}: ask for access (a support request) or pick another"))
        elif missing or set(zones) & set(restricted_zones):
            out.append(Result("FAIL", f"{pool} size {size}", f"zones {zones} asked, offered "
                              f"{[z for z in offered if z not in restricted_zones]}: set zones to "
                              "those, or [] for no zones"))
        else:
            out.append(Result("ok", f"{pool} size {size}", f"zones offered: {offered or 'none'}"))
    return out, found


def check_quota(cfg: dict, skus: dict) -> list[Result]:
    usage = {u["name"]["value"]: u for u in az("vm", "list-usage", "--location", cfg["location"]) or []}
    need: dict[str, int] = {}
    pools = (("gpu", int(cfg["gpuMaxCount"]), bool(cfg.get("gpuSpot"))),
             ("system", int(cfg["systemNodeCount"]), False))
    for pool, nodes, spot in pools:
        if pool not in skus:
            continue
        cores = _vcpus(skus[pool]) * nodes
        family = "lowPriorityCores" if spot else skus[pool].get("family", "")
        need[family] = need.get(family, 0) + cores
        if not spot:
            need["cores"] = need.get("cores", 0) + cores
    out = []
    for family, cores in need.items():
        entry = usage.get(family)
        if entry is None:
            out.append(Result("WARN", f"quota {family}", "not listed by az vm list-usage"))
            continue
        free = int(entry["limit"]) - int(entry["currentValue"])
        label = entry["name"].get("localizedValue", family)
        out.append(Result("ok" if free >= cores else "FAIL", f"quota {label}",
                          f"{cores} vCPUs needed, {free} free" + ("" if free >= cores else
                          " (portal: Quotas, or a smaller gpuMaxCount)")))
    return out


def check_policy() -> list[Result]:
    assignments = az("policy", "assignment", "list", "--disable-scope-strict-match") or []
    out = []
    for a in assignments:
        definition = (a.get("policyDefinitionId") or "").rsplit("/", 1)[-1].lower()
        if definition in HOSTPATH_POLICIES:
            effect = ((a.get("parameters") or {}).get("effect") or {}).get("value", "default")
            out.append(Result("WARN", "policy may deny hostPath",
                              f"{a.get('displayName') or a.get('name')} ({HOSTPATH_POLICIES[definition]}, "
                              f"effect {effect}): the NVIDIA device plugin mounts "
                              "/var/lib/kubelet/device-plugins; exclude namespace "
                              "nvidia-device-plugin or allow that path"))
    return out or [Result("ok", "policy", "no assignment of a built-in hostPath policy found")]


def check_azure(cfg: dict) -> list[Result]:
    try:
        results = check_providers(cfg)
        sku_results, skus = check_skus(cfg)
        return results + sku_results + check_quota(cfg, skus) + check_policy()
    except RuntimeError as err:
        return [Result("FAIL", "az", str(err))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="dev", help="stacks/Pulumi.<stack>.yaml (default dev)")
    parser.add_argument("--location", help="override the stack's location")
    args = parser.parse_args(argv)
    cfg = stack_config(args.stack)
    if args.location:
        cfg["location"] = args.location
    if not cfg.get("location"):
        raise SystemExit("no location: set it in the stack or pass --location")
    results = check_tools(cfg)
    if not shutil.which("az"):
        results += [Result("SKIP", check, "needs az") for check in AZURE_CHECKS]
    else:
        try:
            account = az("account", "show")
        except RuntimeError as err:
            results.append(Result("FAIL", "az", f"{err} (az login?)"))
            results += [Result("SKIP", check, "needs az login") for check in AZURE_CHECKS[1:]]
        else:
            results.append(Result("ok", "subscription", f"{account['name']} ({account['id']})"))
            results += check_azure(cfg)
    width = max(len(r.check) for r in results)
    for r in results:
        print(f"{r.status:4}  {r.check:<{width}}  {r.detail}")
    failed = [r for r in results if r.status == "FAIL"]
    print(f"\n{len(failed)} failed, {sum(r.status == 'WARN' for r in results)} warnings, "
          f"{sum(r.status == 'SKIP' for r in results)} skipped, stack {args.stack}, {cfg['location']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
