"""The 2019 recipe, rebuilt as the benchmark's baseline (see app.py)."""
