"""glibc's allocator, set for request bodies of megabytes.

A phone photo's body (2-4 MB), its copy into the batch's string tensor and the
decoder's buffers are new every request. Left at its defaults, glibc serves
blocks that large with ``mmap`` and unmaps them on free, or, once its dynamic
threshold has risen, trims its heap's top whenever more than twice the last
such block lies free there (a few photos in flight are more than that), so
each request faults its pages in again: a fault and a zeroed page per 4 KiB.
The mmap threshold here keeps every block below it in the heap, and the trim
threshold lets a process keep that much free memory at its heap's top for the
next requests. The price: a worker's resident memory stays near its peak (up
to ``TRIM_THRESHOLD`` above what it uses) until it restarts.

Linux with glibc only (the container, ``make serve`` on Linux); elsewhere
(macOS, musl) nothing changes. Set in gunicorn's master before it forks, so
every worker inherits it.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
#: The most glibc takes on 64-bit (half its largest heap), above the default body limit.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 128 * 1024 * 1024


def tune() -> bool:
    """Set both thresholds in this process; True when glibc took them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to ask, or one without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
