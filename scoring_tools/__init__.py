"""Laptop tools around the scoring service, never in its image: the client
(``python -m scoring_tools.client``), the quick start (``make serve``), the
demo model it trains, sample images, and the helpers that start a local
server (``local``) for the quick start, the tests and the benchmark."""
