"""The one request-body reader, for every protocol.

Bounded: 413 as soon as the body is known to be larger than the limit (from
Content-Length, before reading anything; or once the bytes read pass it, for
a chunked body), 408 when it stops arriving (each read times out after
gunicorn's keepalive: scoring_app/server/worker.py). The body is never read
whole into memory before its size is checked.
"""

from __future__ import annotations

from typing import IO

from ..errors import PayloadTooLarge, RequestTimeout

_CHUNK = 64 * 1024


def read(stream: IO[bytes], content_length: int | None, limit: int) -> bytes:
    """At most ``limit`` bytes of ``stream`` (werkzeug's ``Request.stream``,
    which stops at Content-Length)."""
    if content_length is not None and content_length > limit:
        raise PayloadTooLarge(f"the body is {content_length} bytes; "
                              f"the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        # A declared length is asked for whole: one read fills one buffer as the bytes
        # arrive (each socket read still times out on its own), so a phone photo costs
        # no chunk list and no join copy. Without one, bounded chunks.
        want = content_length - size if content_length else min(_CHUNK, limit + 1 - size)
        try:
            chunk = stream.read(want)
        except OSError:  # timed out, or the client went away
            raise RequestTimeout("the request body stopped arriving before it was complete") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over the limit of {limit} bytes")
