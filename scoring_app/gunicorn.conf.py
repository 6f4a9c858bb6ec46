"""gunicorn settings, read from the ``SCORING_*`` variables (scoring_app/settings.py).

Run as ``python -m gunicorn --config scoring_app/gunicorn.conf.py`` (the
Dockerfile's CMD). The master never imports TensorFlow: each worker imports
``scoring_app.wsgi`` after the fork and loads its own model (no preload_app).
Workers are gevent's, with gevent's own HTTP server (scoring_app/server/worker.py):
one greenlet per connection, with the model call and image decodes in native
threads (scoring_app/offload.py).

The master also:
- sets glibc's allocator for multi-megabyte bodies (scoring_app/server/allocator.py);
- serves the workers' merged Prometheus metrics on Var.METRICS_PORT;
- on SIGTERM, drains before stopping: it tells the workers to answer 503 on
  /readyz (SIGUSR2) and keeps accepting for Var.DRAIN_SECONDS, so the
  load balancer stops sending traffic before the listener closes; then
  gunicorn's graceful stop lets in-flight requests finish within
  Var.GRACEFUL_TIMEOUT_S (scoring_app/server/drain.py). Timeline in
  docs/contract.md.
"""

import glob
import os
import shutil
import signal
import sys
import tempfile

from scoring_app import settings
from scoring_app.contract import Var
from scoring_app.http.auth import KeyStore
from scoring_app.server import allocator, drain

try:
    _config = settings.load()
except settings.SettingsError as exc:
    sys.exit(f"scoring: bad configuration: {exc}")

if _config.auth == "required" and not KeyStore(_config.api_keys_dir).keys():
    sys.exit(f"scoring: no API key in {Var.API_KEYS_DIR}={_config.api_keys_dir} "
             "(files 'primary', 'secondary'). Mount the keys, or set "
             f"{Var.AUTH}=disabled to run without auth (local use only).")

if _config.capture_uri and _config.capture_flush_seconds >= _config.graceful_timeout_s:
    sys.exit(f"scoring: bad configuration: {Var.CAPTURE_FLUSH_SECONDS}="
             f"{_config.capture_flush_seconds:g} must be below {Var.GRACEFUL_TIMEOUT_S}="
             f"{_config.graceful_timeout_s} (the master stops a worker at the graceful timeout)")

# Before the fork, so every worker inherits it: bodies of megabytes reuse the heap's
# pages instead of faulting fresh ones in each request (scoring_app/server/allocator.py).
allocator.tune()

# Multiprocess metrics: workers write here; must be set before any worker
# imports prometheus_client. Only /tmp is writable in the container.
# A directory made here is this master's own, and removed when it exits.
_own_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = tempfile.mkdtemp(prefix="scoring-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

wsgi_app = "scoring_app.wsgi:app"
bind = [f"{_config.host}:{_config.port}"]
workers = _config.workers
worker_class = "scoring_app.server.worker.ScoringWorker"  # gevent + pywsgi; blocking calls: scoring_app/offload.py
worker_connections = _config.worker_connections
preload_app = False
timeout = _config.worker_timeout_s
graceful_timeout = _config.graceful_timeout_s
keepalive = 15  # also how long a connection may idle or stall mid-request (scoring_app/server/worker.py)
loglevel = _config.log_level
errorlog = "-"
proc_name = "scoring"
control_socket_disable = True  # it would write under $HOME; the root fs is read-only

_metrics_server = None


def on_starting(server):
    for stale in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(stale)


def when_ready(server):
    global _metrics_server
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    try:
        _metrics_server, _thread = start_http_server(
            _config.metrics_port, addr=_config.host, registry=registry)
    except OSError as exc:  # one line, before any worker loads a model
        sys.exit(f"scoring: cannot serve metrics on {_config.host}:{_config.metrics_port} "
                 f"({Var.METRICS_PORT}): {exc.strerror or exc}; set {Var.METRICS_PORT} "
                 "to a free port")
    server.log.info("metrics on http://%s:%s/metrics", _config.host, _config.metrics_port)
    # gunicorn's SIGTERM handler closes the listener at once; drain first.
    drain.install(server, _config.drain_seconds, lambda: _tell_workers_to_drain(server))


def _tell_workers_to_drain(server):
    for pid in list(server.WORKERS):
        try:
            os.kill(pid, signal.SIGUSR2)
        except ProcessLookupError:
            pass


def post_fork(server, worker):
    # The metrics listener belongs to the master; a worker must not hold it open.
    if _metrics_server is not None:
        _metrics_server.socket.close()


def post_worker_init(worker):
    service = worker.wsgi.extensions["scoring"]
    signal.signal(signal.SIGUSR2, lambda signum, frame: service.drain())
    # The worker's own SIGTERM (after the drain) is gunicorn's: the gevent
    # worker closes its listener within a second, then gives in-flight
    # requests the graceful timeout.


def worker_exit(server, worker):
    # In the worker, after its in-flight requests (gunicorn's Arbiter.spawn_worker calls
    # this once the worker's loop returns): upload what capture still holds, within
    # Var.CAPTURE_FLUSH_SECONDS, before the master's graceful timeout kills it.
    app = getattr(worker, "wsgi", None)
    service = app.extensions.get("scoring") if app is not None else None
    if service is not None and service.capture is not None:
        service.capture.flush(_config.capture_flush_seconds)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    if isinstance(server.handle_term, drain.Drain):
        server.handle_term.worker_exited()


def on_exit(server):
    if _own_metrics_dir is not None:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
