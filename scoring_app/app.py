"""The app factory: the request path, wired.

    server (gunicorn, server/) -> the front door (dispatch.py: routing, key,
    errors, metrics, header) -> a protocol's codec (protocols/) -> service
    (service.py) -> batching (batching/) -> model (model/)

Importing the package is cheap; ``create_app`` loads the model (TensorFlow is
imported there), so it must run in gunicorn workers, after the fork.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from . import capture, settings
from .capture.wsgi import CaptureMiddleware
from .contract import Var
from .dispatch import Dispatcher, ErrorShape
from .model.interface import Model
from .protocols import probes, score, v2
from .service import Service

log = logging.getLogger(__name__)


def create_app(config: settings.Config | dict[str, Any] | None = None, model: Model | None = None,
               uploader: Any = None) -> Flask:
    """Build the app. ``config``: a ``settings.Config``, a dict of overrides,
    or None for the environment. ``model``: a stand-in for tests; ``uploader``: the
    capture's (default: Blob Storage with the pod's workload identity).

    Flask is the app object only (its test client, ``app.extensions`` and the
    ``app.wsgi_app`` slot for middleware): every request goes to the dispatcher."""
    if not isinstance(config, settings.Config):
        config = settings.load(**(config or {}))
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    if config.auth == "disabled":
        log.warning("!!! %s=disabled: every route answers with NO key. Local use only. !!!", Var.AUTH)
    service = Service(config, model)
    app = Flask(__name__)
    app.wsgi_app = Dispatcher(  # type: ignore[method-assign]
        [*score.routes(service), *probes.routes(service), *v2.routes(service)],
        service.authenticate, _error_shape, config.deployment_name)
    if config.capture_uri:  # outermost: the latency it records is the whole app's
        service.capture = capture.from_config(config, service.model, uploader)
        app.wsgi_app = CaptureMiddleware(app.wsgi_app, service.capture,  # type: ignore[method-assign]
                                         config.capture_sample_rate)
    app.extensions["scoring"] = service
    service.start()  # the model loads now; it warms up in the background
    return app


def _error_shape(path: str) -> ErrorShape:
    """The shape of an error on a path no route matched: the protocol the path belongs to."""
    return v2.error_document if v2.speaks(path) else score.error_document
