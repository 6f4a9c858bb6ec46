"""The local CPU base for scoring_app/Dockerfile, built from Debian packages and PyPI.

Production builds FROM the pinned TensorFlow GPU image. No image registry can
be reached on the machines that run our tests, so this script makes a base
that plays the same part: Debian bookworm (minbase, from the Debian archive
that apt on this machine already uses), its Python 3.11 with a virtualenv
first on PATH (so the Dockerfile's `python3 -m pip install` lands there, as
it lands in the GPU image's Python), and tensorflow-cpu at the version
requirements-dev.txt pins. The Dockerfile takes the result as BASE_IMAGE;
nothing else differs between the two builds.

The tag is a content hash of what goes into the base (this file, the TF pin,
the suite), so an unchanged base is never rebuilt: `ensure()` returns at once
when the engine already holds the tag.

    python3 tests/container/base_image.py          # build if missing, print the tag
    python3 tests/container/base_image.py --tag    # only print the tag
Needs root (debootstrap, chroot), debootstrap, and a running Docker engine.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
REPOSITORY = "aks-gpu-scoring/base-cpu"
VENV = "/opt/venv"
#: Debian packages on top of minbase: the interpreter and its venv module (pip comes with it).
PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: Extra certificate authorities this machine trusts (an egress proxy's, say): the base trusts
#: them too, or nothing inside it (uv now, pip in the Dockerfile's RUN later) reaches PyPI.
LOCAL_CAS = Path("/usr/local/share/ca-certificates")
#: The image's environment; PATH puts the venv's python3 and pip first.
ENV = {
    "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


class BaseImageError(RuntimeError):
    """A step of the build failed; the message says which and why."""


def tf_pin(requirements: Path = REPO / "requirements-dev.txt") -> str:
    """The tensorflow-cpu version the tests pin (the base must run the same TensorFlow)."""
    found = re.findall(r"^tensorflow-cpu==(\S+)\s*$", requirements.read_text(), re.MULTILINE)
    if len(found) != 1:
        raise BaseImageError(f"{requirements}: expected one 'tensorflow-cpu==X.Y.Z' line, got {found}")
    return found[0]


def _local_cas() -> list[Path]:
    return sorted(LOCAL_CAS.glob("*.crt")) if LOCAL_CAS.is_dir() else []


def tag(tf_version: str | None = None) -> str:
    """REPOSITORY:<hash of this script, the suite, the packages, the TF version, the local CAs>."""
    digest = hashlib.sha256()
    for part in (Path(__file__).read_bytes(), SUITE.encode(), " ".join(PACKAGES).encode(),
                 (tf_version or tf_pin()).encode(), *(ca.read_bytes() for ca in _local_cas())):
        digest.update(hashlib.sha256(part).digest())
    return f"{REPOSITORY}:{digest.hexdigest()[:16]}"


def debian_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive this machine's apt uses (deb822 `.sources` or one-line `.list`)."""
    files = sorted(sources_dir.glob("sources.list.d/*.sources")) + [sources_dir / "sources.list"]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE and "[" not in parts[1]:
                return parts[1]
    raise BaseImageError(f"no apt source for Debian {SUITE} under {sources_dir}")


#: What commands inside the chroot see: nothing of the caller's environment leaks into the base.
CHROOT_ENV = {"PATH": ENV["PATH"], "HOME": "/root", "LANG": "C.UTF-8",
              "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt", "PYTHONDONTWRITEBYTECODE": "1"}


def _run(argv: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, **kw)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise BaseImageError(f"{what} failed ({done.returncode}): {' '.join(argv)}\n{tail}")
    return done


def exists(image: str, docker: str = "docker") -> bool:
    return subprocess.run([docker, "image", "inspect", image], capture_output=True).returncode == 0


def _uv() -> Path:
    """uv, static and already in the project's venv: installs TF far faster than pip."""
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        uv = Path(shutil.which("uv") or "")
    if not uv.is_file():
        raise BaseImageError("uv not found (run `make setup` first: it installs uv in .venv)")
    return uv


def build(image: str, tf_version: str, docker: str = "docker", log=print) -> None:
    if os.geteuid() != 0:
        raise BaseImageError("building the base needs root (debootstrap and chroot)")
    if not shutil.which("debootstrap"):
        raise BaseImageError("debootstrap is not installed (apt-get install debootstrap)")
    uv_cache = Path(_run([str(_uv()), "cache", "dir"], "uv cache dir").stdout.strip())
    uv_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="scoring-base-") as work:
        root = Path(work) / "rootfs"
        log(f"base: debootstrap {SUITE} minbase + {', '.join(PACKAGES)}")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
              SUITE, str(root), debian_mirror()], "debootstrap", env=CHROOT_ENV)
        if _local_cas():
            for ca in _local_cas():
                shutil.copy2(ca, root / ca.relative_to("/"))
            _run(["chroot", str(root), "update-ca-certificates"], "update-ca-certificates",
                 env=CHROOT_ENV)
        # pip (the Dockerfile's RUN) uses its own CA bundle unless told: use the system's, as here.
        (root / "etc" / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        log(f"base: {VENV} with tensorflow-cpu=={tf_version}")
        _run(["chroot", str(root), "python3", "-m", "venv", VENV], "python3 -m venv", env=CHROOT_ENV)
        shutil.copy2(_uv(), root / "tmp" / "uv")
        shutil.copy2("/etc/resolv.conf", root / "etc" / "resolv.conf")
        cache = root / "tmp" / "uv-cache"
        cache.mkdir()
        # The host's uv cache (filled by `make setup`, which installs the same TF) saves the download.
        _run(["mount", "--bind", str(uv_cache), str(cache)], "bind-mount the uv cache")
        try:
            # --compile-bytecode: as pip does by default, and as the GPU image ships TF. On a
            # read-only root nothing can write it later, and each worker would compile TF anew.
            _run(["chroot", str(root), "/tmp/uv", "pip", "install", "--python", f"{VENV}/bin/python",
                  "--cache-dir", "/tmp/uv-cache", "--link-mode", "copy", "--no-progress",
                  "--compile-bytecode", f"tensorflow-cpu=={tf_version}"], "installing tensorflow-cpu",
                 env=CHROOT_ENV)
        finally:
            _run(["umount", str(cache)], "unmount the uv cache")
        _run(["chroot", str(root), f"{VENV}/bin/python", "-c", "import tensorflow"],
             "importing tensorflow in the base", env=CHROOT_ENV)
        for junk in ("tmp", "var/cache/apt/archives", "var/lib/apt/lists", "root/.cache"):
            for path in (root / junk).glob("*"):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.name != "lock" and path.name != "partial":
                    path.unlink()
        (root / "etc" / "resolv.conf").write_text("")  # the engine writes its own at run time
        log(f"base: importing as {image}")
        changes = [f"ENV {k}={v}" for k, v in ENV.items()] + ['CMD ["python3"]']
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)
        argv = [docker, "import", *[a for c in changes for a in ("--change", c)], "-", image]
        done = subprocess.run(argv, stdin=tar.stdout, capture_output=True, text=True)
        tar.stdout.close()
        if tar.wait() != 0 or done.returncode != 0:
            raise BaseImageError(f"docker import failed: {done.stderr[-2000:]}")


def ensure(docker: str = "docker", log=print) -> str:
    """The base's tag, built first if the engine does not hold it yet."""
    tf_version = tf_pin()
    image = tag(tf_version)
    if not exists(image, docker):
        build(image, tf_version, docker, log)
        stale = _run([docker, "images", REPOSITORY, "--format", "{{.Repository}}:{{.Tag}}"],
                     "docker images").stdout.split()
        for old in set(stale) - {image}:  # a base is 1.7 GB: keep only the current one
            log(f"base: removing the stale {old}")
            subprocess.run([docker, "rmi", old], capture_output=True)
    return image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", action="store_true", help="print the tag only, build nothing")
    parser.add_argument("--docker", default="docker", help="the docker CLI (default: docker)")
    args = parser.parse_args(argv)
    try:
        print(tag() if args.tag else ensure(args.docker, log=lambda m: print(m, file=sys.stderr)))
    except BaseImageError as error:
        print(f"base image: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
