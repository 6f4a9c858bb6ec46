"""metrics: the families the README lists."""

from __future__ import annotations

from scoring_app import metrics
from tests.app.conftest import ROOT


def test_readme_lists_every_metric():
    readme = (ROOT / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in metrics.DOCS)
