"""HTTP transport helpers every protocol shares: ``body`` (the one bounded body
reader), ``jsonio`` (the one JSON parser and writer), ``errors`` (any exception
-> one ``ScoringError``), ``auth`` (Bearer keys), ``disconnect`` (whether the
client is still there). Importing the package imports nothing: gunicorn's
master reads ``auth`` before any worker exists.
"""
