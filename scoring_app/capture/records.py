"""One captured request: what the request path hands over (``Entry``), and its JSON line.

An ``Entry`` holds references only (the request's images, the answer's predictions or
score rows): its hashing and encoding happen in the capture loop, off the request path.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

#: Bytes an entry is charged beyond its images (the record's own fields), for the buffer bound.
OVERHEAD_BYTES = 1024
#: Predictions kept per input for a v2 answer (its scores rows are ranked, as /score ranks).
V2_TOP_K = 5
_MAGIC = ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF87a", "gif"),
          (b"GIF89a", "gif"), (b"BM", "bmp"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))


@dataclass(slots=True)
class Entry:
    """A sampled request as the request path saw it; ``slot`` is what the protocol
    handler filled in (``images``; ``predictions`` for /score, ``rows`` for v2)."""
    time: float
    request_id: str
    protocol: str
    route: str
    status: int
    latency_s: float
    slot: dict = field(default_factory=dict)

    @property
    def cost(self) -> int:
        """Bytes this entry keeps alive while buffered."""
        return OVERHEAD_BYTES + sum(len(image) for image in self.slot.get("images") or ())


def image_format(data: bytes) -> str:
    """The container format from the first bytes (``unknown`` otherwise)."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def _inputs(images, keep_images: bool) -> list[dict[str, Any]]:
    inputs = []
    for image in images or ():
        item = {"sha256": hashlib.sha256(image).hexdigest(), "bytes": len(image),
                "format": image_format(image)}
        if keep_images:
            item["image_b64"] = base64.b64encode(image).decode()
        inputs.append(item)
    return inputs


def encode(entry: Entry, deployment: str, model: dict[str, str], keep_images: bool,
           rank: Callable[[Any, int], list]) -> bytes:
    """The entry's JSON line. ``rank(row, k)``: the model's top-k classes of a scores row."""
    slot = entry.slot
    predictions = slot.get("predictions")
    if predictions is None and slot.get("rows") is not None:
        predictions = [rank(row, V2_TOP_K) for row in slot["rows"]]
    doc = {
        "time": dt.datetime.fromtimestamp(entry.time, dt.timezone.utc).isoformat(timespec="milliseconds"),
        "deployment": deployment, "model": model, "request_id": entry.request_id,
        "protocol": entry.protocol, "route": entry.route, "status": entry.status,
        "latency_ms": round(entry.latency_s * 1000, 3),
        "inputs": _inputs(slot.get("images"), keep_images),
        "predictions": predictions,
    }
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def blob_name(deployment: str, when: float, unique: str) -> str:
    """``<deployment>/<yyyy>/<mm>/<dd>/<hh>/<unique>.jsonl``, the hour in UTC."""
    t = dt.datetime.fromtimestamp(when, dt.timezone.utc)
    return f"{deployment}/{t:%Y/%m/%d/%H}/{unique}.jsonl"


def hour_of(when: float) -> int:
    return int(when // 3600)
