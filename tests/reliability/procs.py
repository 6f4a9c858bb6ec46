"""What the tests read from the process tree of a gunicorn server (psutil):
which workers are alive and how much memory they hold."""

from __future__ import annotations

import psutil

MIB = 1024 * 1024


def workers(master_pid: int) -> dict[int, psutil.Process]:
    """gunicorn's workers are the master's only children."""
    return {p.pid: p for p in psutil.Process(master_pid).children()}


def rss(pids) -> dict[int, int]:
    return {pid: psutil.Process(pid).memory_info().rss for pid in pids}


def secrets_in(text: str, keys) -> list[str]:
    """The keys (or their first 12 characters) that appear in ``text``."""
    return [k for k in keys if k in text or k[:12] in text]
