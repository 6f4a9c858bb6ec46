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
    ({"format": mf.FORMAT, "files": [{"path": "a", "size": -1, "sha256": "a" * 64}]}, "a has no valid size"),
    ({"format": mf.FORMAT, "files": [{"path": "a", "size": True, "sha256": "a" * 64}]}, "a has no valid size"),
    ({"format": mf.FORMAT, "files": [{"path": "a", "size": 1, "sha256": "A" * 64}]}, "a sha256 must be"),
    ({"format": mf.FORMAT, "files": [{"path": "a", "size": 1, "sha256": "a" * 64}] * 2}, "a is listed twice"),
])
def test_malformed_manifests_are_named(doc, message):
    data = json.dumps(doc).encode()
    with pytest.raises(mf.ManifestError, match=message):
        mf.decode(data, mf.digest(data))


def test_digest_is_checked_before_parsing():
    with pytest.raises(mf.ManifestError, match="the published model is not the one this deployment names"):
        mf.decode(b"not json at all", "0" * 64)


def test_the_fetch_reads_exactly_the_variables_it_lists():
    import re
    from pathlib import Path

    from scoring_app.model_store import fetch
    source = Path(fetch.__file__).read_text()
    read = set(re.findall(r'(?:_required|_int_env|_bool_env|os\.environ\.get)\("(SCORING_[A-Z_]+)"', source))
    assert read == set(fetch.VARIABLES)
