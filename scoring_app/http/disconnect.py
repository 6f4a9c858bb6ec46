"""Whether a request's client is still there: a cheap look at its connection.

Under gunicorn's gevent worker each request's environ carries its socket
(``gunicorn.sock``, gunicorn's PyWSGIHandler.get_environ). Once the body is
read, a connection with nothing to read is open and waiting; one that reads
as end-of-file (the client closed it: its own timeout, a closed tab, a proxy
giving up) or is reset has nobody left to read the answer. The look is one
non-blocking ``recv(MSG_PEEK)`` on the raw socket: it consumes nothing, and
never waits (gevent's socket would park the greenlet instead, so the raw
socket gevent wraps, its ``_sock``, is asked directly).

A client that half-closes (shuts down its sending side and still waits for
the answer) reads as gone too; HTTP clients rarely do, and nginx's own check
for a client that has gone (a one-byte ``recv`` with ``MSG_PEEK``, in
``ngx_http_upstream_check_broken_connection``) makes the same call.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


def probe(environ: dict[str, Any]) -> Callable[[], bool] | None:
    """A check that says True once the request's client has gone, or None when the
    server gives no socket (a test client, another server): then nothing is dropped."""
    sock = environ.get("gunicorn.sock")
    raw = getattr(sock, "_sock", sock)
    if raw is None or not hasattr(raw, "recv"):
        return None

    def gone() -> bool:
        try:
            return raw.recv(1, _PEEK) == b""
        except BlockingIOError:  # open, nothing sent: waiting for its answer
            return False
        except InterruptedError:
            return False
        except OSError:  # reset, or closed on this side
            return True
    return gone
