"""The init container's fetch against Azurite over HTTPS with bearer tokens: the real
SDK, the real emulator, the demo SavedModel served by the real server afterwards."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from scoring_app.model_store import fetch as fetch_mod
from scoring_app.model_store import manifest as mf
from scoring_tools.local import ROOT
from scoring_tools.publish_model import publish
from tests.app import media
from tests.app.conftest import Server
from tests.model_store.azurite import TENANT, Token
from tests.model_store.fake_entra import FakeEntra

pytestmark = pytest.mark.slow


def _fetch(azurite, container, prefix, digest, dest, credential=None, **kw):
    uri = f"{azurite.account_url}/{container.container_name}/{prefix}"
    return fetch_mod.fetch(uri, digest, dest, credential or Token(),
                           connection_verify=str(azurite.cert), storage_suffix=azurite.endpoint, **kw)


def _nothing_left(dest):
    """Neither the model path nor its staging directory: nothing partial to load."""
    return not dest.exists() and not dest.with_name(f".{dest.name}.partial").exists()


def _refused(azurite, container, prefix, digest, tmp_path, match, error=fetch_mod.FetchError, **kw):
    """The fetch stops with ``error`` matching ``match``, and leaves nothing to load."""
    dest = tmp_path / "model"
    with pytest.raises(error, match=match):
        _fetch(azurite, container, prefix, digest, dest, **kw)
    assert _nothing_left(dest)


@pytest.fixture()
def published(container, encoded_model_dir):
    prefix, digest = publish(encoded_model_dir, container, "colours")
    return prefix, digest


def test_fetched_model_is_served_and_scores(azurite, container, published, encoded_model_dir,
                                            secret_dir, tmp_path):
    prefix, digest = published
    assert prefix == f"colours/{digest}"
    token = Token()
    dest = tmp_path / "models" / "model"
    stats = _fetch(azurite, container, prefix, digest, dest, token)
    # the bearer-token path, not a key: once before the downloads, then the SDK's policy
    assert token.calls >= 2
    assert stats["files"] == len(mf.build(encoded_model_dir))
    assert mf.build(dest) == mf.build(encoded_model_dir)  # byte for byte
    assert stats["bytes"] == sum(e.size for e in mf.build(dest))
    server = Server({"SCORING_MODEL_DIR": str(dest), "SCORING_MODEL_NAME": "colours",
                     "SCORING_MODEL_VERSION": "1", "SCORING_API_KEYS_DIR": str(secret_dir.path),
                     "SCORING_WORKERS": "1", "TMPDIR": str(tmp_path)})
    try:
        server.wait_ready()
        answer = requests.post(server.url + "/score", data=media.jpeg(media.RED), timeout=30,
                               headers={"Authorization": "Bearer primary-key-1"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0]["label"] == "red"
        metrics = server.metrics()
        assert f"scoring_model_fetch_bytes {float(stats['bytes'])}" in metrics
        assert f"scoring_model_fetch_seconds {float(stats['seconds'])}" in metrics
    finally:
        server.stop()


def test_tampered_file_is_refused_by_name(azurite, container, published, tmp_path):
    prefix, digest = published
    container.upload_blob(f"{prefix}/saved_model.pb", b"evil graph", overwrite=True)
    _refused(azurite, container, prefix, digest, tmp_path,
             match=r"'saved_model\.pb': size 10 in blob storage")


def test_same_size_tamper_is_caught_by_hash(azurite, container, published, encoded_model_dir, tmp_path):
    prefix, digest = published
    original = (encoded_model_dir / "saved_model.pb").read_bytes()
    flipped = bytes([original[0] ^ 1]) + original[1:]
    container.upload_blob(f"{prefix}/saved_model.pb", flipped, overwrite=True)
    _refused(azurite, container, prefix, digest, tmp_path,
             match=r"'saved_model\.pb': sha256 [0-9a-f]{64} does not match")


def test_missing_file_is_named(azurite, container, published, tmp_path):
    prefix, digest = published
    victim = next(e.path for e in mf.decode(
        container.download_blob(f"{prefix}/manifest.json").readall(), digest)
        if e.path.startswith("variables/"))
    container.delete_blob(f"{prefix}/{victim}")
    _refused(azurite, container, prefix, digest, tmp_path,
             match=f"missing in blob storage: .*/{prefix}/{victim}$")


def test_missing_manifest_is_named(azurite, container, published, tmp_path):
    prefix, digest = published
    container.delete_blob(f"{prefix}/manifest.json")
    _refused(azurite, container, prefix, digest, tmp_path,
             match=f"missing in blob storage: .*/{prefix}/manifest.json$")


def test_manifest_swapped_with_its_files_is_refused(azurite, container, published, tensor_model_dir,
                                                    tmp_path):
    """Someone who can write to the account swaps in another model, manifest and files
    consistent with each other: the digest in the spec no longer matches."""
    prefix, digest = published
    other = mf.build(tensor_model_dir)
    for entry in other:
        container.upload_blob(f"{prefix}/{entry.path}", (tensor_model_dir / entry.path).read_bytes(),
                              overwrite=True)
    container.upload_blob(f"{prefix}/manifest.json", mf.encode(other), overwrite=True)
    _refused(azurite, container, prefix, digest, tmp_path, error=mf.ManifestError,
             match=f"manifest.json has sha256 {mf.digest(mf.encode(other))}, "
                   f"but the deployment expects {digest}")


def test_rejected_token_names_the_permission(azurite, container, published, tmp_path):
    prefix, digest = published
    dest = tmp_path / "model"
    with pytest.raises(fetch_mod.FetchError) as caught:
        _fetch(azurite, container, prefix, digest, dest, Token(audience="https://vault.azure.net"),
               retries=0)
    line = str(caught.value)
    assert line.startswith("403 AuthenticationFailed reading ")
    assert "'Storage Blob Data Reader'" in line and fetch_mod.READ_ACTION in line
    assert "\n" not in line
    assert _nothing_left(dest)


def test_a_stale_model_dir_is_replaced(azurite, container, published, encoded_model_dir, tmp_path):
    """An init container that runs again (pod restart, same emptyDir) starts clean: the model
    an earlier fetch placed, and a staging directory a killed one left, are removed."""
    prefix, digest = published
    dest = tmp_path / "model"
    _fetch(azurite, container, prefix, digest, dest)
    (dest / "leftover.bin").write_bytes(b"old")
    dest.with_name(".model.partial").mkdir()
    _fetch(azurite, container, prefix, digest, dest)
    assert mf.build(dest) == mf.build(encoded_model_dir)


BIG = 48 << 20  # six 8 MiB chunks: the kill lands between chunks of one file


@pytest.fixture()
def big_model(container, azurite, tmp_path):
    model = tmp_path / "big"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(os.urandom(1 << 20))
    (model / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(BIG))
    prefix, digest = publish(model, container, "big")
    azurite.persist()  # on Azurite's disk before it is killed
    return model, prefix, digest


def _kill_when_started(azurite, restart_after_s=None):
    """A progress hook that SIGKILLs the emulator once bytes have started to arrive, and
    (optionally) starts it again from another thread, while the fetch retries."""
    fired = threading.Event()
    restarted = threading.Event()

    def hook(path, current, total):
        if current > 0 and current < BIG and path.startswith("variables/") and not fired.is_set():
            fired.set()
            azurite.stop()
            if restart_after_s is not None:
                def later():
                    time.sleep(restart_after_s)
                    azurite.start()
                    restarted.set()
                threading.Thread(target=later, daemon=True).start()
    return hook, fired, restarted


def test_interrupted_transfer_recovers_when_the_emulator_returns(azurite, container, big_model, tmp_path):
    model, prefix, digest = big_model
    hook, fired, restarted = _kill_when_started(azurite, restart_after_s=1.0)
    dest = tmp_path / "model"
    try:
        stats = _fetch(azurite, container, prefix, digest, dest, on_progress=hook, concurrency=2,
                       retries=6, initial_backoff=1, increment_base=2)
    finally:
        if fired.is_set():
            restarted.wait(60)
    assert fired.is_set() and restarted.is_set()
    assert mf.build(dest) == mf.build(model)
    assert stats["bytes"] == BIG + (1 << 20)


def test_interrupted_transfer_fails_cleanly_when_it_does_not(azurite, container, big_model, tmp_path):
    _model, prefix, digest = big_model
    hook, fired, _ = _kill_when_started(azurite)
    dest = tmp_path / "model"
    try:
        with pytest.raises(fetch_mod.FetchError, match=r"^cannot download .*variables/variables\.data"
                                                       r"|^cannot download .*saved_model\.pb"):
            _fetch(azurite, container, prefix, digest, dest, on_progress=hook, concurrency=2,
                   retries=1, initial_backoff=0.2, increment_base=1)
        assert fired.is_set()
        assert _nothing_left(dest)
    finally:
        azurite.start()


def _cli(env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SCORING_", "AZURE_"))}
    return subprocess.run([sys.executable, "-m", "scoring_app.model_store.fetch"], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("env, message", [
    ({}, "model fetch failed: SCORING_MODEL_URI is not set (the stack sets it on the init container)"),
    ({"SCORING_MODEL_URI": "https://acct.blob.core.windows.net/models/x/y",
      "SCORING_MODEL_DIGEST": "abc", "SCORING_MODEL_DIR": "/tmp/m"},
     "model fetch failed: SCORING_MODEL_DIGEST must be 64 lowercase hex characters (a sha256), got 'abc'"),
    ({"SCORING_MODEL_URI": "https://acct.blob.core.windows.net/models/x?sv=2024&sig=abc",
      "SCORING_MODEL_DIGEST": "a" * 64, "SCORING_MODEL_DIR": "/tmp/m"},
     "model fetch failed: SCORING_MODEL_URI must not carry a query or a fragment (no SAS tokens: the pod uses its identity)"),
    ({"SCORING_MODEL_URI": "https://acct.blob.core.windows.net/models/x",
      "SCORING_MODEL_DIGEST": "a" * 64, "SCORING_MODEL_DIR": "/tmp/m",
      "SCORING_FETCH_CONCURRENCY": "many"},
     "model fetch failed: SCORING_FETCH_CONCURRENCY must be an integer, got 'many'"),
    ({"SCORING_MODEL_URI": "https://acct.blob.core.windows.net/models/x",
      "SCORING_MODEL_DIGEST": "a" * 64, "SCORING_MODEL_DIR": "/tmp/m",
      "SCORING_MODEL_SCAN": "maybe"},
     "model fetch failed: SCORING_MODEL_SCAN must be true or false, got 'maybe'"),
    ({"SCORING_MODEL_URI": "https://acct.blob.core.windows.net/models/x",
      "SCORING_MODEL_DIGEST": "a" * 64, "SCORING_MODEL_DIR": "/tmp/m"},
     "model fetch failed: workload identity is not configured: "),
])
def test_cli_bad_input_is_one_line_and_exit_1(env, message):
    done = _cli(env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr


CLIENT_ID = "11111111-2222-3333-4444-555555555555"


def _workload_env(azurite, entra, token_file, uri, digest, dest):
    """What AKS's webhook and the stack give the init container, plus the CA of this
    test's self-signed certificate (requests reads REQUESTS_CA_BUNDLE)."""
    return {"AZURE_AUTHORITY_HOST": entra.authority, "AZURE_TENANT_ID": TENANT,
            "AZURE_CLIENT_ID": CLIENT_ID, "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
            "REQUESTS_CA_BUNDLE": str(azurite.cert), "SCORING_MODEL_STORAGE_SUFFIX": azurite.endpoint,
            "SCORING_MODEL_URI": uri, "SCORING_MODEL_DIGEST": digest, "SCORING_MODEL_DIR": str(dest)}


def test_the_command_fetches_with_its_workload_identity_credential(azurite, container, published,
                                                                   encoded_model_dir, tmp_path):
    """The init container's command as it runs in the pod: WorkloadIdentityCredential
    exchanges the projected token for a storage token, then the fetch runs."""
    prefix, digest = published
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("projected-service-account-token")
    uri = f"{azurite.account_url}/{container.container_name}/{prefix}"
    dest = tmp_path / "models" / "model"
    with FakeEntra(azurite.cert, azurite.key, CLIENT_ID, "projected-service-account-token") as entra:
        done = _cli(_workload_env(azurite, entra, token_file, uri, digest, dest))
        assert done.returncode == 0, done.stderr
        assert [path for path, _ in entra.requests] == [f"/{TENANT}/oauth2/v2.0/token"]
    assert mf.build(dest) == mf.build(encoded_model_dir)
    assert "model fetch: verified" in done.stderr and "MB/s" in done.stderr

    # a token the federation does not know: one request (the token is asked for outside the
    # blob retries, and azure-identity does not retry Entra's 400), one line, nothing on disk
    token_file.write_text("someone-elses-token")
    dest2 = tmp_path / "models2" / "model"
    with FakeEntra(azurite.cert, azurite.key, CLIENT_ID, "projected-service-account-token") as entra:
        failed = _cli(_workload_env(azurite, entra, token_file, uri, digest, dest2))
        assert len(entra.requests) == 1
    assert failed.returncode == 1
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith("model fetch failed: no token for ") and "AADSTS700211" in line
    assert _nothing_left(dest2)


def test_a_token_endpoint_in_trouble_is_retried_a_bounded_number_of_times(
        azurite, container, published, tmp_path):
    """Entra answering 503: azure-identity's own retries (TOKEN_RETRIES), not those times the
    blob retries (6), then one line; the blob retries stay for the blob requests."""
    from scoring_app.model_store.fetch import TOKEN_RETRIES
    prefix, digest = published
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("projected-service-account-token")
    uri = f"{azurite.account_url}/{container.container_name}/{prefix}"
    dest = tmp_path / "models" / "model"
    with FakeEntra(azurite.cert, azurite.key, CLIENT_ID, "projected-service-account-token",
                   fail_with=503) as entra:
        failed = _cli(_workload_env(azurite, entra, token_file, uri, digest, dest))
        assert len(entra.requests) == 1 + TOKEN_RETRIES
    assert failed.returncode == 1
    [line] = failed.stderr.strip().splitlines()
    assert line.startswith(f"model fetch failed: no token for {azurite.account_url}"), line
    assert _nothing_left(dest)


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory):
    """Two EC P-256 key pairs as PEM files: the publisher's and someone else's."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    folder = tmp_path_factory.mktemp("signing-keys")
    for who in ("publisher", "other"):
        key = ec.generate_private_key(ec.SECP256R1())
        (folder / f"{who}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (folder / f"{who}.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return folder


@pytest.fixture()
def signed(container, encoded_model_dir, keys_dir, tmp_path):
    """The demo model signed with OpenSSF model signing (key method), then published."""
    import shutil

    from model_signing import signing
    model = tmp_path / "signed"
    shutil.copytree(encoded_model_dir, model)
    signing.Config().use_elliptic_key_signer(private_key=keys_dir / "publisher.key").sign(
        model, model / fetch_mod.SIGNATURE_NAME)
    prefix, digest = publish(model, container, "signed")
    return model, prefix, digest


def test_a_signed_model_verifies_with_its_key(azurite, container, signed, keys_dir, tmp_path):
    model, prefix, digest = signed
    dest = tmp_path / "model"
    _fetch(azurite, container, prefix, digest, dest,
           signer=fetch_mod.Signer(public_key=str(keys_dir / "publisher.pub")))
    assert mf.build(dest) == mf.build(model)


def test_a_signature_by_another_key_is_refused(azurite, container, signed, keys_dir, tmp_path):
    _model, prefix, digest = signed
    _refused(azurite, container, prefix, digest, tmp_path,
             match=r"^model\.sig: signature check failed: ",
             signer=fetch_mod.Signer(public_key=str(keys_dir / "other.pub")))


def test_an_unsigned_model_is_refused_when_a_key_is_named(azurite, container, published, keys_dir,
                                                          tmp_path):
    prefix, digest = published
    _refused(azurite, container, prefix, digest, tmp_path, match="the model is unsigned",
             signer=fetch_mod.Signer(public_key=str(keys_dir / "publisher.pub")))


def test_a_model_changed_and_republished_by_its_own_publisher_fails_the_signature(
        azurite, container, signed, keys_dir, encoded_model_dir, tmp_path):
    """A modelUri publisher who can rewrite the prefix and its manifest (and so a digest the
    deployment is then given) still cannot change a signed file without the key."""
    model, _, _ = signed
    (model / "saved_model.pb").write_bytes((encoded_model_dir / "saved_model.pb").read_bytes() + b"\0")
    prefix, digest = publish(model, container, "signed")
    _refused(azurite, container, prefix, digest, tmp_path,
             match=r"^model\.sig: signature check failed: .*saved_model\.pb",
             signer=fetch_mod.Signer(public_key=str(keys_dir / "publisher.pub")))


def test_a_signer_must_be_one_readable_thing(tmp_path):
    with pytest.raises(fetch_mod.FetchError, match="exactly one of"):
        fetch_mod.Signer()
    with pytest.raises(fetch_mod.FetchError, match="is not a readable file"):
        fetch_mod.Signer(public_key=str(tmp_path / "nope.pem"))


@pytest.fixture(scope="module")
def certificates_dir(tmp_path_factory):
    """A publisher's CA, a signing certificate it issued (EC P-256, digitalSignature) with its
    key, and another CA that issued nothing of the model's: PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    folder = tmp_path_factory.mktemp("signing-certificates")
    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, key, issuer, issuer_key, ca: bool):
        usage = x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca,
                              content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False)
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .add_extension(usage, critical=True)
                .sign(issuer_key, hashes.SHA256()))

    def pem(path, cert):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca_key, other_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    pem(folder / "ca.pem", certificate("publisher CA", ca_key, "publisher CA", ca_key, True))
    pem(folder / "other-ca.pem", certificate("other CA", other_key, "other CA", other_key, True))
    pem(folder / "signer.pem", certificate("model signer", leaf_key, "publisher CA", ca_key, False))
    (folder / "signer.key").write_bytes(leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return folder


def test_the_certificate_method_verifies_with_the_publishers_chain(
        azurite, container, encoded_model_dir, certificates_dir, tmp_path):
    """SCORING_MODEL_CERTIFICATE_CHAIN (what a deployment's modelCertificateChain mounts): a
    model signed by a certificate its CA issued verifies; against another CA it is refused."""
    import shutil

    from model_signing import signing
    model = tmp_path / "cert-signed"
    shutil.copytree(encoded_model_dir, model)
    signing.Config().use_certificate_signer(
        private_key=certificates_dir / "signer.key",
        signing_certificate=certificates_dir / "signer.pem",
        certificate_chain=[certificates_dir / "ca.pem"]).sign(model, model / fetch_mod.SIGNATURE_NAME)
    prefix, digest = publish(model, container, "cert-signed")
    dest = tmp_path / "model"
    _fetch(azurite, container, prefix, digest, dest,
           signer=fetch_mod.Signer(certificate_chain=(str(certificates_dir / "ca.pem"),)))
    assert mf.build(dest) == mf.build(model)
    other = tmp_path / "other"
    with pytest.raises(fetch_mod.FetchError, match=r"^model\.sig: signature check failed: "):
        _fetch(azurite, container, prefix, digest, other,
               signer=fetch_mod.Signer(certificate_chain=(str(certificates_dir / "other-ca.pem"),)))
    assert _nothing_left(other)


def test_prepared_models_labels_travel_with_it(azurite, container, prepared_resnet50, secret_dir,
                                               tmp_path):
    """prepare_model's labels asset is a file of the SavedModel like any other: listed in the
    manifest, published, fetched byte for byte, and what the server names classes with."""
    prefix, digest = publish(prepared_resnet50.dir, container, "resnet50")
    assert "assets/labels.txt" in {e.path for e in mf.decode(
        container.download_blob(f"{prefix}/manifest.json").readall(), digest)}
    dest = tmp_path / "models" / "model"
    _fetch(azurite, container, prefix, digest, dest)
    assert ((dest / "assets" / "labels.txt").read_bytes()
            == (prepared_resnet50.dir / "assets" / "labels.txt").read_bytes())
    server = Server({"SCORING_MODEL_DIR": str(dest), "SCORING_MODEL_NAME": "resnet50",
                     "SCORING_API_KEYS_DIR": str(secret_dir.path), "SCORING_WORKERS": "1",
                     "SCORING_MAX_BATCH_SIZE": "1", "TMPDIR": str(tmp_path)})
    try:
        server.wait_ready(timeout=300)
        answer = requests.post(server.url + "/score?top_k=3", data=media.jpeg(media.RED),
                               timeout=60, headers={"Authorization": "Bearer primary-key-1"})
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        assert [p["label"] for p in predictions] == [
            prepared_resnet50.labels[p["index"]] for p in predictions]
        assert all(p["label"].startswith("stand-in class ") for p in predictions)
    finally:
        server.stop()
