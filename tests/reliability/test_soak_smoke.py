"""bench/soak.py (not part of the suite: 10 minutes by default) runs for a few
seconds against the main server, so it cannot rot unnoticed."""

from __future__ import annotations

import subprocess
import sys

from tests.app.conftest import ROOT


def test_soak_runs_and_reports_flat_memory(server, secret_dir):
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--duration", "4", "--sample", "1",
         "--concurrency", "2", "--url", server.url, "--key-file", str(secret_dir.path / "primary"),
         "--pid", str(server.proc.pid)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "soak: PASS"
    assert sum(line.split()[0].isdigit() for line in lines) >= 4  # RSS samples over time
    assert "0 failed" in done.stdout and "workers restarted: False" in done.stdout


def test_soak_counts_every_ready_worker_from_the_masters_metrics(server):
    """The soak starts its load only once all workers are warm (a worker still warming
    answers 503): the main server runs two."""
    from bench.soak import ready_workers

    assert ready_workers(f"http://127.0.0.1:{server.metrics_port}/metrics") == 2
