"""server/allocator: with glibc's thresholds set, request-sized blocks (megabytes, a few
in flight) are served from pages the process already has; at glibc's defaults each
round faults them in again. Each case in a fresh interpreter: the settings are the
process's own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.app.conftest import ROOT

ROUND = """
import resource
from scoring_app.server import allocator
assert allocator.tune() if {tuned} else True
def rounds(n):
    for _ in range(n):
        live = [b"\\x01" * (4 << 20) for _ in range(4)]  # four 4 MB bodies in flight, touched
        del live
rounds(3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(20)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_round(tuned: bool) -> float:
    out = subprocess.run([sys.executable, "-c", ROUND.format(tuned=tuned)], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return float(out)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux only")
def test_tuned_the_heap_keeps_request_sized_blocks_and_at_the_defaults_it_does_not():
    pages = 4 * (4 << 20) // 4096
    assert _faults_per_round(tuned=False) > pages / 2  # what the setting is for
    assert _faults_per_round(tuned=True) < pages / 50

