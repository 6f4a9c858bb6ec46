"""Where the capture servers' records go during a benchmark: Azurite on 127.0.0.1 (HTTPS,
OAuth) and the stand-in Entra token endpoint, so a capturing server uploads exactly as a pod
does, with azure-identity's WorkloadIdentityCredential (tests/model_store/azurite.py and
fake_entra.py: the same emulator and endpoint the tests use).

``capture100`` and ``capture5`` are ours with capture on at 100% and 5% (images off, the
default); ``ours`` is the same server with capture off, in the same run and turns.
"""
import contextlib
import tempfile
from pathlib import Path

#: server name -> SCORING_CAPTURE_SAMPLE_RATE
RATES = {"capture100": "1", "capture5": "0.05"}
_CLIENT_ID = "00000000-0000-0000-0000-00000000c0de"
_ASSERTION = "bench-projected-token"


@contextlib.contextmanager
def running(workdir: Path | None = None):
    """Azurite and the token endpoint; yields the variables a capturing server needs
    (without its sample rate) and a function counting the records uploaded so far."""
    from tests.model_store.azurite import TENANT, Azurite
    from tests.model_store.fake_entra import FakeEntra
    with contextlib.ExitStack() as stack:
        root = Path(workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-capture-")))
        azurite = Azurite(root / "azurite").start()
        stack.callback(azurite.stop)
        container = azurite.container("captures")
        container.create_container()
        token_file = root / "token"
        token_file.write_text(_ASSERTION)
        entra = stack.enter_context(FakeEntra(azurite.cert, azurite.key, _CLIENT_ID, _ASSERTION))
        env = {"SCORING_CAPTURE_URI": f"{azurite.account_url}/captures",
               "AZURE_AUTHORITY_HOST": entra.authority, "AZURE_TENANT_ID": TENANT,
               "AZURE_CLIENT_ID": _CLIENT_ID, "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
               "REQUESTS_CA_BUNDLE": str(azurite.cert)}
        yield env, lambda: sum(1 for _ in container.list_blobs())
