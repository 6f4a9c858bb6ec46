"""metrics: the families docs/service.md lists."""

from __future__ import annotations

import pytest

from scoring_app import metrics
from tests.app.conftest import ROOT


def test_the_service_page_lists_every_metric():
    page = (ROOT / "docs" / "service.md").read_text()
    assert all(f"`{name}`" in page for name in metrics.DOCS)


def test_the_batchers_observer_is_typed_methods_onto_the_families():
    import inspect

    from scoring_app.batching.batcher import Observer
    observer = metrics.BatcherMetrics()
    wanted = {name for name, _ in inspect.getmembers(Observer, inspect.isfunction) if not name.startswith("_")}
    assert wanted == {"queue_depth", "batch_size", "model_call", "abandoned"}
    assert all(callable(getattr(observer, name)) for name in wanted)
    before = metrics.BATCH_SIZE.collect()[0]
    count = next(s.value for s in before.samples if s.name == "scoring_batch_size_count")
    observer.batch_size(3)
    observer.queue_depth(7)
    after = metrics.BATCH_SIZE.collect()[0]
    assert next(s.value for s in after.samples if s.name == "scoring_batch_size_count") == count + 1
    assert metrics.QUEUE_DEPTH.collect()[0].samples[0].value == 7
    with pytest.raises(AttributeError):
        observer.queue_dpth(1)  # a typo is an error, not a dropped metric
