"""scoring_tools/preflight.py against stand-in `az`, `docker`, `kubectl` that answer from a JSON world.

The stand-ins answer what the real CLIs print for these queries (`-o json`), so the
script's reading of them (registration states, SKU zones and restrictions, usage
names, policy assignment ids) is what is under test; the real Azure is not.
"""
import json
import os
import stat
import subprocess
import sys

import pytest

from stack_harness import REPO

FAKE_AZ = r'''#!PYTHON
import json, os, sys
world = json.load(open(os.environ["WORLD"]))
args = [a for a in sys.argv[1:] if a not in ("-o", "json")]
def answer(value):
    print(json.dumps(value)); sys.exit(0)
if args[:2] == ["account", "show"]:
    answer(world["account"])
if args[:2] == ["provider", "show"]:
    answer(world["providers"].get(args[args.index("--namespace") + 1], "NotRegistered"))
if args[:2] == ["vm", "list-skus"]:
    size = args[args.index("--size") + 1]
    answer([s for s in world["skus"] if s["name"] == size])
if args[:2] == ["vm", "list-usage"]:
    answer(world["usage"])
if args[:3] == ["policy", "assignment", "list"]:
    answer(world["policies"])
sys.exit("unexpected az " + " ".join(args))
'''
TOOLS = {
    "docker": "#!/bin/sh\necho 'github.com/docker/buildx v0.30.0'\n",
    "kubectl": "#!/bin/sh\necho '{\"clientVersion\": {\"major\": \"1\", \"minor\": \"%s\"}}'\n",
    "pulumi": "#!/bin/sh\nexit 0\n",
    "kubelogin": "#!/bin/sh\nexit 0\n",
}


def sku(name, family, vcpus, zones, restrictions=()):
    return {"name": name, "family": family, "restrictions": list(restrictions),
            "capabilities": [{"name": "vCPUs", "value": str(vcpus)}],
            "locationInfo": [{"location": "westeurope", "zones": zones}]}


def usage(name, current, limit):
    return {"name": {"value": name, "localizedValue": name}, "currentValue": current, "limit": limit}


def good_world():
    return {
        "account": {"name": "dev-sub", "id": "sub-id"},
        "providers": {p: "Registered" for p in (
            "Microsoft.ContainerService", "Microsoft.ContainerRegistry", "Microsoft.Compute",
            "Microsoft.Network", "Microsoft.ManagedIdentity", "Microsoft.Storage",
            "Microsoft.PolicyInsights", "Microsoft.Monitor", "Microsoft.Insights",
            "Microsoft.AlertsManagement")},
        "skus": [sku("Standard_NC4as_T4_v3", "standardNCASv3_T4Family", 4, ["1", "2", "3"]),
                 sku("Standard_D4s_v5", "standardDSv5Family", 4, ["1", "2", "3"])],
        "usage": [usage("standardNCASv3_T4Family", 0, 24), usage("standardDSv5Family", 0, 20),
                  usage("lowPriorityCores", 0, 8), usage("cores", 0, 100)],
        "policies": [],
    }


@pytest.fixture
def preflight(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()

    def run(world, stack="dev", kubectl_minor="33", missing=()):
        for name, text in {"az": FAKE_AZ.replace("PYTHON", sys.executable), **TOOLS}.items():
            if name in missing:
                continue
            path = bin_dir / name
            path.write_text(text % kubectl_minor if name == "kubectl" else text)
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        (tmp_path / "world.json").write_text(json.dumps(world))
        proc = subprocess.run(
            [sys.executable, "-m", "scoring_tools.preflight", "--stack", stack], cwd=REPO,
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "WORLD": str(tmp_path / "world.json"), "PATH": f"{bin_dir}:/usr/bin:/bin"})
        return proc.returncode, proc.stdout + proc.stderr
    return run


def test_a_ready_subscription_passes_both_stacks(preflight):
    for stack in ("dev", "prod"):
        code, out = preflight(good_world(), stack)
        assert code == 0, out
        assert "0 failed" in out and "FAIL" not in out
        assert "provider Microsoft.ContainerService" in out


def test_an_unregistered_provider_fails_with_the_register_command(preflight):
    world = good_world()
    world["providers"]["Microsoft.Monitor"] = "NotRegistered"
    assert preflight(world, "dev")[0] == 0  # dev has no monitoring: not asked
    code, out = preflight(world, "prod")
    assert code == 1
    assert "az provider register --namespace Microsoft.Monitor --wait" in out


def test_a_gpu_size_missing_from_a_zone_fails_for_prod_only(preflight):
    world = good_world()
    world["skus"][0] = sku("Standard_NC4as_T4_v3", "standardNCASv3_T4Family", 4, ["1", "3"])
    assert preflight(world, "dev")[0] == 0  # dev asks for no zones
    code, out = preflight(world, "prod")
    assert code == 1 and "zones ['1', '2', '3'] asked, offered ['1', '3']" in out


def test_a_size_restricted_for_the_subscription_fails(preflight):
    world = good_world()
    world["skus"][0]["restrictions"] = [{"type": "Location", "reasonCode": "NotAvailableForSubscription"}]
    code, out = preflight(world, "dev")
    assert code == 1 and "restricted for this subscription" in out


def test_quota_counts_every_node_at_the_maximum_and_spot_against_low_priority(preflight):
    world = good_world()
    world["usage"][0] = usage("standardNCASv3_T4Family", 8, 24)  # prod needs 6 x 4 = 24
    code, out = preflight(world, "prod")
    assert code == 1 and "24 vCPUs needed, 16 free" in out
    world = good_world()
    world["usage"][2] = usage("lowPriorityCores", 2, 4)  # dev: one spot T4, 4 vCPUs
    code, out = preflight(world, "dev")
    assert code == 1 and "quota lowPriorityCores" in out and "4 vCPUs needed, 2 free" in out


def test_an_old_kubectl_fails(preflight):
    code, out = preflight(good_world(), "dev", kubectl_minor="29")
    assert code == 1 and "--for=create" in out


def test_a_hostpath_policy_is_a_warning_that_names_the_namespace(preflight):
    world = good_world()
    world["policies"] = [{"name": "pss", "displayName": "Org pod security",
                          "policyDefinitionId": "/providers/Microsoft.Authorization/"
                          "policySetDefinitions/a8640138-9b0a-4a28-b8cb-1666c838647d",
                          "parameters": {"effect": {"value": "deny"}}}]
    code, out = preflight(world, "dev")
    assert code == 0
    assert "WARN" in out and "nvidia-device-plugin" in out and "effect deny" in out


def test_missing_tools_name_their_own_install_and_the_azure_checks_show_as_skipped(preflight):
    code, out = preflight(good_world(), missing=("az", "pulumi"))
    assert code == 1, out
    lines = {line.split()[1] + " " + line.split()[2]: line for line in out.splitlines()
             if line.startswith(("FAIL", "SKIP", "ok"))}
    assert "Azure CLI" in lines["tool az"] and "install-cli" not in lines["tool az"]
    assert "Pulumi CLI" in lines["tool pulumi"] and "install-cli" not in lines["tool pulumi"]
    skipped = [line for line in out.splitlines() if line.startswith("SKIP")]
    assert len(skipped) == 5 and all(line.endswith("needs az") for line in skipped), out
    assert "5 skipped" in out
