"""The container engine, the image build and `docker run` as the Deployment runs the pod.

Everything the container gets here is read from what the stack declares under
mocks (tests/stack/mock_run.py): the image build from the `docker-build:index:Image`
resource, and the security context, environment, mounts and ports from the
Deployment's pod spec. Nothing is a second hand-written copy.

The engine: Debian's docker.io (dockerd 20.10) runs the containers. Its BuildKit
has no named build contexts (that needs buildx, which Debian does not ship), so
the image is built by buildah, which takes `--build-context model=DIR` as buildx
does, from the same Dockerfile, context and build args; the result is handed to
dockerd (`buildah push ... docker-daemon:`). That is the one difference from
`pulumi up`'s pulumi-docker-build (buildx/BuildKit): the builder, not the inputs.

What `docker run` cannot express, and how it is covered instead:
- probes (the kubelet's httpGet): `Container.probe` makes the same GET on the
  probe's port from outside the container;
- the preStop sleep: the drain test sends SIGTERM itself, as the kubelet does
  once the preStop hook returns, and allows the grace period minus the pause;
- seccompProfile RuntimeDefault: Docker's default seccomp profile is its
  counterpart, and what docker run applies (checked in the kernel's view);
- runAsNonRoot: `--user` is checked to be non-zero, as the kubelet checks it;
- `nvidia.com/gpu`: there is no GPU here; the CPU base runs the same code on CPU.
Ports: the container runs with `--network none` (its own network namespace, as a
pod has) and listens on the Deployment's ports; a socat forwarder per port links
127.0.0.1 on the host to that port inside the namespace (docker's `-p` needs a
bridge, which this daemon does not create).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
DOCKER = "docker"
BUILDAH = "buildah"
#: Flags this daemon is started with: no bridge (no private-range network is made on the
#: host), and the host's firewall is left alone. Containers use --network none.
DOCKERD_FLAGS = ("--iptables=false", "--ip-masq=false", "--bridge=none")
LABEL = "aks-gpu-scoring.test"
APT_PACKAGES = "docker.io buildah debootstrap socat"


class EngineError(RuntimeError):
    """The container engine is missing or will not start; the message says why."""


def _docker_ok() -> bool:
    return subprocess.run([DOCKER, "info"], capture_output=True).returncode == 0


@dataclass
class Engine:
    """dockerd: the one already running, or one started here (and stopped by `stop`)."""

    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @classmethod
    def ensure(cls, timeout: float = 60) -> "Engine":
        for tool in (DOCKER, "dockerd", BUILDAH, "socat", "nsenter", "debootstrap"):
            if not shutil.which(tool):
                raise EngineError(f"`{tool}` is not installed: the container tests need "
                                  f"`apt-get install {APT_PACKAGES}` (make setup does it, as root)")
        if _docker_ok():
            return cls()
        if os.geteuid() != 0:
            raise EngineError("no Docker engine is running, and starting one needs root")
        log_path = Path(tempfile.mkdtemp(prefix="dockerd-")) / "dockerd.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(["dockerd", *DOCKERD_FLAGS], stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise EngineError(f"dockerd exited ({proc.returncode}) at start:\n"
                                  f"{log_path.read_text(errors='replace')[-3000:]}")
            if _docker_ok():
                return cls(proc, log_path)
            time.sleep(0.5)
        proc.terminate()
        proc.wait(timeout=30)
        raise EngineError(f"dockerd did not answer in {timeout:.0f} s:\n"
                          f"{log_path.read_text(errors='replace')[-3000:]}")

    @property
    def started_here(self) -> bool:
        return self.proc is not None

    def stop(self) -> None:
        """Stop dockerd if this process started it; a daemon found running is left alone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)


def run(argv: list[str], what: str, timeout: float = 900, **kw) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if done.returncode != 0:
        raise AssertionError(f"{what} failed ({done.returncode}): {' '.join(argv)}\n"
                             f"{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout


# -- the image, built as the stack declares it ----------------------------------
@dataclass(frozen=True)
class BuildSpec:
    """The inputs of the stack's docker-build Image, paths relative to the project."""

    context: str
    dockerfile: str
    named: dict[str, str]
    build_args: dict[str, str]
    platforms: tuple[str, ...]

    @classmethod
    def from_stack(cls, image_inputs: dict) -> "BuildSpec":
        context = image_inputs["context"]
        return cls(context=context["location"],
                   dockerfile=image_inputs["dockerfile"]["location"],
                   named={k: v["location"] for k, v in context.get("named", {}).items()},
                   build_args=dict(image_inputs.get("buildArgs", {})),
                   platforms=tuple(image_inputs.get("platforms", ())))


def buildah_has(image: str) -> bool:
    return subprocess.run([BUILDAH, "inspect", "--type", "image", image],
                          capture_output=True).returncode == 0


def build_image(spec: BuildSpec, base: str, tag: str, model_dir: Path | None = None) -> str:
    """Build `spec` on `base` with buildah and load it into dockerd as `tag`.

    `model_dir` replaces the stack's named `model` context (None: as declared)."""
    if not buildah_has(base):  # buildah's own store gets the base once, from dockerd
        repository = base.rsplit(":", 1)[0]
        listed = run([BUILDAH, "images", "--format", "{{.Name}}:{{.Tag}}"], "buildah images")
        stale = {n for n in listed.split() if n.rsplit(":", 1)[0].endswith(repository)}
        for old in stale:
            subprocess.run([BUILDAH, "rmi", "--force", old], capture_output=True)
        if stale:  # the layers cached on a stale base are no use on the new one
            subprocess.run([BUILDAH, "rmi", "--prune", "--force"], capture_output=True)
        run([BUILDAH, "pull", "--quiet", f"docker-daemon:{base}"], "buildah pull of the base")
    named = dict(spec.named)
    if model_dir is not None:
        named["model"] = str(model_dir)
    argv = [BUILDAH, "build", "--isolation", "chroot", "--pull-never", "--layers",
            "--label", f"{LABEL}=1", "-f", str(REPO / spec.dockerfile), "-t", tag,
            "--build-arg", f"BASE_IMAGE={base}"]
    for platform in spec.platforms:
        argv += ["--platform", platform]
    for key, value in spec.build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    for name, location in named.items():
        argv += ["--build-context", f"{name}={REPO / location}"]
    run([*argv, str(REPO / spec.context)], f"building {tag}")
    run([BUILDAH, "push", "--quiet", tag, f"docker-daemon:{tag}"], f"loading {tag} into dockerd")
    return tag


# -- the pod spec, as docker run arguments --------------------------------------
_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTOR = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity_bytes(text: str) -> int:
    """A Kubernetes memory quantity ("1Gi", "512Mi", "1000") in bytes."""
    match = _QUANTITY.match(str(text))
    if not match:
        raise ValueError(f"not a byte quantity this harness reads: {text!r}")
    return int(match.group(1)) * _FACTOR[match.group(2)]


def security_args(pod: dict, container: dict) -> list[str]:
    """The pod's and the container's securityContext (the container's wins) as docker flags."""
    sc = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    user, group = sc.get("runAsUser"), sc.get("runAsGroup")
    if sc.get("runAsNonRoot") and not user:
        raise ValueError("runAsNonRoot without a non-zero runAsUser: the kubelet would refuse")
    if sc.get("privileged"):
        raise ValueError("a privileged container is not something these tests run")
    args = []
    if user is not None:
        args += ["--user", f"{user}:{group}" if group is not None else str(user)]
    if pod.get("securityContext", {}).get("fsGroup") is not None:
        args += ["--group-add", str(pod["securityContext"]["fsGroup"])]
    if sc.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    for cap in sc.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", cap]
    for cap in sc.get("capabilities", {}).get("add", []):
        args += ["--cap-add", cap]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    profile = sc.get("seccompProfile", {}).get("type")
    if profile not in (None, "RuntimeDefault"):
        raise ValueError(f"seccompProfile {profile} has no docker counterpart here")
    return args


def pod_of(run) -> dict:
    """The Deployment's pod spec, with the template's metadata beside it (as in a Pod object:
    the downward API reads the pod's labels)."""
    template = run.inputs("kubernetes:apps/v1:Deployment")["spec"]["template"]
    return {**template["spec"], "metadata": template.get("metadata", {})}


_LABEL_REF = re.compile(r"^metadata\.labels\['([^']+)'\]$")


def env_args(container: dict, labels: dict | None = None) -> list[str]:
    """Literal values, and the downward API's pod labels (fieldRef metadata.labels['k']),
    as the kubelet resolves them."""
    args = []
    for item in container.get("env", []):
        if "value" in item:
            value = item["value"]
        else:
            ref = _LABEL_REF.match(item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", ""))
            if not ref or ref.group(1) not in (labels or {}):
                raise ValueError(f"env {item['name']}: only literal values and the pod's own "
                                 "labels are supported here")
            value = labels[ref.group(1)]
        args += ["--env", f"{item['name']}={value}"]
    return args


def command_args(container: dict, image: str) -> list[str]:
    """The image and what runs: Kubernetes' `command` replaces the image's ENTRYPOINT and,
    with no `args`, its CMD too (docker: --entrypoint, then the rest after the image)."""
    command, args = container.get("command"), container.get("args")
    if not command:
        return [image, *(args or [])]
    return ["--entrypoint", command[0], image, *command[1:], *(args or [])]


def resource_args(container: dict) -> list[str]:
    limits = container.get("resources", {}).get("limits", {})
    args = []
    if "memory" in limits:
        args += ["--memory", str(quantity_bytes(limits["memory"]))]
    if "cpu" in limits:
        cpu = str(limits["cpu"])
        cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
        # docker refuses more CPUs than the machine has (the GPU node has more than this one)
        args += ["--cpus", f"{min(cores, os.cpu_count() or 1):g}"]
    return args


def mount_args(pod: dict, container: dict, host_dirs: dict[str, Path]) -> list[str]:
    """Each volumeMount: an emptyDir becomes a tmpfs of its sizeLimit, a Secret the host
    directory `host_dirs[volume name]` (laid out as the kubelet lays out a Secret volume).
    An emptyDir named in `host_dirs` is that host directory instead: one the pod's init
    container and its main container share, as they share the kubelet's emptyDir."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    args = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume and mount["name"] in host_dirs:
            ro = ",readonly" if mount.get("readOnly") else ""
            args += ["--mount", f"type=bind,source={host_dirs[mount['name']]},"
                                f"target={mount['mountPath']}{ro}"]
        elif "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            opts = "rw,exec,nosuid,nodev,mode=0777" + (f",size={quantity_bytes(size)}" if size else "")
            args += ["--tmpfs", f"{mount['mountPath']}:{opts}"]
        elif "secret" in volume:
            ro = ",readonly" if mount.get("readOnly") else ""
            args += ["--mount", f"type=bind,source={host_dirs[mount['name']]},"
                                f"target={mount['mountPath']}{ro}"]
        else:
            raise ValueError(f"volume {mount['name']}: no docker counterpart in this harness")
    return args


def secret_mode(pod: dict, volume_name: str) -> tuple[int, int | None]:
    """(file mode, group) the kubelet gives a Secret volume's files: defaultMode, fsGroup."""
    volume = next(v for v in pod["volumes"] if v["name"] == volume_name)
    return volume["secret"].get("defaultMode", 0o644), pod.get("securityContext", {}).get("fsGroup")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Container:
    """One `docker run` of the image under the pod spec's settings."""

    image: str
    pod: dict
    spec: dict
    host_dirs: dict[str, Path]
    read_only: bool = True
    extra_args: list[str] = field(default_factory=list)  # e.g. the model dir, for the Blob path
    network: str = "none"  # "host": the init container reaching Azurite on 127.0.0.1
    name: str = field(default_factory=lambda: f"scoring-test-{uuid.uuid4().hex[:8]}")
    ports: dict[str, int] = field(default_factory=dict)  # port name -> host port
    _forwarders: list[subprocess.Popen] = field(default_factory=list)

    def argv(self) -> list[str]:
        security = security_args(self.pod, self.spec)
        if not self.read_only:
            security.remove("--read-only")
        return [DOCKER, "run", "--detach", "--name", self.name, "--label", f"{LABEL}=1",
                "--network", self.network, *security,
                *env_args(self.spec, self.pod.get("metadata", {}).get("labels")),
                *resource_args(self.spec),
                *mount_args(self.pod, self.spec, self.host_dirs), *self.extra_args,
                *command_args(self.spec, self.image)]

    def run_to_end(self, timeout: float = 300) -> int:
        """Run it as the kubelet runs an init container: to its end; returns the exit code."""
        run(self.argv(), f"docker run {self.name}")
        done = subprocess.run([DOCKER, "wait", self.name], capture_output=True, text=True,
                              timeout=timeout)
        return int(done.stdout.strip())

    def start(self) -> "Container":
        run(self.argv(), f"docker run {self.name}")
        pid = self.inspect()["State"]["Pid"]
        for port in self.spec.get("ports", []):
            host_port = free_port()
            # socat splits addresses at ':'; the inner command's are escaped
            inner = (f"exec nsenter --target {pid} --net "
                     f"socat STDIO TCP\\:127.0.0.1\\:{port['containerPort']}")
            self._forwarders.append(subprocess.Popen(
                ["socat", f"TCP-LISTEN:{host_port},bind=127.0.0.1,reuseaddr,fork",
                 f"SYSTEM:{inner}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            self.ports[port["name"]] = host_port
        return self

    def url(self, port_name: str = "http") -> str:
        return f"http://127.0.0.1:{self.ports[port_name]}"

    def inspect(self) -> dict:
        return json.loads(run([DOCKER, "inspect", self.name], "docker inspect"))[0]

    def logs(self, limit: int | None = 6000) -> str:
        done = subprocess.run([DOCKER, "logs", self.name], capture_output=True, text=True)
        text = done.stdout + done.stderr
        return text[-limit:] if limit else text

    def probe(self, kind: str) -> requests.Response:
        """The kubelet's httpGet for `kind` (startupProbe, readinessProbe, livenessProbe)."""
        get = self.spec[kind]["httpGet"]
        port = get["port"]
        name = port if isinstance(port, str) else next(
            p["name"] for p in self.spec["ports"] if p["containerPort"] == port)
        return requests.get(self.url(name) + get["path"], timeout=self.spec[kind]["timeoutSeconds"])

    def wait_started(self) -> "Container":
        """Poll the startup probe, within the budget the Deployment gives it (polled each
        second rather than each periodSeconds, to spend less time waiting)."""
        probe = self.spec["startupProbe"]
        end = time.monotonic() + probe["failureThreshold"] * probe["periodSeconds"]
        while time.monotonic() < end:
            state = self.inspect()["State"]
            if not state["Running"]:
                raise AssertionError(f"container exited ({state['ExitCode']}):\n{self.logs()}")
            try:
                if self.probe("startupProbe").status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(1)
        raise AssertionError(f"startup probe never passed:\n{self.logs()}")

    def processes(self) -> list[dict]:
        """uid, gid and command of every process in the container (`docker top`)."""
        out = run([DOCKER, "top", self.name, "-eo", "pid,uid,gid,args"], "docker top")
        rows = [line.split(None, 3) for line in out.splitlines()[1:] if line.strip()]
        return [{"pid": r[0], "uid": r[1], "gid": r[2], "args": r[3] if len(r) > 3 else ""}
                for r in rows]

    def diff(self) -> list[str]:
        return run([DOCKER, "diff", self.name], "docker diff").splitlines()

    def remove(self) -> None:
        for proc in self._forwarders:
            proc.terminate()
            proc.wait(timeout=10)
        self._forwarders.clear()
        subprocess.run([DOCKER, "rm", "--force", self.name], capture_output=True)
