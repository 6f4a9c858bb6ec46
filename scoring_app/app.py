"""The app factory.

Importing the package is cheap; ``create_app`` loads the model (TensorFlow is
imported there), so it must run in gunicorn workers, after the fork.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from . import jsonio, lane, routes, settings, v2
from .errors import ScoringError
from .service import Service

log = logging.getLogger(__name__)


def create_app(config: Any = None, model: Any = None) -> Flask:
    """Build the app. ``config``: a ``settings.Config``, a dict of overrides,
    or None for the environment. ``model``: a stand-in for tests."""
    if not isinstance(config, settings.Config):
        config = settings.load(**(config or {}))
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s")
    if config.auth == "disabled":
        log.warning("SCORING_AUTH=disabled: /score answers ANYONE without a key. "
                    "Local use only.")
    app = Flask(__name__)
    app.json = jsonio.Provider(app)
    app.register_blueprint(routes.probes)
    app.register_blueprint(routes.api)
    app.register_blueprint(v2.v2)
    app.register_error_handler(ScoringError, routes.handle_scoring_error)
    app.register_error_handler(routes.HTTPException, routes.handle_http_error)
    app.register_error_handler(Exception, routes.handle_unexpected)
    app.before_request(routes.start_timer)
    app.after_request(routes.record)
    service = Service(config, model)
    app.wsgi_app = lane.ScoreLane(app.wsgi_app, service)  # POST /score past Flask's machinery
    init_service(app, service)
    return app


def init_service(app: Flask, service: Service) -> None:
    """Wire the service in and start it (model load, then warm-up in the background)."""
    app.extensions["scoring"] = service
    service.start()
