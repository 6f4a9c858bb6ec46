"""Where the service leans on a library's undocumented behaviour, one adapter
each, and a test here that fails when the installed library changes under it.

- gunicorn: the master's SIGTERM handler (scoring_app/server/drain.py);
- gevent: pywsgi's ``_handle_client_error`` hook (scoring_app/server/worker.py);
- TensorFlow: ``ConcreteFunction._call_flat`` (scoring_app/model/savedmodel.py;
  guarded at warm-up, and tests/app/test_savedmodel.py checks it is adopted);
- Flask and prometheus-client: none any more (``http.jsonio.Provider`` uses
  only ``JSONProvider``'s public methods; ``metrics.DOCS`` the collectors'
  public ``describe()``); the tests below hold them to what they replaced.
"""

from __future__ import annotations

import inspect
import signal

import orjson
import pytest
from flask import Flask
from gevent import pywsgi
from gunicorn.arbiter import Arbiter

from scoring_app import metrics
from scoring_app.http import jsonio
from scoring_app.server import drain, worker


def test_gunicorns_master_loop_is_what_the_drain_relies_on():
    source = inspect.getsource(Arbiter.run)
    missing = [need for need in drain.ARBITER_NEEDS if need not in source]
    assert not missing, f"gunicorn's Arbiter.run changed: {missing} (scoring_app/server/drain.py)"
    assert Arbiter.SIG_NAMES.get(signal.SIGTERM) == "term"  # dispatched to handle_term


class _Log:
    def __init__(self):
        self.lines = []

    def info(self, *args):
        self.lines.append(args)


class _Master:
    def __init__(self):
        self.log = _Log()


def test_the_first_sigterm_drains_without_blocking_and_the_second_stops():
    master, told, kills = _Master(), [], []
    handler = drain.install(master, 30, lambda: told.append("drain"))
    assert master.handle_term is handler
    handler._kill = lambda pid, sig: kills.append(sig)
    handler()  # returns at once: the master's loop keeps reaping and replacing workers
    assert told == ["drain"] and handler.timer.is_alive()
    handler.timer.cancel()
    with pytest.raises(StopIteration):  # gunicorn's graceful halt
        handler()
    assert told == ["drain"]  # the workers are told once


def test_the_drain_timer_sends_the_second_sigterm():
    master, kills = _Master(), []
    handler = drain.Drain(master, 0, lambda: None, kill=lambda pid, sig: kills.append(sig))
    handler()
    handler.timer.join(5)
    assert kills == [signal.SIGTERM]


def test_gevents_handler_still_has_the_hook_the_worker_overrides():
    for name in ("_handle_client_error", "handle", "start_response", "log_request"):
        assert callable(getattr(pywsgi.WSGIHandler, name, None)), name
    assert worker._Handler._handle_client_error is not pywsgi.WSGIHandler._handle_client_error


def test_the_json_provider_writes_what_jsonify_promises_with_public_methods_only():
    app = Flask(__name__)
    app.json = jsonio.Provider(app)
    overridden = {name for name in vars(jsonio.Provider) if not name.startswith("__")}
    assert overridden == {"dumps", "loads"}
    with app.app_context():
        for args, kwargs, expected in [(({"a": 1},), {}, {"a": 1}), ((1, 2), {}, [1, 2]),
                                       ((), {"b": [1.5]}, {"b": [1.5]}), ((), {}, None)]:
            response = app.json.response(*args, **kwargs)
            assert response.mimetype == "application/json"
            assert response.get_data() == orjson.dumps(expected) + b"\n"


def test_metric_docs_come_from_the_public_describe():
    assert metrics.DOCS["scoring_requests"] == "HTTP requests by route template, method and status."
    assert set(metrics.DOCS) == {family.name for m in metrics.FAMILIES for family in m.describe()}
    assert len(metrics.DOCS) == len(metrics.FAMILIES)
