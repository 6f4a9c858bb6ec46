"""gunicorn settings of the 2019-style baseline: one sync worker, so one request at a time."""
import os

wsgi_app = "bench.baseline.app:create_app()"
bind = f"127.0.0.1:{os.environ.get('SCORING_PORT', '5001')}"
workers = 1
worker_class = "sync"
timeout = 120  # model load happens in the worker; a busy shared machine can make it slow
