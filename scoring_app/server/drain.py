"""The gunicorn master's SIGTERM: drain first, then gunicorn's graceful stop.

gunicorn's own SIGTERM handler closes the listener at once. Here the first
SIGTERM tells the workers to answer 503 on /readyz (``notify_workers``) and
leaves the master's loop running, so it still reaps and replaces workers
while the load balancer moves away; ``drain_s`` later a timer sends the
master a second SIGTERM, and that one (or one from the operator meanwhile)
is gunicorn's graceful stop.

A worker that exits during the drain is not replaced: the pod is leaving and
its readiness already says so, so a fresh worker would load TensorFlow and
the model only to be stopped. That also covers a stop sent to the whole
process group (Ctrl-C, ``kill -- -PGID``), where every worker gets SIGTERM
beside the master; once the last worker is gone the master stops at once.

This is the one place that touches gunicorn's arbiter, and it needs two
things of it that gunicorn does not document: its main loop dispatches a
signal to the *instance* attribute ``handle_<name>`` (so an instance's
``handle_term`` replaces the class's), and raising ``StopIteration`` from a
handler is its graceful halt. ``ARBITER_NEEDS`` lets a test check both
against the installed gunicorn (tests/app/test_private_apis.py).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

#: What this module relies on, as the source of gunicorn's ``Arbiter.run`` says it.
ARBITER_NEEDS = ('getattr(self, "handle_%s" % signame', "except (StopIteration, KeyboardInterrupt):")


class Drain:
    """``server.handle_term`` for a gunicorn master."""

    def __init__(self, server: Any, drain_s: float, notify_workers: Callable[[], None],
                 kill: Callable[[int, int], None] = os.kill):
        self.server, self.drain_s = server, drain_s
        self._notify_workers, self._kill = notify_workers, kill
        self.timer: threading.Timer | None = None

    def __call__(self) -> None:
        if self.timer is not None:  # the timer's SIGTERM, or the operator's second
            raise StopIteration
        self.server.log.info("SIGTERM: /readyz turns 503; still serving for %ss, then stopping",
                             self.drain_s)
        self._notify_workers()
        self.timer = threading.Timer(self.drain_s, self._kill, (os.getpid(), signal.SIGTERM))
        self.timer.daemon = True
        self.timer.start()

    def worker_exited(self) -> None:
        """gunicorn's ``child_exit``: while draining, shrink the target to the workers
        left, so the arbiter spawns none; with none left, stop now."""
        if self.timer is None:
            return
        self.server.num_workers = len(self.server.WORKERS)
        if not self.server.WORKERS:
            self._kill(os.getpid(), signal.SIGTERM)


def install(server: Any, drain_s: float, notify_workers: Callable[[], None]) -> Drain:
    """Replace ``server``'s SIGTERM handler with a ``Drain``."""
    server.handle_term = Drain(server, drain_s, notify_workers)
    return server.handle_term
