"""Servers for the reliability tests, built on tests/app's machinery.

``slow_server``: one gunicorn worker serving the demo model through
``slow_wsgi`` (every model call sleeps MODEL_DELAY_S), with a small batch and
queue, so its capacity is small, known and the same on any machine."""

from __future__ import annotations

import sys

import pytest

from tests.app.conftest import Server, dockerfile_cmd

MODEL_DELAY_S = 0.1
# One model call at a time (SCORING_MODEL_CALLS=auto would give this CPU two), so
# the capacity and queue the tests count on are these; the default's two calls beside
# a hung one: test_overload_and_faults.py, slow_server_default.
SLOW = {"SCORING_WORKERS": "1", "SCORING_THREADS": "16", "SCORING_MAX_BATCH_SIZE": "4",
        "SCORING_MODEL_CALLS": "1",
        "SCORING_BATCH_TIMEOUT_MS": "5", "SCORING_MAX_QUEUE": "8",
        "SCORING_REQUEST_TIMEOUT_MS": "3000", "SCORING_DRAIN_SECONDS": "1",
        "SCORING_GRACEFUL_TIMEOUT_S": "20", "RELIABILITY_MODEL_DELAY_S": str(MODEL_DELAY_S)}
KEY = "reliability-primary-key-0123456789"


def slow_argv(port: int) -> list[str]:
    """The Dockerfile's command, with the slowed app named instead of scoring_app.wsgi."""
    return [sys.executable, *dockerfile_cmd()[1:], "tests.reliability.slow_wsgi:app"]


def _slow_server(encoded_model_dir, keys, tmp, **env: str) -> Server:
    (keys / "primary").write_text(KEY)
    return Server({**SLOW, "SCORING_MODEL_DIR": str(encoded_model_dir),
                   "SCORING_API_KEYS_DIR": str(keys), "TMPDIR": str(tmp), **env}, argv=slow_argv)


@pytest.fixture(scope="module")
def slow_server(encoded_model_dir, tmp_path_factory):
    srv = _slow_server(encoded_model_dir, tmp_path_factory.mktemp("slow-keys"),
                       tmp_path_factory.mktemp("slow"))
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture()
def slow_server_default(encoded_model_dir, tmp_path):
    """A slow server at SCORING_MODEL_CALLS's default (auto: two calls on this CPU)."""
    (tmp_path / "keys").mkdir()
    srv = _slow_server(encoded_model_dir, tmp_path / "keys", tmp_path, SCORING_MODEL_CALLS="auto")
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


@pytest.fixture()
def slow_server_to_stop(encoded_model_dir, tmp_path):
    """A slow server of its own, for a test that stops it (so none has to run last)."""
    (tmp_path / "keys").mkdir()
    srv = _slow_server(encoded_model_dir, tmp_path / "keys", tmp_path)
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()
