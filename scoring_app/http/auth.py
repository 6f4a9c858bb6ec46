"""Bearer keys read from files, re-read when they change.

A Kubernetes Secret volume holds ``primary`` and ``secondary`` as symlinks
through ``..data``, which the kubelet swaps atomically on rotation. ``os.stat``
follows the links, so comparing (inode, mtime, size) is enough to notice a
rotation; the files are read only when that changes. They are looked at again
at most once every ``RECHECK_S`` (1 s), not on every request: two ``stat``
calls were a noticeable share of a quiet request's own Python path
(docs/performance.md), and the kubelet takes up to a minute to swap a rotated Secret in
anyway. A directory that vanishes or holds only empty files means no key is
valid: fail closed, within ``RECHECK_S``.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from pathlib import Path
from typing import Callable

from ..contract import KEY_FILES
from ..errors import Unauthorized

RECHECK_S = 1.0  # how long a look at the key files holds


class KeyStore:
    def __init__(self, directory: str, recheck_s: float = RECHECK_S,
                 clock: Callable[[], float] = time.monotonic):
        self._paths = [Path(directory) / name for name in KEY_FILES]
        self._lock = threading.Lock()
        self._stamp: tuple = ()
        self._keys: tuple[bytes, ...] = ()
        self._recheck_s, self._clock = recheck_s, clock
        self._next_look = float("-inf")

    def _current_stamp(self) -> tuple:
        stamp: list[tuple[int, int, int] | None] = []
        for path in self._paths:
            try:
                st = os.stat(path)
                stamp.append((st.st_ino, st.st_mtime_ns, st.st_size))
            except OSError:
                stamp.append(None)
        return tuple(stamp)

    def keys(self) -> tuple[bytes, ...]:
        """The valid keys (the files looked at within ``recheck_s``; re-read only
        if one changed)."""
        now = self._clock()
        if now < self._next_look:
            return self._keys
        stamp = self._current_stamp()
        if stamp != self._stamp:
            with self._lock:
                keys = []
                for path in self._paths:
                    try:
                        key = path.read_bytes().strip()
                    except OSError:
                        continue
                    if key:
                        keys.append(key)
                self._keys, self._stamp = tuple(keys), stamp
        self._next_look = now + self._recheck_s
        return self._keys

    def check(self, authorization: str | None) -> None:
        """Raise Unauthorized unless the header carries a valid key."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("send the key as 'Authorization: Bearer <key>'")
        token_bytes = token.strip().encode()
        # Compare against every key, always, so timing tells nothing about which.
        matched = False
        for key in self.keys():
            matched |= hmac.compare_digest(token_bytes, key)
        if not matched:
            raise Unauthorized("the key is not valid")
