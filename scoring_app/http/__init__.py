"""HTTP: what every protocol shares between the socket and the service.

``lane`` (the WSGI entry: ``POST /score`` past Flask, the rest to Flask),
``body`` (the one bounded body reader), ``jsonio`` (the one JSON parser and
writer), ``errors`` (any exception -> one ``ScoringError``, rendered by the
request's protocol), ``auth`` (Bearer keys), ``probes`` (health, readiness,
the OpenAPI document), ``openapi``. Importing the package imports nothing:
gunicorn's master reads ``auth`` before any worker exists.
"""
