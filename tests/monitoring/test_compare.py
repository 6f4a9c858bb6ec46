"""scoring_tools/compare.py without a server: its PromQL, its verdict table and its flags.

The same tool against a real Prometheus scraping two real scoring servers is
tests/monitoring/test_compare_prometheus.py."""
import json
import math
import sys
from pathlib import Path

import pytest

from scoring_tools import compare
from scoring_tools.compare import ERROR, HOLD, NO_DATA, PROMOTE, Stats, Thresholds, verdict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stack"))
from stack_harness import REPO  # noqa: E402 - the dashboard test's PromQL helpers
from test_dashboard import exported_series, selected_metrics, service_families  # noqa: E402


def stats(name, requests=1000, rate=10.0, errors=0.0, p50=0.010, p99=0.050):
    return Stats(name, requests, rate, errors, p50, p99)


def test_every_query_parses_and_selects_only_what_the_service_exports():
    exported = exported_series(service_families())
    for name, query in compare.queries("green", "10m").items():
        assert selected_metrics(query) <= exported, name
        assert 'deployment="green"' in query and "[10m]" in query, name


def test_the_queries_are_the_dashboards_by_deployment_panels():
    """compare holds a rollout on what the dashboard shows side by side."""
    board = json.loads((REPO / "monitoring" / "grafana-dashboard.json").read_text())
    panels = {p["title"]: [t["expr"] for t in p["targets"]] for p in board["panels"]
              if p["title"].endswith("by deployment")}
    assert len(panels) == 3
    mine = compare.queries("blue", "$__rate_interval")
    strip = lambda q: q.replace(',deployment="blue"', "")  # noqa: E731 - one filter apart
    [rate] = panels["Requests/s by deployment"]
    assert rate == strip(mine["rate"]).replace("sum(", "sum by (deployment) (", 1)
    for quantile in ("p50", "p99"):
        expected = strip(mine[quantile]).replace("sum by (le)", "sum by (deployment, le)")
        assert expected in panels["Scoring latency p50 / p99 by deployment"]
    [ratio] = panels["Error ratio (5xx) by deployment"]
    assert selected_metrics(ratio) == selected_metrics(mine["error_ratio"])
    assert 'status=~"5.."' in ratio and 'status=~"5.."' in mine["error_ratio"]


VERDICTS = [
    # (candidate, baseline, expected, reason fragment)
    (stats("green"), stats("blue"), PROMOTE, None),
    (stats("green", p50=0.0145), stats("blue", p50=0.008), PROMOTE, None),  # <= 1.2 x 8 + 5 ms
    (stats("green", p50=0.0147), stats("blue", p50=0.008), HOLD, "p50 14.7 ms"),
    (stats("green", errors=0.03), stats("blue", errors=0.01), HOLD, "5xx ratio 3.00%"),
    (stats("green", errors=0.019), stats("blue", errors=0.01), PROMOTE, None),
    (stats("green", p50=0.200), stats("blue"), HOLD, "p50 200.0 ms"),
    (stats("green", p99=0.200), stats("blue"), HOLD, "p99 200.0 ms"),
    (stats("green", p99=math.nan), stats("blue"), HOLD, "p99 n/a"),
    (stats("green", requests=50), stats("blue"), NO_DATA, "green: fewer than 100"),
    (stats("green"), stats("blue", requests=math.nan), NO_DATA, "blue: fewer than 100"),
]


@pytest.mark.parametrize("candidate,baseline,expected,reason", VERDICTS)
def test_verdict(candidate, baseline, expected, reason):
    status, reasons = verdict(candidate, baseline, Thresholds())
    assert status == expected
    if reason is None:
        assert reasons == []
    else:
        assert any(reason in r for r in reasons), reasons


@pytest.mark.parametrize("argv,message", [
    (["--candidate", "green"], "one of the arguments --stack --prometheus-url is required"),
    (["--prometheus-url", "http://x", "--candidate", "blue"], "two different deployments"),
    (["--prometheus-url", "http://x", "--candidate", "g", "--window", "ten"], "PromQL duration"),
    (["--prometheus-url", "http://x", "--candidate", "g", "--max-latency-ratio", "0"], "> 0"),
    (["--prometheus-url", "http://x", "--candidate", "g", "--min-requests", "-1"], ">= 0"),
])
def test_bad_flags_are_refused_with_the_flag_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        compare.main(argv)
    assert exit_.value.code == ERROR  # not 2, "no data": a gate must not wait on a typo
    assert message in capsys.readouterr().err


def test_an_unreachable_endpoint_is_an_error_of_its_own_not_a_traceback(capsys):
    from tests.app.conftest import free_port
    port = free_port()  # nothing listens there
    status = compare.main(["--prometheus-url", f"http://127.0.0.1:{port}", "--candidate", "g"])
    assert status == ERROR != NO_DATA
    assert "error: cannot reach" in capsys.readouterr().err


def test_a_missing_pulumi_cli_is_an_error_not_no_data(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no pulumi there
    assert compare.main(["--stack", "prod", "--candidate", "green"]) == ERROR
    err = capsys.readouterr().err
    assert "error: the pulumi CLI is not on PATH; use --prometheus-url" in err, err
