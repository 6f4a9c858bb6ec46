"""Laptop tools around the scoring service, never in its image, each run as
``python -m scoring_tools.<name>`` from the checkout: the client, the quick start
(``make serve``), the demo model it trains, sample images, model preparation and
publishing, the captures and promotion checks, the pre-deploy check (``preflight``),
the scaling simulation (``scaling_sim``), the plot of a local run (``plot_local_run``),
and the helpers that start a local server (``local``) for the quick start, the
tests and the benchmark."""
