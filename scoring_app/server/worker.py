"""The gunicorn worker: gevent's, with gevent's own HTTP server, and an idle timeout.

``GeventPyWSGIWorker`` is gunicorn's gevent worker (one greenlet per connection,
one event loop) with gevent's ``pywsgi`` parsing HTTP instead of gunicorn's
parser: less CPU per request and lower latency than gunicorn's own parser on
the same worker (the figures: docs/performance.md).

pywsgi has no keep-alive timeout of its own (gunicorn's parser drops a
connection that sends nothing for ``keepalive`` seconds): here every read and
write on a connection times out after gunicorn's ``keepalive`` seconds, so an
idle keep-alive connection, or a client that stalls mid-request, is closed
instead of holding a greenlet and a socket for good. The wait for the model is
not a socket operation: a slow batch never trips it.

With no access log (the default), no access record is built for each request.

Once the worker is stopping, every answer says ``Connection: close`` (as
gunicorn's own parser path does), so clients on kept-alive connections
reconnect, to a worker that is not stopping, instead of keeping this one busy
until the graceful timeout kills their requests.
"""

from __future__ import annotations

from gunicorn.workers.ggevent import GeventPyWSGIWorker, PyWSGIHandler

_TIMED_OUT = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
              b"Content-Length: 0\r\n\r\n")


class _Handler(PyWSGIHandler):
    worker = None  # the ScoringWorker serving this connection (set in a subclass by it)

    def handle(self):
        self.socket.settimeout(self.worker.cfg.keepalive)
        super().handle()

    def start_response(self, status, headers, exc_info=None):
        if not self.worker.alive and not any(name.lower() == "connection" for name, _ in headers):
            headers = [*headers, ("Connection", "close")]
        return super().start_response(status, headers, exc_info)

    def _write_with_headers(self, data):
        # pywsgi's _write_with_headers sends the head with one _sendall and the
        # body with another: here both are gathered and sent with one. (Its
        # only caller is write(), once per answer; tests/app/test_private_apis.py
        # holds pywsgi to that shape.)
        parts = []
        self._sendall = parts.append  # this instance's; the class's is untouched
        try:
            super()._write_with_headers(data)
        finally:
            del self._sendall
        super()._sendall(b"".join(parts))

    def log_request(self):
        # gunicorn's handler builds the access record (two datetimes, the request's
        # headers as a list) before its logger drops it: the access log is off
        # unless an operator turns it on (--access-logfile in GUNICORN_CMD_ARGS).
        # A request answered before its headers were complete (408) has no environ
        # or response headers, which gunicorn's record needs: it gets no line.
        if self.server.log.access_log_enabled and self.environ is not None:
            super().log_request()

    def _handle_client_error(self, ex):
        # Headers that stop half way: pywsgi would print a traceback for the
        # timeout, as for an unexpected error. A stalled client is expected.
        if isinstance(ex, TimeoutError):
            return "408", _TIMED_OUT
        return super()._handle_client_error(ex)


class ScoringWorker(GeventPyWSGIWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wsgi_handler = type("ScoringHandler", (_Handler,), {"worker": self})

    def handle_quit(self, sig, frame):
        """SIGINT/SIGQUIT (Ctrl-C reaches every process of the group; the master's
        quick stop sends SIGQUIT): end the loop. gevent's worker raises SystemExit in
        a greenlet instead, which gevent reports as a failure with a traceback; the
        master still SIGKILLs a worker that outlives its graceful timeout."""
        self.alive = False
        self.cfg.worker_int(self)
