"""The scoring service: a Flask app around a batched TensorFlow SavedModel.

Importing the package imports nothing heavy: gunicorn's master reads
``settings`` and ``auth`` from it before any worker exists. The app itself is
built by ``scoring_app.app.create_app``, in workers only.
"""
