"""The app factory: the request path, wired.

    server (gunicorn, server/) -> HTTP (http/: the lane, the body reader,
    JSON, errors) -> protocol (protocols/: /score, v2) -> service (service.py:
    keys, readiness) -> batching (batching/) -> model (model/)

Importing the package is cheap; ``create_app`` loads the model (TensorFlow is
imported there), so it must run in gunicorn workers, after the fork.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request

from . import capture, settings
from .capture.wsgi import CaptureMiddleware
from .contract import Var
from .http import errors, jsonio, lane, probes
from .http.deployment import DeploymentHeader
from .model.interface import Model
from .protocols import score, v2
from .service import Service

log = logging.getLogger(__name__)


def create_app(config: settings.Config | dict | None = None, model: Model | None = None,
               uploader=None) -> Flask:
    """Build the app. ``config``: a ``settings.Config``, a dict of overrides,
    or None for the environment. ``model``: a stand-in for tests; ``uploader``: the
    capture's (default: Blob Storage with the pod's workload identity)."""
    if not isinstance(config, settings.Config):
        config = settings.load(**(config or {}))
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    if config.auth == "disabled":
        log.warning(f"{Var.AUTH}=disabled: /score answers ANYONE without a key. "
                    "Local use only.")
    app = Flask(__name__)
    app.json = jsonio.Provider(app)
    app.register_blueprint(probes.probes)
    app.register_blueprint(v2.v2)
    # One handler, app-wide, for every error Flask's routes raise (404 and 405
    # included, which routing raises before any blueprint is chosen).
    app.register_error_handler(Exception, error_response)
    app.before_request(probes.start_timer)
    app.after_request(probes.record)
    lane.check_flask_hooks(app, probes.METRIC_HOOKS)
    service = Service(config, model)
    app.wsgi_app = lane.ScoreLane(app.wsgi_app, service)  # POST /score: protocols/score.py
    if config.deployment_name:  # around the lane, so POST /score carries it too
        app.wsgi_app = DeploymentHeader(app.wsgi_app, config.deployment_name)
    if config.capture_uri:  # outermost: the latency it records is the whole app's
        service.capture = capture.from_config(config, service.model, uploader)
        app.wsgi_app = CaptureMiddleware(app.wsgi_app, service.capture, config.capture_sample_rate)
    init_service(app, service)
    return app


def error_response(exc: Exception):
    """The one error, in the shape of the protocol the path belongs to."""
    error = errors.as_scoring_error(exc)
    document = v2.error_document(error) if v2.speaks(request.path) else score.error_document(error)
    response = jsonify(document)
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def init_service(app: Flask, service: Service) -> None:
    """Wire the service in and start it (model load, then warm-up in the background)."""
    app.extensions["scoring"] = service
    service.start()
