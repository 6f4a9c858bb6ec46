"""An image tag computed from what goes into the image, at plan time.

Same sources + same model = same tag, so `pulumi preview` shows an image
change exactly when a file changed, and never because of a clock or a commit.
"""
import hashlib
from pathlib import Path

_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}


def _files(root: Path):
    for path in sorted(root.rglob("*")):
        if path.is_file() and not _IGNORED_PARTS.intersection(path.relative_to(root).parts):
            yield path


def content_tag(*roots: Path, length: int = 16) -> str:
    """Hex digest over every file's relative path and bytes under each root, in order."""
    digest = hashlib.sha256()
    for index, root in enumerate(roots):
        for path in _files(root):
            name = f"{index}/{path.relative_to(root).as_posix()}"
            digest.update(name.encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:length]
