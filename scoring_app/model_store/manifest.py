"""The manifest of a model directory, and the digest that names it.

A manifest lists every regular file under the directory with its size and sha256,
sorted by path, as canonical JSON (sorted keys, no spaces, UTF-8). Its own sha256
is the model's digest: the content-addressed prefix is ``<model name>/<digest>``,
and the stack writes the same digest into the Deployment, so the fetch can check
the manifest it downloads before it trusts a byte of it (a manifest and files
swapped together no longer match the spec).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MANIFEST_NAME = "manifest.json"
FORMAT = "scoring-model-manifest/1"
_CHUNK = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """A manifest that cannot be trusted or read; the message names what is wrong."""


@dataclass(frozen=True)
class Entry:
    path: str  # POSIX, relative, no '.' or '..' parts
    size: int
    sha256: str


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def build(model_dir: str | os.PathLike) -> tuple[Entry, ...]:
    """Every regular file under ``model_dir``, sorted by path. Symlinks and special files
    are refused: what is uploaded must be what was hashed."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ManifestError(f"model directory {root} does not exist or is not a directory")
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in list(dirnames) + filenames:
            full = Path(dirpath) / name
            if full.is_symlink():
                raise ManifestError(f"{full}: symbolic links are not published; copy the file")
        for name in filenames:
            full = Path(dirpath) / name
            if not full.is_file():
                raise ManifestError(f"{full}: not a regular file")
            rel = full.relative_to(root).as_posix()
            if rel == MANIFEST_NAME:
                raise ManifestError(f"{full}: {MANIFEST_NAME} is reserved for the manifest")
            entries.append(Entry(rel, full.stat().st_size, file_sha256(full)))
    if not entries:
        raise ManifestError(f"model directory {root} holds no files")
    return tuple(sorted(entries, key=lambda e: e.path))


def encode(entries: tuple[Entry, ...]) -> bytes:
    """The canonical bytes: the same entries always give the same bytes, hence digest."""
    doc = {"format": FORMAT,
           "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in entries]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(value: str, what: str = "digest") -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ManifestError(f"{what} must be 64 lowercase hex characters (a sha256), got {value!r}")
    return value


def _safe_path(path: object) -> str:
    if not isinstance(path, str) or not path:
        raise ManifestError(f"manifest entry path {path!r} is not a non-empty string")
    pure = PurePosixPath(path)
    if (pure.is_absolute() or "\\" in path or "\x00" in path
            or any(part in ("", ".", "..") for part in path.split("/"))):
        raise ManifestError(f"manifest entry path {path!r} is not a plain relative path")
    if path == MANIFEST_NAME:
        raise ManifestError(f"manifest entry path {path!r} is reserved")
    return path


def decode(data: bytes, expected_digest: str) -> tuple[Entry, ...]:
    """The entries of a downloaded manifest, after its bytes are checked against the digest
    the Deployment names: nothing in it is read before that check."""
    check_digest(expected_digest, "expected model digest")
    actual = digest(data)
    if actual != expected_digest:
        raise ManifestError(
            f"{MANIFEST_NAME} has sha256 {actual}, but the deployment expects {expected_digest}: "
            "the published model is not the one this deployment names")
    try:
        doc = json.loads(data)
    except ValueError as exc:  # a digest match makes this the publisher's bug, but say so
        raise ManifestError(f"{MANIFEST_NAME} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), list):
        raise ManifestError(f"{MANIFEST_NAME} is not a {FORMAT} document")
    entries, seen = [], set()
    for item in doc["files"]:
        if not isinstance(item, dict):
            raise ManifestError(f"{MANIFEST_NAME}: entry {item!r} is not an object")
        path = _safe_path(item.get("path"))
        size = item.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ManifestError(f"{MANIFEST_NAME}: {path} has no valid size")
        sha = check_digest(item.get("sha256"), f"{MANIFEST_NAME}: {path} sha256")
        if path in seen:
            raise ManifestError(f"{MANIFEST_NAME}: {path} is listed twice")
        seen.add(path)
        entries.append(Entry(path, size, sha))
    if not entries:
        raise ManifestError(f"{MANIFEST_NAME} lists no files")
    return tuple(entries)


def prefix(model_name: str, model_digest: str) -> str:
    """The content-addressed prefix under which a model's files and manifest live."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", model_name):
        raise ManifestError(f"model name {model_name!r}: letters, digits, '.', '_', '-' only")
    return f"{model_name}/{check_digest(model_digest)}"
