"""The scoring service: a WSGI front door around a batched TensorFlow SavedModel.

Importing the package imports nothing heavy: gunicorn's master reads
``settings``, ``http.auth`` and ``server.drain`` from it before any worker
exists. The app itself is built by ``scoring_app.app.create_app``, in workers
only. The sub-packages follow a request's path (``app.py`` says how they are
wired; docs/service.md, "The code, outside in").
"""
