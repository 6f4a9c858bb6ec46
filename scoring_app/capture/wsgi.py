"""The request id and the capture hand-off, as WSGI middleware around the whole app.

Installed only when capture is on (``Var.CAPTURE_URI``), outermost, so the latency
it records is the app's. For a scoring request (``POST /score``, ``POST /v2/.../infer``):
- the request id is the client's (or the edge's) ``x-request-id`` when it is a short
  printable token, else a new one; it is returned as ``x-request-id``;
- sampling is decided before the app runs: from the request id's CRC-32 when the id was
  sent (so a live and a shadow deployment, which see the same id from the edge, capture
  the same requests), else at random. A request not sampled costs a header and this;
- a sampled request gets ``environ[SLOT]``, a dict the protocol handler fills with
  references (its images, its predictions or score rows: ``note``), and after the app
  has rendered its answer the entry is offered to the buffer (``sink.Capture.offer``,
  which never blocks or raises).
"""

from __future__ import annotations

import os
import random
import re
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from .records import Entry

SLOT = "scoring.capture"
HEADER = "x-request-id"
_ENVIRON_HEADER = "HTTP_X_REQUEST_ID"
_ID = re.compile(r"[!-~]{1,128}")  # visible ASCII, as Envoy's UUIDs and most tracers' ids
_V2_INFER = re.compile(r"/v2/models/[^/]+(/versions/[^/]+)?/infer")


def note(environ: dict, **refs: Any) -> None:
    """For a protocol handler: hand the capture references to what it read and answered
    (nothing happens unless the request was sampled)."""
    slot = environ.get(SLOT)
    if slot is not None:
        slot.update(refs)


def protocol_of(path: str) -> str | None:
    if path == "/score":
        return "score"
    if path.startswith("/v2/models/") and _V2_INFER.fullmatch(path):
        return "v2"
    return None


class CaptureMiddleware:
    def __init__(self, app: Callable[..., Iterable[bytes]], capture: Any, rate: float,
                 rng: Callable[[], float] = random.random):
        self.app, self.capture, self.rate, self.rng = app, capture, rate, rng
        self._threshold = int(rate * 0x100000000)  # crc32 < threshold: sampled

    def sampled(self, request_id: str, sent: bool) -> bool:
        if sent:
            return zlib.crc32(request_id.encode()) < self._threshold
        return self.rng() < self.rate

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        protocol = protocol_of(environ.get("PATH_INFO", "")) \
            if environ.get("REQUEST_METHOD") == "POST" else None
        if protocol is None:
            return self.app(environ, start_response)
        started = time.perf_counter()
        sent = environ.get(_ENVIRON_HEADER, "")
        request_id = sent if _ID.fullmatch(sent) else os.urandom(16).hex()  # 128 random bits
        header = (HEADER, request_id)
        status = []

        def start(line, headers, exc_info=None):
            status.append(line)
            return start_response(line, [*headers, header], exc_info)

        if not self.sampled(request_id, request_id is sent):
            return self.app(environ, start)
        slot = environ[SLOT] = {}
        body = self.app(environ, start)
        self.capture.offer(Entry(time.time(), request_id, protocol, environ["PATH_INFO"],
                                 int(status[0][:3]) if status else 0,
                                 time.perf_counter() - started, slot))
        return body
