"""gunicorn's entry point (``wsgi_app`` in gunicorn.conf.py), imported in each
worker after the fork: this is where the model gets loaded.

A model the service cannot serve ends the worker with gunicorn's boot-error
status, which makes the master stop too: a broken image never reports ready.
"""

import logging

from gunicorn.arbiter import Arbiter

from scoring_app.app import create_app
from scoring_app.errors import UnsupportedModel

try:
    app = create_app()
except UnsupportedModel as exc:
    logging.getLogger("scoring_app").critical("cannot serve this model: %s", exc)
    raise SystemExit(Arbiter.WORKER_BOOT_ERROR) from None
