"""How long the init container takes to fail when it can get no storage token.

    python -m bench.token_failure

Runs the fetch command (`python -m scoring_app.model_store.fetch`, with its default
SCORING_FETCH_RETRIES) twice, as the pod runs it, with azure-identity's
WorkloadIdentityCredential: once against a stand-in Entra token endpoint on 127.0.0.1 that
refuses the identity (400 invalid_client, what a wrong federation gets), once against a
port where nothing listens. Nothing else is needed: the token comes before any blob
request. Prints the seconds to exit, the token requests made and the lines on stderr.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
DIGEST = "a" * 64


def run(authority: str, work: Path, ca: Path) -> tuple[float, list[str]]:
    from tests.model_store.azurite import TENANT
    token = work / "token"
    token.write_text("someone-elses-token")
    env = {**os.environ, "AZURE_AUTHORITY_HOST": authority, "AZURE_TENANT_ID": TENANT,
           "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_FEDERATED_TOKEN_FILE": str(token),
           "REQUESTS_CA_BUNDLE": str(ca), "SCORING_MODEL_DIGEST": DIGEST,
           "SCORING_MODEL_URI": f"https://theirmodels.blob.core.windows.net/published/m/{DIGEST}",
           "SCORING_MODEL_DIR": str(work / "volume" / "model")}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "scoring_app.model_store.fetch"], env=env,
                          capture_output=True, text=True, timeout=600)
    return time.monotonic() - started, done.stderr.strip().splitlines()


def main() -> int:
    from tests.model_store.azurite import self_signed
    from tests.model_store.fake_entra import FakeEntra
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cert, key = self_signed(work)
        with FakeEntra(cert, key, CLIENT_ID, "the-federated-token") as entra:
            seconds, lines = run(entra.authority, work, cert)
            requests = len(entra.requests)
        print(f"wrong identity (Entra 400): {seconds:.1f} s, {requests} token requests, "
              f"{len(lines)} stderr lines\n  {lines[-1] if lines else ''}")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        seconds, lines = run(f"https://127.0.0.1:{port}", work, cert)
        print(f"token endpoint unreachable: {seconds:.1f} s, {len(lines)} stderr lines\n  "
              f"{lines[-1] if lines else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
