"""The small pure pieces of infra/: kubeconfig rewrite, content tag, ACR token exchange, GPU sizes."""
import base64
import os
import re
import stat
import subprocess

import pytest
import yaml

import mock_run


def _encoded(config: dict) -> str:
    return base64.b64encode(yaml.safe_dump(config).encode()).decode()


#: The arguments `kubelogin convert-kubeconfig -l MODE` writes for AKS's exec kubeconfig
#: (Azure/kubelogin pkg/internal/converter/convert.go): --server-id always, AKS's client
#: and tenant ids only for the modes that take them from the kubeconfig.
SERVER = ["--server-id", mock_run.AKS_SERVER_ID]
IDS = ["--client-id", mock_run.AKS_CLIENT_ID, "--tenant-id", mock_run.TENANT,
       "--environment", "AzurePublicCloud"]
CONVERTED = {
    "azurecli": SERVER, "msi": SERVER, "workloadidentity": SERVER,
    "devicecode": SERVER + IDS, "interactive": SERVER + IDS, "spn": SERVER + IDS,
}


@pytest.mark.parametrize("mode", sorted(CONVERTED))
def test_each_kubelogin_mode_gets_the_arguments_convert_kubeconfig_writes(mode):
    from infra.config import KUBELOGIN_MODES
    from infra.kubeconfig import unattended_kubeconfig
    assert set(CONVERTED) == set(KUBELOGIN_MODES)
    config = yaml.safe_load(unattended_kubeconfig(_encoded(mock_run.AKS_EXEC_KUBECONFIG), mode))
    exec_ = config["users"][0]["user"]["exec"]
    assert exec_["args"] == ["get-token", "--login", mode] + CONVERTED[mode]
    assert exec_["command"] == "kubelogin"
    assert exec_["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert exec_["installHint"] == "kubelogin is not installed"  # kept, as convert keeps it
    assert config["clusters"] == mock_run.AKS_EXEC_KUBECONFIG["clusters"]


def test_msi_never_asks_for_a_managed_identity_with_the_aks_client_id():
    from infra.kubeconfig import unattended_kubeconfig
    text = unattended_kubeconfig(_encoded(mock_run.AKS_EXEC_KUBECONFIG), "msi")
    assert mock_run.AKS_CLIENT_ID not in text and mock_run.TENANT not in text


def test_a_cache_dir_is_kept_and_missing_ids_are_a_clear_error():
    from infra.kubeconfig import KubeconfigError, kubelogin_args
    assert kubelogin_args(["get-token", "--server-id", "s", "--cache-dir", "/c"], "azurecli") == [
        "get-token", "--login", "azurecli", "--server-id", "s", "--cache-dir", "/c"]
    with pytest.raises(KubeconfigError, match="--login spn needs --client-id"):
        kubelogin_args(["get-token", "--server-id", "s"], "spn")
    with pytest.raises(KubeconfigError, match="no --server-id"):
        kubelogin_args(["get-token", "--login", "devicecode"], "azurecli")


def test_admin_kubeconfig_passes_through():
    from infra.kubeconfig import unattended_kubeconfig
    admin = {"users": [{"name": "admin", "user": {"client-certificate-data": "Y2VydA=="}}]}
    assert yaml.safe_load(unattended_kubeconfig(_encoded(admin), "azurecli")) == admin


def test_content_tag_follows_content_only(tmp_path):
    from infra.content_tag import content_tag
    app, model = tmp_path / "app", tmp_path / "model"
    app.mkdir(), model.mkdir()
    (app / "Dockerfile").write_text("FROM x")
    (app / ".dockerignore").write_text("__pycache__/\n")
    (model / "saved_model.pb").write_bytes(b"graph")
    tag = content_tag(app, model)
    assert len(tag) == 16 and tag == content_tag(app, model)
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "m.pyc").write_bytes(b"cache")
    assert content_tag(app, model) == tag
    (model / "saved_model.pb").write_bytes(b"graph2")
    assert content_tag(app, model) != tag
    # The same file under the other root is a different image.
    assert content_tag(model, app) != content_tag(app, model)


@pytest.mark.parametrize("size", ["Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4",
                                  "Standard_NC40ads_H100_v5"])
def test_current_gpu_sizes_are_accepted(size):
    from infra.gpu_sizes import gpu_size_problem
    assert gpu_size_problem(size) is None


def test_gpu_pool_names_follow_the_size_and_obey_aks_rules():
    from infra.gpu_sizes import GPUS_PER_VM, gpu_pool_name
    names = {size: gpu_pool_name(size) for size in GPUS_PER_VM}
    assert re.fullmatch(r"nc4ast4[0-9a-f]{4}", names["Standard_NC4as_T4_v3"])
    assert re.fullmatch(r"nc80adis[0-9a-f]{4}", names["Standard_NC80adis_H100_v5"])
    assert len(set(names.values())) == len(names)  # two sizes never share a pool name
    assert all(re.fullmatch(r"[a-z][a-z0-9]{0,11}", n) for n in names.values())
    # The same size with another immutable property is another pool; the name is stable.
    spot = gpu_pool_name("Standard_NC4as_T4_v3", {"scaleSetPriority": "Spot"})
    assert spot != names["Standard_NC4as_T4_v3"] and spot.startswith("nc4ast4")
    assert spot == gpu_pool_name("Standard_NC4as_T4_v3", {"scaleSetPriority": "Spot"})


# --- system pool capacity ------------------------------------------------------------------

def test_allocatable_follows_aks_reservations():
    from infra.system_pool import allocatable
    # 2 cores: 100m reserved; 8 GiB: min(20 MB x 250 + 50 MB, 25%) = 2 GiB, and 100 Mi eviction.
    d2 = allocatable("Standard_D2s_v5")
    assert (d2.cpu_m, d2.memory_mi) == (1900, 8192 - 2048 - 100)
    d8 = allocatable("Standard_D8s_v5")  # 32 GiB: 20 MB x 250 + 50 MB = 4816 MiB < 25%
    assert (d8.cpu_m, d8.memory_mi) == (7820, 32768 - 4817 - 100)


def test_one_small_system_node_cannot_hold_the_edge():
    from infra.system_pool import shortfall
    problem = shortfall("Standard_D2s_v5", 1, set())
    assert problem and "systemVmSize" in problem and "systemNodeCount" in problem
    assert "CPU" in problem
    assert shortfall("Standard_D4s_v5", 1, set()) is None
    everything = {"monitoring", "autoscaling", "tls"}
    assert shortfall("Standard_D4s_v5", 2, everything) is None


def test_the_system_pool_table_counts_daemonsets_per_node_and_options_only_when_on():
    from infra.system_pool import SYSTEM_WORKLOADS, requested
    one, rows = requested(1, set())
    two, _ = requested(2, set())
    per_node = sum(w.cpu_m for w in SYSTEM_WORKLOADS if w.per_node and w.when == "always")
    assert two.cpu_m - one.cpu_m == per_node > 0
    assert not [w for w, _ in rows if w.when != "always"]
    assert not [w for w in SYSTEM_WORKLOADS if "nginx" in w.name]  # the retired edge is gone
    envoy = next(w for w in SYSTEM_WORKLOADS if w.name.startswith("envoy ("))
    assert (envoy.cpu_m, envoy.memory_mi, envoy.replicas, envoy.estimate) == (210, 288, 2, False)
    controller = next(w for w in SYSTEM_WORKLOADS if w.name == "envoy-gateway")
    assert (controller.cpu_m, controller.memory_mi, controller.replicas) == (100, 256, 1)
    with_tls, rows = requested(1, {"tls"})
    assert {w.name for w, _ in rows if w.when == "tls"} == {
        "cert-manager", "cert-manager-webhook", "cert-manager-cainjector"}
    assert with_tls.cpu_m == one.cpu_m + 30


# --- the kubectl waits, run for real against a stand-in kubectl ---------------------------------

FAKE_KUBECTL = """#!/bin/sh
# Records each call and the kubeconfig it was given; answers `auth can-i` from a counter.
echo "$*" >> "$LOG"
config=$(printf '%s\n' "$@" | sed -n '/^--kubeconfig$/{n;p;}')
[ -n "$config" ] && { cat "$config" > "$LOG.kubeconfig"; stat -c %a "$config" > "$LOG.mode"; }
case "$*" in
  *"auth can-i"*)
    n=$(cat "$LOG.count" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$LOG.count"
    if [ "$n" -ge "$YES_AFTER" ]; then echo yes; else echo no; exit 1; fi ;;
esac
exit "${WAIT_RC:-0}"
"""


@pytest.fixture
def fake_kubectl(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(FAKE_KUBECTL)
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IXUSR)
    sleep = bin_dir / "sleep"  # the retry pause, without the wait
    sleep.write_text("#!/bin/sh\nexit 0\n")
    sleep.chmod(0o755)
    log = tmp_path / "calls.log"

    def run(script, **env):
        proc = subprocess.run(["/bin/sh", "-c", script], input="apiVersion: v1\nkind: Config\n",
                              capture_output=True, text=True, timeout=60, env={
                                  **os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                                  "LOG": str(log), **env})
        calls = log.read_text().splitlines() if log.exists() else []
        return proc, calls, log
    return run


def test_rbac_wait_polls_until_yes_with_the_kubeconfig_from_stdin(fake_kubectl):
    from infra.kube_wait import rbac_script
    proc, calls, log = fake_kubectl(rbac_script(), YES_AFTER="3")
    assert proc.returncode == 0, proc.stderr
    assert len([c for c in calls if "auth can-i create namespaces --all-namespaces" in c]) == 3
    assert (log.parent / "calls.log.kubeconfig").read_text() == "apiVersion: v1\nkind: Config\n"
    assert (log.parent / "calls.log.mode").read_text().strip() == "600"
    # The temporary kubeconfig is gone afterwards.
    path = calls[0].split("--kubeconfig ")[1].split()[0]
    assert not os.path.exists(path)


def test_rbac_wait_gives_up_with_a_message(fake_kubectl):
    from infra.kube_wait import RBAC_TRIES, rbac_script
    proc, calls, _ = fake_kubectl(rbac_script(), YES_AFTER="1000")
    assert proc.returncode == 1 and "run pulumi up again" in proc.stderr
    assert len(calls) == RBAC_TRIES


def test_crd_wait_waits_for_creation_then_established_then_objects(fake_kubectl):
    from infra.kube_wait import crd_script
    script = crd_script(["scaledobjects.keda.sh", "triggerauthentications.keda.sh"],
                        [("kube-system", "deployment/keda-operator")])
    proc, calls, _ = fake_kubectl(script, YES_AFTER="1")
    assert proc.returncode == 0, proc.stderr
    waits = [c.split("--request-timeout=30s ", 1)[1] for c in calls]
    assert waits == [
        "wait --for=create --timeout=15m crd/scaledobjects.keda.sh crd/triggerauthentications.keda.sh",
        "wait --for=condition=Established --timeout=5m crd/scaledobjects.keda.sh "
        "crd/triggerauthentications.keda.sh",
        "-n kube-system wait --for=create --timeout=15m deployment/keda-operator"]
    failed, calls, _ = fake_kubectl(script, YES_AFTER="1", WAIT_RC="1")
    assert failed.returncode != 0  # a wait that times out fails the up


def test_deploying_md_lists_every_system_pool_workload_with_its_figures():
    """docs/deploying.md's table is the one a reader checks against a cluster: keep it true."""
    from infra.system_pool import SYSTEM_WORKLOADS
    from stack_harness import REPO
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:6]]
            for line in (REPO / "docs" / "deploying.md").read_text().splitlines()
            if line.startswith("| ") and line.count("|") >= 7}
    for w in SYSTEM_WORKLOADS:
        pods = "per node" if w.per_node else str(w.replicas)
        assert rows.get(w.name) == [w.when, pods, f"{w.cpu_m}m", f"{w.memory_mi}Mi"], w.name
