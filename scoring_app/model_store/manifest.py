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

# The bounds a manifest is held to, by the publisher and by the fetch alike: what one publishes
# the other accepts. The fetch reads at most MAX_MANIFEST_BYTES of a manifest before its digest
# is checked (a planted manifest cannot grow the init container's memory past that), and
# MAX_ENTRIES files (each one a request and a file in the pod's volume).
MAX_MANIFEST_BYTES = 4 << 20
MAX_ENTRIES = 10_000
#: Linux's NAME_MAX (ext4, xfs, tmpfs) for one component; the whole relative path stays well
#: under PATH_MAX (4096) with the volume's own path in front of it.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
#: C0, DEL and C1 controls, and the Unicode line and paragraph separators: a name holding one
#: could split or forge a log line, or a terminal's output.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


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
            problem = path_problem(rel)
            if problem:  # the fetch would refuse it: every pod would fail to start
                raise ManifestError(f"{quote(str(full))}: the name {problem}; the fetch refuses it")
            entries.append(Entry(rel, full.stat().st_size, file_sha256(full)))
            if len(entries) > MAX_ENTRIES:
                raise ManifestError(f"model directory {quote(str(root))} holds more than "
                                    f"{MAX_ENTRIES} files (the fetch's bound)")
    if not entries:
        raise ManifestError(f"model directory {quote(str(root))} holds no files")
    return tuple(sorted(entries, key=lambda e: e.path))


def encode(entries: tuple[Entry, ...]) -> bytes:
    """The canonical bytes: the same entries always give the same bytes, hence digest.
    Refuses a manifest the fetch would refuse for its size."""
    doc = {"format": FORMAT,
           "files": [{"path": e.path, "size": e.size, "sha256": e.sha256} for e in entries]}
    data = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{MANIFEST_NAME} would be {len(data)} bytes, over the fetch's bound "
                            f"of {MAX_MANIFEST_BYTES}: fewer or shorter file names")
    return data


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(value: object, what: str = "digest") -> str:
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ManifestError(f"{what} must be 64 lowercase hex characters (a sha256), got {value!r}")
    return value


def quote(text: object, limit: int = 200) -> str:
    """An untrusted string for a message: repr() escapes every control character and line
    separator, so a refusal stays one line; long ones are cut, and say so."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[:limit]}...(cut)"


def has_control(text: str) -> bool:
    return bool(_CONTROL.search(text))


def path_problem(path: object) -> str | None:
    """What makes ``path`` unfit as a file's place under the model directory, or None. The
    one rule set: the publisher refuses what the fetch would refuse (``build``, ``decode``)."""
    if not isinstance(path, str) or not path:
        return "is not a non-empty string"
    if (PurePosixPath(path).is_absolute() or "\\" in path
            or any(part in ("", ".", "..") for part in path.split("/"))):
        return "is not a plain relative path"
    if _CONTROL.search(path):
        return "holds a control character"
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON allows it, no file system name does
        return "is not valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return f"is longer than {MAX_PATH_BYTES} bytes"
    if any(len(part) > MAX_NAME_BYTES for part in encoded.split(b"/")):
        return f"has a component longer than {MAX_NAME_BYTES} bytes"
    if path == MANIFEST_NAME:
        return "is reserved"
    return None


def _safe_path(path: object) -> str:
    problem = path_problem(path)
    if problem or not isinstance(path, str):
        raise ManifestError(f"manifest entry path {quote(path)} {problem}")
    return path


def check_layout(paths) -> None:
    """No path may be both a file and a directory of another (``a`` and ``a/b``): one of the
    two could not be written. ``paths`` are already each ``path_problem``-free."""
    files = set(paths)
    for path in files:
        parts = path.split("/")
        for end in range(1, len(parts)):
            parent = "/".join(parts[:end])
            if parent in files:
                raise ManifestError(f"{MANIFEST_NAME}: {quote(parent)} is listed as a file and "
                                    f"is the directory of {quote(path)}")


def decode(data: bytes, expected_digest: str) -> tuple[Entry, ...]:
    """The entries of a downloaded manifest, after its bytes are checked against the digest
    the Deployment names: nothing in it is read before that check."""
    check_digest(expected_digest, "expected model digest")
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{MANIFEST_NAME} is over {MAX_MANIFEST_BYTES} bytes, the bound on a manifest")
    actual = digest(data)
    if actual != expected_digest:
        raise ManifestError(
            f"{MANIFEST_NAME} has sha256 {actual}, but the deployment expects {expected_digest}: "
            "the published model is not the one this deployment names")
    doc = _parse(data)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), list):
        raise ManifestError(f"{MANIFEST_NAME} is not a {FORMAT} document")
    if len(doc["files"]) > MAX_ENTRIES:
        raise ManifestError(f"{MANIFEST_NAME} lists {len(doc['files'])} files, over the bound "
                            f"of {MAX_ENTRIES}")
    entries, seen = [], set()
    for item in doc["files"]:
        if not isinstance(item, dict):
            raise ManifestError(f"{MANIFEST_NAME}: entry {quote(item)} is not an object")
        path = _safe_path(item.get("path"))
        size = item.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ManifestError(f"{MANIFEST_NAME}: {quote(path)} has no valid size")
        sha = check_digest(item.get("sha256"), f"{MANIFEST_NAME}: {quote(path)} sha256")
        if path in seen:
            raise ManifestError(f"{MANIFEST_NAME}: {quote(path)} is listed twice")
        seen.add(path)
        entries.append(Entry(path, size, sha))
    if not entries:
        raise ManifestError(f"{MANIFEST_NAME} lists no files")
    check_layout(seen)
    return tuple(entries)


def _parse(data: bytes):
    """JSON, or one line: a document nested past the parser's recursion limit, or a number too
    long to convert, is refused like any other malformed manifest (never a traceback)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ManifestError(f"{MANIFEST_NAME} is nested too deeply to be a {FORMAT} document") from None
    except ValueError as exc:  # a digest match makes this the publisher's bug, but say so
        raise ManifestError(f"{MANIFEST_NAME} is not JSON: {quote(str(exc))}") from None


def prefix(model_name: str, model_digest: str) -> str:
    """The content-addressed prefix under which a model's files and manifest live."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", model_name):
        raise ManifestError(f"model name {model_name!r}: letters, digits, '.', '_', '-' only")
    return f"{model_name}/{check_digest(model_digest)}"
