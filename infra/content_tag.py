"""An image tag computed from what goes into the image, at plan time.

Same sources + same model = same tag, so `pulumi preview` shows an image
change exactly when a file the build sends changed, and never because of a
clock, a commit, or a file the build does not send. Each root is a build
context; the files hashed are the ones the builder receives from it: every
file under it that its `.dockerignore` does not exclude (Docker's own pattern
rules, from docker-py's `exclude_paths`; the Dockerfile is always sent).
"""
import hashlib
from pathlib import Path

from docker.utils.build import exclude_paths


def dockerignore_patterns(root: Path) -> list[str]:
    """The patterns of ``root/.dockerignore``, as Docker reads them (blank
    lines and ``#`` comments dropped)."""
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def context_files(root: Path) -> list[str]:
    """The files a build with context ``root`` sends, relative, in POSIX form, sorted."""
    sent = exclude_paths(str(root), dockerignore_patterns(root))
    return sorted(Path(rel).as_posix() for rel in sent if (root / rel).is_file())


def content_tag(*roots: Path, length: int = 16) -> str:
    """Hex digest over every sent file's relative path and bytes under each root, in order."""
    digest = hashlib.sha256()
    for index, root in enumerate(roots):
        for rel in context_files(root):
            digest.update(f"{index}/{rel}".encode() + b"\0")
            digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()[:length]
