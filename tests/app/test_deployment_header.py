"""SCORING_DEPLOYMENT_NAME: every answer names the deployment that served it (issue 16),
through the real app (every route of the dispatcher) with a stand-in model."""

from __future__ import annotations

import pytest

from scoring_app import settings
from scoring_app.app import create_app
from scoring_app.contract import DEPLOYMENT_HEADER as HEADER
from tests.app import media
from tests.app.test_inprocess import HeldModel

CALLS = [("POST", "/score", {"data": media.jpeg()}), ("GET", "/score", {}),
         ("GET", "/", {}), ("GET", "/healthz", {}), ("GET", "/readyz", {}),
         ("GET", "/v2/health/ready", {}), ("GET", "/no/such/route", {}),
         ("POST", "/score", {"data": b"<x/>", "content_type": "application/xml"})]


def app_with(tmp_path, **config):
    model = HeldModel()
    model.gate.set()  # never held: answers at once
    app = create_app({"model_dir": str(tmp_path), "auth": "disabled", **config}, model=model)
    return app


@pytest.fixture()
def named(tmp_path):
    app = app_with(tmp_path, deployment_name="green")
    yield app
    app.extensions["scoring"].batcher.stop()


def wait_ready(client):
    import time
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "stand-in model never became ready"
        time.sleep(0.02)


def test_every_answer_carries_the_deployment(named):
    client = named.test_client()
    wait_ready(client)
    statuses = []
    for method, path, kw in CALLS:
        response = client.open(path, method=method, **kw)
        statuses.append(response.status_code)
        assert response.headers.get_all(HEADER) == ["green"], (method, path)
    assert statuses == [200, 405, 200, 200, 200, 200, 404, 415]  # successes and errors alike


def test_no_name_no_header(tmp_path):
    app = app_with(tmp_path)
    try:
        client = app.test_client()
        wait_ready(client)
        for method, path, kw in CALLS:
            assert HEADER not in client.open(path, method=method, **kw).headers, path
    finally:
        app.extensions["scoring"].batcher.stop()


@pytest.mark.parametrize("bad", ["Green", "green-", "-green", "g" * 25, "blue green", "9blue"])
def test_a_bad_name_stops_the_process_naming_the_variable(bad):
    with pytest.raises(settings.SettingsError, match="SCORING_DEPLOYMENT_NAME"):
        settings.load({"SCORING_DEPLOYMENT_NAME": bad})


def test_good_names_parse():
    assert settings.load({"SCORING_DEPLOYMENT_NAME": "blue"}).deployment_name == "blue"
    assert settings.load({"SCORING_DEPLOYMENT_NAME": "v2-canary"}).deployment_name == "v2-canary"
    assert settings.load({}).deployment_name == ""
