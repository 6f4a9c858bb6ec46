"""Azurite, the Azure Storage emulator (tests/azurite/package.json pins it; `make setup`
installs it into tests/azurite/node_modules), on 127.0.0.1 over HTTPS with a self-signed
certificate and `--oauth basic`, so the fetch takes the bearer-token path it takes in
production.

Azurite's basic OAuth level checks a token's expiry, issuer prefix and audience, not its
signature or any permission (node_modules/azurite/README.md, "OAuth Configuration";
dist/src/blob/authentication/BlobTokenAuthenticator.js). `Token` mints such a token;
a token it rejects (wrong audience) gets a real 403 AuthenticationFailed.
"""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from azure.core.credentials import AccessToken

from scoring_tools.local import ROOT, free_port

AZURITE = ROOT / "tests" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (subjectAltName IP) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class Token:
    """A TokenCredential with an unsigned JWT of the shape Entra ID issues for storage."""

    def __init__(self, audience: str = "https://storage.azure.com"):
        self.audience, self.calls = audience, 0

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.calls += 1
        now = int(time.time())
        claims = {"aud": self.audience, "iss": f"https://sts.windows.net/{TENANT}/",
                  "nbf": now - 60, "iat": now - 60, "exp": now + 3600, "oid": "test", "tid": TENANT}
        part = lambda doc: base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()  # noqa: E731
        return AccessToken(f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.c2ln", now + 3600)


class Azurite:
    """One emulator process; `stop()` kills it (SIGKILL: an interrupted transfer),
    `start()` brings it back on the same port and data directory."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.data = workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = self_signed(workdir)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "azurite.log"

    @property
    def endpoint(self) -> str:
        """The storage endpoint the fetch must be told of (SCORING_MODEL_STORAGE_SUFFIX): it
        sends its token to no other host."""
        return f"127.0.0.1:{self.port}"

    @property
    def account_url(self) -> str:
        return f"https://{self.endpoint}/{ACCOUNT}"

    def start(self, timeout: float = 60) -> "Azurite":
        if not AZURITE.exists():
            raise RuntimeError(f"{AZURITE} missing: run `make setup` (npm ci in tests/azurite)")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                 "--location", str(self.data), "--cert", str(self.cert), "--key", str(self.key),
                 "--oauth", "basic", "--skipApiVersionCheck", "--disableTelemetry"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"azurite exited {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"azurite not listening within {timeout}s")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL by default (a transfer cut off); SIGINT lets Azurite save its metadata
        database first (it autosaves only every few seconds)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def persist(self) -> None:
        """Stop gracefully and start again: what was uploaded is on disk before a SIGKILL."""
        self.stop(signal.SIGINT)
        self.start()

    def container(self, name: str, credential=None):
        from azure.storage.blob import ContainerClient
        return ContainerClient(self.account_url, name, credential=credential or Token(),
                               connection_verify=str(self.cert))
