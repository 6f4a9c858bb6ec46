"""Blocking calls (a model call, an image decode) off gunicorn's gevent loop.

The container runs gunicorn's ``gevent`` worker: each connection is a
greenlet on one event loop, so a request costs no thread hand-offs (the
``gthread`` worker's poller -> request thread -> inference thread cost about
as much CPU as a small model's own call). A call that holds the loop's thread
for long would stall every connection, so it runs in a native thread instead
(TensorFlow and Pillow release the GIL while they work), and the greenlet
that asked waits without blocking the loop:

- ``call``: gevent's pool of native threads (``Var.THREADS``), for image
  decodes, which may run side by side;
- ``NativeThread.call``: one thread of its own, for the model. Every call runs
  on the same thread, one at a time, so TensorFlow's and oneDNN's per-thread
  state stays warm (a pool hands successive calls to whichever thread is free);
  with Var.MODEL_CALLS above 1, each call that may be out has its own.
  (A quiet server's lone request skips it for a short call: ``Batcher._solo``.)

Outside gevent (tests, a plain threaded server) both run the function where
it is: the caller is already a thread of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def on_gevent() -> bool:
    """Whether gevent has patched ``threading`` (gunicorn's gevent worker did)."""
    try:
        from gevent import monkey
    except ImportError:
        return False
    return monkey.is_module_patched("threading")


def configure(threads: int) -> None:
    """Size gevent's native thread pool (Var.THREADS); no-op outside gevent."""
    if on_gevent():
        import gevent

        gevent.get_hub().threadpool.maxsize = threads


def let_others_run() -> None:
    """On gevent, wait until the event loop has nothing else ready: every other
    greenlet that can run (a connection whose request has arrived) runs first.
    Elsewhere there is nothing to wait for."""
    if on_gevent():
        import gevent

        gevent.idle()


def call(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a native thread when on gevent, else here; returns its
    result or raises its exception (in the caller, with its traceback)."""
    if not on_gevent():
        return fn(*args)
    import gevent

    return _run_in(gevent.get_hub().threadpool, fn, args)


class NativeThread:
    """A native thread of its own (started on first use under gevent)."""

    def __init__(self) -> None:
        self._pool: Any = None  # gevent's ThreadPool, made on first use

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on this thread when on gevent, else here."""
        if not on_gevent():
            return fn(*args)
        if self._pool is None:
            from gevent.threadpool import ThreadPool

            self._pool = ThreadPool(1)
        return _run_in(self._pool, fn, args)


def _run_in(pool: Any, fn: Callable[..., T], args: tuple) -> T:
    ok, value = pool.apply(_capture, (fn, args))
    if not ok:
        raise value
    return value


def _capture(fn: Callable[..., Any], args: tuple) -> tuple[bool, Any]:
    # gevent's pool would print the traceback of every exception that escapes
    # (a bad image is an expected one): hand it to the caller instead.
    try:
        return True, fn(*args)
    except Exception as exc:  # re-raised by call()
        return False, exc
