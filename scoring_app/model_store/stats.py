"""The figures the model fetch leaves beside the model, read back by the server.

The init container (``fetch.py``) writes ``STATS_NAME`` next to the model's
directory; the service reports its time and size as metrics, and the capture
records its digest. A model baked into the image has no such file: zeros and
an empty digest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATS_NAME = "fetch-stats.json"


@dataclass(frozen=True)
class FetchStats:
    seconds: float = 0.0
    bytes: int = 0
    digest: str = ""  # the manifest's sha256 the fetch verified


def read_stats(model_dir: str | os.PathLike[str]) -> FetchStats:
    """What the fetch wrote next to ``model_dir``; what is missing or unreadable reads as
    not fetched."""
    try:
        doc: Any = json.loads((Path(model_dir).parent / STATS_NAME).read_text())
    except (OSError, ValueError):
        return FetchStats()
    try:
        seconds, size = float(doc["seconds"]), int(doc["bytes"])
    except (KeyError, TypeError, ValueError):
        seconds, size = 0.0, 0
    try:
        digest = str(doc["digest"])
    except (KeyError, TypeError):
        digest = ""
    return FetchStats(seconds, size, digest)
