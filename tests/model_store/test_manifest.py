"""The manifest and its digest: deterministic, and refusing what it cannot vouch for."""
from __future__ import annotations

import json
import os

import pytest

from scoring_app.model_store import manifest as mf


def _model(root):
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"graph")
    (root / "variables" / "variables.index").write_bytes(b"index")
    (root / "variables" / "empty").write_bytes(b"")
    return root


def test_same_content_same_digest_other_content_other_digest(tmp_path):
    a, b = _model(tmp_path / "a"), _model(tmp_path / "b")
    da, db = mf.digest(mf.encode(mf.build(a))), mf.digest(mf.encode(mf.build(b)))
    assert da == db
    (b / "saved_model.pb").write_bytes(b"graph2")
    assert mf.digest(mf.encode(mf.build(b))) != da
    assert [e.path for e in mf.build(a)] == ["saved_model.pb", "variables/empty", "variables/variables.index"]


def test_round_trip_and_prefix(tmp_path):
    entries = mf.build(_model(tmp_path / "m"))
    data = mf.encode(entries)
    assert mf.decode(data, mf.digest(data)) == entries
    assert mf.prefix("resnet50", mf.digest(data)) == f"resnet50/{mf.digest(data)}"


def test_symlink_and_reserved_name_and_empty_dir_are_refused(tmp_path):
    m = _model(tmp_path / "m")
    os.symlink(m / "saved_model.pb", m / "link.pb")
    with pytest.raises(mf.ManifestError, match="link.pb: symbolic links are not published"):
        mf.build(m)
    n = _model(tmp_path / "n")
    (n / "manifest.json").write_text("{}")
    with pytest.raises(mf.ManifestError, match="manifest.json is reserved"):
        mf.build(n)
    (tmp_path / "e").mkdir()
    with pytest.raises(mf.ManifestError, match="holds no files"):
        mf.build(tmp_path / "e")
    with pytest.raises(mf.ManifestError, match="does not exist"):
        mf.build(tmp_path / "nowhere")


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b",
                                  "manifest.json", "", 7])
def test_a_manifest_naming_paths_outside_the_model_is_refused(path):
    """Even with a matching digest (a publisher's bug or a hostile publisher of a modelUri)."""
    data = json.dumps({"format": mf.FORMAT, "files": [{"path": path, "size": 1, "sha256": "a" * 64}]},
                      sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(mf.ManifestError, match="manifest entry path"):
        mf.decode(data, mf.digest(data))


@pytest.mark.parametrize("doc, message", [
    ({"format": "other", "files": []}, "is not a scoring-model-manifest/1 document"),
    ({"format": mf.FORMAT, "files": []}, "lists no files"),
    ({"format": mf.FORMAT, "files": [{"path": "a", "size": -1, "sha256": "a" * 64}]}, "'a' has no valid size"),
    ({"format": mf.FORMAT, "files": [{"path": "a", "size": True, "sha256": "a" * 64}]}, "'a' has no valid size"),
    ({"format": mf.FORMAT, "files": [{"path": "a", "size": 1, "sha256": "A" * 64}]}, "'a' sha256 must be"),
    ({"format": mf.FORMAT, "files": [{"path": "a", "size": 1, "sha256": "a" * 64}] * 2}, "'a' is listed twice"),
])
def test_malformed_manifests_are_named(doc, message):
    data = json.dumps(doc).encode()
    with pytest.raises(mf.ManifestError, match=message):
        mf.decode(data, mf.digest(data))


def _signed(doc) -> bytes:
    """A manifest whose digest matches: what a hostile publisher of a modelUri can hand out."""
    return json.dumps(doc, separators=(",", ":")).encode()


def _one_line(exc_info) -> str:
    line = str(exc_info.value)
    assert "\n" not in line and "\r" not in line and "\x85" not in line and "\u2028" not in line
    return line


@pytest.mark.parametrize("path, message", [
    ("a\nmodel fetch: verified 3 files", "holds a control character"),
    ("a\rb", "holds a control character"),
    ("a\x1bb", "holds a control character"),
    ("a\x7fb", "holds a control character"),
    ("a\x85b", "holds a control character"),  # C1's NEL: a line break to some log readers
    ("a\u2028b", "holds a control character"),
    ("\ud800", "is not valid UTF-8"),
    ("x" * 256, "has a component longer than 255 bytes"),
    ("é" * 128, "has a component longer than 255 bytes"),  # 256 bytes in 128 characters
    ("/".join(["d" * 200] * 6), "is longer than 1024 bytes"),
])
def test_names_a_file_system_or_a_log_cannot_hold_are_refused_in_one_line(path, message):
    data = _signed({"format": mf.FORMAT, "files": [{"path": path, "size": 1, "sha256": "a" * 64}]})
    with pytest.raises(mf.ManifestError, match=message) as caught:
        mf.decode(data, mf.digest(data))
    assert repr(path)[:50] in _one_line(caught)  # the name is quoted, escapes and all


def test_a_file_that_is_also_a_directory_is_refused():
    files = [{"path": p, "size": 1, "sha256": "a" * 64} for p in ("a", "a/b/c")]
    data = _signed({"format": mf.FORMAT, "files": files})
    with pytest.raises(mf.ManifestError, match=r"'a' is listed as a file and is the directory of 'a/b/c'"):
        mf.decode(data, mf.digest(data))


def test_deeply_nested_json_is_one_line():
    data = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(mf.ManifestError, match="nested too deeply") as caught:
        mf.decode(data, mf.digest(data))
    _one_line(caught)


def test_a_huge_number_is_one_line():
    data = b'{"format":"' + mf.FORMAT.encode() + b'","files":[{"path":"a","size":' + b"9" * 5000 + b'}]}'
    with pytest.raises(mf.ManifestError, match="is not JSON") as caught:
        mf.decode(data, mf.digest(data))
    _one_line(caught)


def test_too_many_entries_are_refused_naming_the_bound():
    files = [{"path": f"f{i}", "size": 0, "sha256": "a" * 64} for i in range(mf.MAX_ENTRIES + 1)]
    data = _signed({"format": mf.FORMAT, "files": files})
    with pytest.raises(mf.ManifestError, match=f"lists {mf.MAX_ENTRIES + 1} files, over the bound "
                                                f"of {mf.MAX_ENTRIES}"):
        mf.decode(data, mf.digest(data))


def test_an_oversized_manifest_is_refused_before_it_is_hashed_or_parsed():
    data = b" " * (mf.MAX_MANIFEST_BYTES + 1)
    with pytest.raises(mf.ManifestError, match=f"over {mf.MAX_MANIFEST_BYTES} bytes"):
        mf.decode(data, mf.digest(data))


@pytest.mark.parametrize("name, message", [
    ("bad\nname", "holds a control character"),
    ("/".join(["d" * 200] * 6), "is longer than 1024 bytes"),
])
def test_the_publisher_refuses_what_the_fetch_refuses(tmp_path, name, message):
    """One rule set: a model the fetch would refuse never publishes (exit 0, then every pod
    failing), and the refusal is one line."""
    m = _model(tmp_path / "m")
    (m / name).parent.mkdir(parents=True, exist_ok=True)
    (m / name).write_bytes(b"x")
    with pytest.raises(mf.ManifestError, match=message) as caught:
        mf.build(m)
    assert "the fetch refuses it" in _one_line(caught)


def test_the_publisher_refuses_a_name_that_is_not_utf8(tmp_path):
    m = _model(tmp_path / "m")
    (m / "variables").joinpath(os.fsdecode(b"\xff.bin")).write_bytes(b"x")
    with pytest.raises(mf.ManifestError, match="is not valid UTF-8"):
        mf.build(m)


def test_the_publisher_refuses_too_many_files_and_an_oversized_manifest(tmp_path, monkeypatch):
    m = _model(tmp_path / "m")
    monkeypatch.setattr(mf, "MAX_ENTRIES", 2)
    with pytest.raises(mf.ManifestError, match="holds more than 2 files"):
        mf.build(m)
    monkeypatch.setattr(mf, "MAX_ENTRIES", 10)
    monkeypatch.setattr(mf, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(mf.ManifestError, match=r"manifest.json would be \d+ bytes, over the fetch's "
                                               r"bound of 100"):
        mf.encode(mf.build(m))


def test_the_publisher_command_refuses_in_one_line_with_exit_1(tmp_path, capsys):
    from scoring_tools import publish_model
    m = _model(tmp_path / "m")
    (m / "a\rb").write_bytes(b"x")
    code = publish_model.main([str(m), "--account-url", "https://a.blob.core.windows.net",
                               "--name", "demo"])
    assert code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("publish failed: ") and "holds a control character" in line


def test_digest_is_checked_before_parsing():
    with pytest.raises(mf.ManifestError, match="the published model is not the one this deployment names"):
        mf.decode(b"not json at all", "0" * 64)


def test_the_fetch_reads_exactly_the_variables_it_lists():
    import re
    from pathlib import Path

    from scoring_app import contract
    from scoring_app.model_store import fetch
    source = Path(fetch.__file__).read_text()
    read = set(re.findall(r'(?:_required|_int_env|_bool_env|os\.environ\.get)\(Var\.([A-Z_]+)\b', source))
    assert {getattr(contract.Var, name) for name in read} == set(contract.FETCH_VARIABLES)
