"""Where the service leans on a library's undocumented behaviour, one adapter
each, and a test here that fails when the installed library changes under it.

- gunicorn: the master's SIGTERM handler (scoring_app/server/drain.py);
- gevent: pywsgi's ``_handle_client_error`` hook, and its ``_write_with_headers``
  sending through ``_sendall`` (scoring_app/server/worker.py);
- TensorFlow: ``ConcreteFunction._call_flat`` (scoring_app/model/savedmodel.py;
  guarded at warm-up, and tests/app/test_savedmodel.py checks it is adopted);
- Flask and prometheus-client: none any more (``http.jsonio`` writes what
  ``jsonify`` wrote; ``metrics.DOCS`` uses the collectors' public
  ``describe()``); the tests below hold them to what they replaced.
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
    for name in ("_handle_client_error", "handle", "start_response", "log_request", "_write_with_headers",
                 "_sendall"):
        assert callable(getattr(pywsgi.WSGIHandler, name, None)), name
    assert worker._Handler._handle_client_error is not pywsgi.WSGIHandler._handle_client_error


def test_the_json_answers_are_what_jsonify_wrote():
    app = Flask(__name__)
    with app.app_context():
        for document in [{"a": 1}, [1, 2], {"b": [1.5]}, None, {"s": "é", "n": -3}]:
            written = jsonio.response_body(document)
            assert written == orjson.dumps(document) + b"\n"
            assert orjson.loads(written) == orjson.loads(app.json.response(document).get_data())


def test_metric_docs_come_from_the_public_describe():
    assert metrics.DOCS["scoring_requests"] == "HTTP requests by route template, method and status."
    assert set(metrics.DOCS) == {family.name for m in metrics.FAMILIES for family in m.describe()}
    assert len(metrics.DOCS) == len(metrics.FAMILIES)


class _Socket:
    def __init__(self):
        self.sent = []

    def sendall(self, data):
        self.sent.append(bytes(data))


@pytest.mark.parametrize("headers, body", [
    ([("Content-Type", "application/json"), ("Content-Length", "11")], b'{"ok":true}'),
    ([("Content-Type", "text/plain")], b"chunked"),  # no length: pywsgi's chunked framing
])
def test_an_answers_head_and_body_go_out_in_one_send(headers, body):
    # worker._Handler gathers what pywsgi's _write_with_headers sends through
    # _sendall (the head, then the body) into one send.
    handler = object.__new__(worker._Handler)
    handler.__dict__.update(
        socket=_Socket(), code=None, status=None, headers_sent=False, response_length=0,
        response_use_chunked=False, provided_date=None, provided_content_length=None,
        request_version="HTTP/1.1", close_connection=False, result=None, environ={})
    handler.worker = type("W", (), {"alive": True})()
    pywsgi.WSGIHandler.start_response(handler, "200 OK", headers)
    handler.write(body)
    (sent,) = handler.socket.sent
    head, _, rest = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nDate: " in head
    assert rest.endswith(body + (b"\r\n" if b"chunked" in head else b""))
    assert handler.response_length == len(sent)
    assert "_sendall" not in vars(handler)  # the class's own is back for later writes
