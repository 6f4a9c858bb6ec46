"""gunicorn's entry point (``wsgi_app`` in gunicorn.conf.py), imported in each
worker after the fork: this is where the model gets loaded."""

from scoring_app.app import create_app

app = create_app()
