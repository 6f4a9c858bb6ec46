"""monitoring/grafana-dashboard.json and KEDA's queries use only metrics the service exports.

Grafana does not run here, so every PromQL expression is parsed (promql-parser,
the Rust parser Prometheus-compatible tools share) and each metric it selects
is checked against what the scoring service really exposes on /metrics.

Where the names come from: `service_families()` imports scoring_app.metrics
and reads the prometheus_client collectors defined there (name and type), then
expands each family into the series Prometheus stores (a counter X is
X_total and X_created; a histogram X is X_bucket, X_sum, X_count, X_created).
"""
import json
import re

import promql_parser
import pytest
from prometheus_client.metrics import MetricWrapperBase

from stack_harness import REPO

from scoring_app import metrics

DASHBOARD = REPO / "monitoring" / "grafana-dashboard.json"
#: Exported by something else, each with what must run for it to exist.
EXTERNAL = {"DCGM_FI_DEV_GPU_UTIL": "DCGM exporter"}
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "summary": ("", "_sum", "_count"),
            "histogram": ("_bucket", "_sum", "_count", "_created")}
#: Grafana's own variables, replaced by what Grafana would put there before parsing.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "1m"}


def service_families() -> dict[str, str]:
    return {m._name: m._type for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}


def exported_series(families: dict[str, str]) -> set[str]:
    return {name + suffix for name, kind in families.items() for suffix in SUFFIXES[kind]}


def selected_metrics(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects (parse errors propagate)."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    found, stack = set(), [promql_parser.parse(expr)]
    while stack:
        node = stack.pop()
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"select metrics by name, not only by matchers: {expr}"
            found.add(node.name)
            continue
        for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, (str, float, int)):
                stack.append(child)
        stack.extend(getattr(node, "args", None) or [])
    return found


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"])
            for panel in board["panels"] for target in panel["targets"]]


def test_the_parser_finds_every_selector_and_rejects_bad_promql():
    expr = ('histogram_quantile(0.99, sum by (le) (rate(a_bucket[$__rate_interval]))) '
            '/ on() group_left -max_over_time(b[5m:1m]) + (topk(3, c))')
    assert selected_metrics(expr) == {"a_bucket", "b", "c"}
    with pytest.raises(ValueError):
        selected_metrics("sum(rate(a[5m])")


def test_series_expansion_follows_prometheus_naming():
    assert exported_series({"x": "counter", "y": "histogram", "z": "gauge"}) == {
        "x_total", "x_created", "y_bucket", "y_sum", "y_count", "y_created", "z"}


def test_every_dashboard_query_uses_a_metric_the_service_exports():
    exported = exported_series(service_families())
    problems = []
    for title, expr in dashboard_exprs():
        for name in selected_metrics(expr) - exported:
            if name not in EXTERNAL:
                problems.append(f"{title}: {name}")
    assert problems == []


def test_the_dashboard_covers_what_issue_4_asks_for():
    board = json.loads(DASHBOARD.read_text())
    used = set().union(*(selected_metrics(e) for _, e in dashboard_exprs()))
    assert {"scoring_requests_total", "scoring_request_duration_seconds_bucket",
            "scoring_batch_size_bucket", "scoring_queue_depth", "DCGM_FI_DEV_GPU_UTIL"} <= used
    exprs = " ".join(e for _, e in dashboard_exprs())
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.99," in exprs
    assert 'status=~"4.."' in exprs and 'status=~"5.."' in exprs
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:  # one data source variable, chosen at import time
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for name, exporter in EXTERNAL.items():
            if any(name in t["expr"] for t in panel["targets"]):
                assert exporter.split()[0] in panel["description"], panel["title"]


def test_kedas_queries_use_metrics_the_service_exports():
    from infra.autoscaling import load_queries
    exported = exported_series(service_families())
    for trigger, query in load_queries("scoring", "blue").items():
        assert selected_metrics(query) <= exported, trigger
        assert re.search(r'namespace="scoring",deployment="blue"', query), trigger
