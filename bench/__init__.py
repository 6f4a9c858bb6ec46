"""The benchmark: our scoring server against the 2019 recipe and the model's own limit.

Run it with ``make bench`` (``python -m bench --help`` lists the options). Nothing here is
imported by the service; TensorFlow is only imported in the child processes that need it, so
the orchestrating process stays light and its own CPU never blurs the measurements.
"""
