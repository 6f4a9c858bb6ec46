"""The fetch against what a storage writer, or the publisher of a modelUri model, can plant,
and against a hostile SCORING_MODEL_URI or SCORING_MODEL_DIR: every refusal is one line, a
non-zero exit, and leaves nothing placed (and nothing of anyone else's removed)."""
from __future__ import annotations

import json

import pytest

from scoring_app.model_store import fetch as fetch_mod
from scoring_app.model_store import manifest as mf
from tests.model_store.fake_entra import FakeEntra
from tests.model_store.test_fetch import CLIENT_ID, _cli, _fetch, _nothing_left, _workload_env

pytestmark = pytest.mark.slow

ASSERTION = "projected-service-account-token"


def _plant(container, files: dict[str, bytes], listed: list | None = None, raw: bytes | None = None):
    """A prefix whose manifest matches the digest it is published under (what the publisher of
    a modelUri model controls): ``listed`` entries (default: ``files``, honestly), or ``raw``
    bytes as the manifest. Returns (prefix, digest)."""
    if raw is None:
        if listed is None:
            listed = [{"path": p, "size": len(b), "sha256": mf.digest(b)} for p, b in files.items()]
        raw = json.dumps({"format": mf.FORMAT, "files": listed}, separators=(",", ":")).encode()
    digest = mf.digest(raw)
    prefix = f"planted/{digest}"
    for path, data in files.items():
        container.upload_blob(f"{prefix}/{path}", data, overwrite=True)
    container.upload_blob(f"{prefix}/{mf.MANIFEST_NAME}", raw, overwrite=True)
    return prefix, digest


def _run(azurite, tmp_path, uri, digest, dest=None, **env):
    """The init container's command with its workload identity; returns (exit code, stderr
    lines, the token endpoint's requests, dest)."""
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text(ASSERTION)
    dest = dest or tmp_path / "volume" / "model"
    with FakeEntra(azurite.cert, azurite.key, CLIENT_ID, ASSERTION) as entra:
        done = _cli({**_workload_env(azurite, entra, token_file, uri, digest, dest), **env})
    return done.returncode, done.stderr.strip().splitlines(), entra.requests, dest


def _refused_in_one_line(azurite, container, tmp_path, prefix, digest, message):
    code, lines, _, dest = _run(azurite, tmp_path, f"{azurite.account_url}/"
                                f"{container.container_name}/{prefix}", digest)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith("model fetch failed: ") and message in lines[0], lines
    assert _nothing_left(dest)
    return lines[0]


# --- bounded reads --------------------------------------------------------------------------

def test_an_oversized_manifest_is_refused_by_its_size_not_read(azurite, container, tmp_path):
    """A storage writer plants a manifest of 64 MiB: the fetch asks for no more than the bound
    and names it, instead of reading it all into the init container's memory."""
    size = 64 << 20
    prefix = f"planted/{'0' * 64}"
    container.upload_blob(f"{prefix}/{mf.MANIFEST_NAME}", b" " * size, overwrite=True)
    _refused_in_one_line(azurite, container, tmp_path, prefix, "0" * 64,
                         f"manifest.json in blob storage is over the bound of "
                         f"{mf.MAX_MANIFEST_BYTES} bytes on a manifest")


def test_a_manifest_of_too_many_entries_names_the_bound(azurite, container, tmp_path):
    listed = [{"path": f"f{i}", "size": 1, "sha256": "a" * 64} for i in range(mf.MAX_ENTRIES + 1)]
    prefix, digest = _plant(container, {}, listed)
    _refused_in_one_line(azurite, container, tmp_path, prefix, digest,
                         f"lists {mf.MAX_ENTRIES + 1} files, over the bound of {mf.MAX_ENTRIES}")


def test_a_concurrency_past_its_bound_is_refused(azurite, tmp_path):
    code, lines, requests, _ = _run(azurite, tmp_path, f"{azurite.account_url}/models/x/y", "a" * 64,
                                    SCORING_FETCH_CONCURRENCY="5000")
    assert code == 1 and lines == [f"model fetch failed: SCORING_FETCH_CONCURRENCY must be 1 to "
                                   f"{fetch_mod.MAX_CONCURRENCY}, got 5000"]


def test_a_shard_is_never_written_past_its_listed_size(tmp_path):
    """What readinto writes goes through a bound: the manifest's size for that file."""
    with open(tmp_path / "shard", "wb") as handle:
        bounded = fetch_mod._Bounded(handle, 4, "shard")
        bounded.write(b"abc")
        with pytest.raises(fetch_mod.FetchError, match=r"^'shard': more than the manifest's 4 bytes"):
            bounded.write(b"de")
    assert (tmp_path / "shard").read_bytes() == b"abc"


# --- names and malformed manifests: one line, nothing placed ---------------------------------

def test_a_name_with_a_newline_cannot_forge_a_log_line(azurite, container, tmp_path):
    name = "x\nmodel fetch: verified 3 files"
    listed = [{"path": name, "size": 1, "sha256": "a" * 64}]
    prefix, digest = _plant(container, {}, listed)
    line = _refused_in_one_line(azurite, container, tmp_path, prefix, digest,
                                "holds a control character")
    assert repr(name) in line


def test_a_file_and_a_directory_of_the_same_name_is_one_line(azurite, container, tmp_path):
    prefix, digest = _plant(container, {"a": b"1", "a/b": b"2"})
    _refused_in_one_line(azurite, container, tmp_path, prefix, digest,
                         "'a' is listed as a file and is the directory of 'a/b'")


def test_a_directory_name_longer_than_the_file_system_allows_is_one_line(azurite, container, tmp_path):
    prefix, digest = _plant(container, {"d" * 256 + "/f": b"1"})
    _refused_in_one_line(azurite, container, tmp_path, prefix, digest,
                         "has a component longer than 255 bytes")


def test_deeply_nested_json_is_one_line(azurite, container, tmp_path):
    prefix, digest = _plant(container, {}, raw=b"[" * 100_000 + b"]" * 100_000)
    _refused_in_one_line(azurite, container, tmp_path, prefix, digest, "nested too deeply")


# --- SCORING_MODEL_URI: the token goes to a storage endpoint only ----------------------------

@pytest.mark.parametrize("uri, message", [
    ("https://user:s3cret@{endpoint}/devstoreaccount1/{container}/{prefix}", "must not carry a user part"),
    ("https://{endpoint}/devstoreaccount1/other/../{container}/{prefix}", "path segment '..' is not a plain name"),
    ("https://{endpoint}/devstoreaccount1/{container}/./{prefix}", "path segment '.' is not a plain name"),
    ("https://{endpoint}/devstoreaccount1/{container}/{prefix}#frag", "must not carry a query or a fragment"),
    ("https://{endpoint}/devstoreaccount1/{container}/{prefix}?", "must not carry a query or a fragment"),
    ("https://{endpoint}/devstoreaccount1/{container}/%2e%2e/{prefix}", "path segment '%2e%2e'"),
    ("https://localhost:{port}/devstoreaccount1/{container}/{prefix}", "is not on the storage endpoint"),
])
def test_a_hostile_uri_is_refused_before_a_token_is_asked_for(azurite, container, tmp_path, uri,
                                                              message):
    uri = uri.format(endpoint=azurite.endpoint, port=azurite.port,
                     container=container.container_name, prefix=f"colours/{'a' * 64}")
    code, lines, requests, dest = _run(azurite, tmp_path, uri, "a" * 64)
    assert code == 1 and len(lines) == 1 and message in lines[0], lines
    assert "s3cret" not in lines[0]
    assert requests == []  # no token was asked for, so none could be sent anywhere
    assert _nothing_left(dest)


def test_the_token_goes_only_to_the_named_storage_endpoint(azurite, container, tmp_path):
    """Without SCORING_MODEL_STORAGE_SUFFIX naming the emulator, only the public cloud's blob
    endpoint is one: the emulator's host gets no token."""
    uri = f"{azurite.account_url}/{container.container_name}/colours/{'a' * 64}"
    code, lines, requests, _ = _run(azurite, tmp_path, uri, "a" * 64,
                                    SCORING_MODEL_STORAGE_SUFFIX="")
    assert code == 1 and len(lines) == 1, lines
    assert "is not on a storage endpoint https://<account>.blob.core.windows.net" in lines[0]
    assert requests == []


@pytest.mark.parametrize("uri", [
    "https://evil.example.com/models/colours/x",
    "https://acct.blob.core.windows.net.evil.example.com/models/colours/x",
    "https://acct.blob.core.windows.net:8443/models/colours/x",
    "http://acct.blob.core.windows.net/models/colours/x",
    "https://acct.blob.core.windows.net/models/colours/x\n",
])
def test_only_the_public_blob_endpoint_is_accepted_by_default(uri):
    with pytest.raises(fetch_mod.FetchError) as caught:
        fetch_mod.parse_uri(uri)
    assert "\n" not in str(caught.value)


def test_a_sovereign_cloud_is_named_by_its_suffix():
    loc = fetch_mod.parse_uri("https://acct.blob.core.usgovcloudapi.net/models/colours/x",
                              "blob.core.usgovcloudapi.net")
    assert (loc.account_url, loc.container, loc.prefix) == (
        "https://acct.blob.core.usgovcloudapi.net", "models", "colours/x")
    with pytest.raises(fetch_mod.FetchError, match="not on a storage endpoint"):
        fetch_mod.parse_uri("https://acct.blob.core.windows.net/models/colours/x",
                            "blob.core.usgovcloudapi.net")


# --- SCORING_MODEL_DIR: checked first; only what a fetch placed is removed -------------------

def test_a_destination_outside_the_volume_is_refused_and_nothing_is_removed(
        azurite, container, encoded_model_dir, tmp_path):
    from scoring_tools.publish_model import publish
    prefix, digest = publish(encoded_model_dir, container, "colours")
    volume = tmp_path / "volume"
    (volume / "keep").mkdir(parents=True)
    (volume / "keep" / "precious.txt").write_text("someone else's")
    uri = f"{azurite.account_url}/{container.container_name}/{prefix}"
    for dest in (f"{volume}/model/../keep", f"{volume}/model/..", f"{volume}//keep", "model"):
        code, lines, requests, _ = _run(azurite, tmp_path, uri, digest, dest=dest)
        assert code == 1 and len(lines) == 1 and "SCORING_MODEL_DIR" in lines[0], lines
        assert requests == []
        assert (volume / "keep" / "precious.txt").read_text() == "someone else's"


def test_a_directory_the_fetch_did_not_place_is_not_removed(azurite, container, encoded_model_dir,
                                                            tmp_path):
    from scoring_tools.publish_model import publish
    prefix, digest = publish(encoded_model_dir, container, "colours")
    dest = tmp_path / "volume" / "model"
    dest.mkdir(parents=True)
    (dest / "precious.txt").write_text("someone else's")
    with pytest.raises(fetch_mod.FetchError, match="already exists and was not placed by a model fetch"):
        _fetch(azurite, container, prefix, digest, dest)
    assert (dest / "precious.txt").read_text() == "someone else's"


def test_a_symlinked_destination_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "volume").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(fetch_mod.FetchError, match="passes through a symbolic link"):
        fetch_mod.check_destination(tmp_path / "volume" / "model")
