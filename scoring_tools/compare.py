"""Promotion check: is a candidate deployment as good as the baseline, on live traffic?

    python -m scoring_tools.compare --stack prod --candidate green --baseline blue --window 10m
    python -m scoring_tools.compare --prometheus-url http://127.0.0.1:9090 --candidate green

Reads, per deployment, over the window: the scoring request rate, the share
answered 5xx, and p50/p99 latency, from the service's own metrics
(`scoring_requests_total`, `scoring_request_duration_seconds`) by their
`deployment` label (the stack's PodMonitor copies it from each pod's
aks-gpu-scoring/deployment label). The same PromQL as the dashboard's
"by deployment" panels (`queries`).

Where from: `--stack` reads the stack's `prometheusQueryEndpoint` output
(`pulumi stack output`) and signs in with azure-identity's
DefaultAzureCredential (`az login`, a CI workload identity, ...) for the
Azure Monitor workspace, which needs "Monitoring Data Reader" on it; or any
Prometheus at `--prometheus-url` (no sign-in).

Verdict, printed under the table, and the exit status, so CI can gate a
rollout step on it:
- 0 promote: enough requests on both, and the candidate's 5xx ratio is at most
  the baseline's plus `--max-error-increase`, and its p50 and p99 at most
  `--max-latency-ratio` times the baseline's (plus `--latency-slack-ms`, so
  two very fast deployments are not held over a millisecond);
- 1 hold: any of those fails (each failing check is printed);
- 2 no data: fewer than `--min-requests` requests for either deployment in
  the window (wait and ask again);
- 3 error: nothing was measured, because the check itself could not run: a
  bad flag, the pulumi CLI missing or the stack's output unreadable, no Azure
  sign-in, the query endpoint unreachable or answering an error. A gate should
  fail the pipeline here, not wait.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys

import requests

from scoring_app.contract import WORK_ROUTES_REGEX
from scoring_tools.stack import StackOutputError, stack_outputs

#: The routes that are scoring work (as KEDA's and the dashboard's queries).
SCORING_ROUTES = WORK_ROUTES_REGEX
#: Azure Monitor workspaces' Prometheus query API takes Entra tokens for this audience.
AZURE_PROMETHEUS_SCOPE = "https://prometheus.monitor.azure.com/.default"
PROMOTE, HOLD, NO_DATA, ERROR = 0, 1, 2, 3
_WINDOW = re.compile(r"^\d+[smhd]$")


class CompareError(Exception):
    """The check could not run (a tool, the stack, the sign-in, the endpoint); exits ERROR."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """A bad flag is the check failing to run, not "no data": exit ERROR."""
        self.print_usage(sys.stderr)
        self.exit(ERROR, f"{self.prog}: error: {message}\n")


def queries(deployment: str, window: str) -> dict[str, str]:
    """PromQL, one number each, for one deployment over the window."""
    where = f'route=~"{SCORING_ROUTES}",deployment="{deployment}"'
    rate = f"sum(rate(scoring_requests_total{{{where}}}[{window}]))"
    errors = f'sum(rate(scoring_requests_total{{{where},status=~"5.."}}[{window}]))'
    def quantile(q: str) -> str:
        return (f"histogram_quantile({q}, sum by (le) (rate("
                f"scoring_request_duration_seconds_bucket{{{where}}}[{window}])))")
    return {
        "requests": f"sum(increase(scoring_requests_total{{{where}}}[{window}]))",
        "rate": rate,
        # 0 (not empty) when nothing failed: `or` fills in a zero for no 5xx series.
        "error_ratio": f"({errors} or vector(0)) / {rate}",
        "p50": quantile("0.5"),
        "p99": quantile("0.99"),
    }


@dataclasses.dataclass
class Stats:
    deployment: str
    requests: float
    rate: float
    error_ratio: float
    p50: float
    p99: float


class Prometheus:
    """The instant-query API of a Prometheus (or an Azure Monitor workspace)."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s

    def value(self, query: str) -> float:
        """The query's one number; NaN when it returns nothing."""
        try:
            response = self.session.post(f"{self.url}/api/v1/query", data={"query": query},
                                         timeout=self.timeout_s)
        except requests.RequestException as err:
            raise CompareError(f"cannot reach {self.url}: {err}") from None
        if response.status_code != 200:
            raise CompareError(f"{self.url} answered {response.status_code} to {query!r}: "
                               f"{response.text[:300]}")
        body = response.json()
        result = body.get("data", {}).get("result", [])
        if body.get("status") != "success":
            raise CompareError(f"query failed: {body.get('error', body)}")
        if not result:
            return math.nan
        if len(result) > 1:
            raise CompareError(f"{query!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def stats(self, deployment: str, window: str) -> Stats:
        got = {name: self.value(q) for name, q in queries(deployment, window).items()}
        return Stats(deployment=deployment, **got)


@dataclasses.dataclass
class Thresholds:
    min_requests: float = 100
    max_error_increase: float = 0.01
    max_latency_ratio: float = 1.2
    latency_slack_ms: float = 5


def verdict(candidate: Stats, baseline: Stats, limits: Thresholds) -> tuple[int, list[str]]:
    """(exit status, the reasons): no data first, then every check that fails."""
    missing = [s.deployment for s in (candidate, baseline)
               if math.isnan(s.requests) or s.requests < limits.min_requests]
    if missing:
        return NO_DATA, [f"{name}: fewer than {limits.min_requests:g} requests in the window"
                         for name in missing]
    reasons = []
    if not candidate.error_ratio <= baseline.error_ratio + limits.max_error_increase:
        reasons.append(f"5xx ratio {candidate.error_ratio:.2%} > baseline "
                       f"{baseline.error_ratio:.2%} + {limits.max_error_increase:.2%}")
    for name in ("p50", "p99"):
        mine, theirs = getattr(candidate, name), getattr(baseline, name)
        allowed = theirs * limits.max_latency_ratio + limits.latency_slack_ms / 1000
        if math.isnan(mine) or not mine <= allowed:
            reasons.append(f"{name} {_ms(mine)} > {limits.max_latency_ratio:g} x baseline "
                           f"{_ms(theirs)} + {limits.latency_slack_ms:g} ms")
    return (HOLD, reasons) if reasons else (PROMOTE, [])


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def table(candidate: Stats, baseline: Stats) -> str:
    rows = [("", f"{candidate.deployment} (candidate)", f"{baseline.deployment} (baseline)")]
    for label, fmt, key in (("requests", "{:.0f}", "requests"), ("requests/s", "{:.2f}", "rate"),
                            ("5xx ratio", "{:.2%}", "error_ratio")):
        rows.append((label, *(("n/a" if math.isnan(getattr(s, key)) else
                               fmt.format(getattr(s, key))) for s in (candidate, baseline))))
    for key in ("p50", "p99"):
        rows.append((key, _ms(getattr(candidate, key)), _ms(getattr(baseline, key))))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def stack_endpoint(stack: str) -> str:
    """The stack's prometheusQueryEndpoint output."""
    try:
        [endpoint] = stack_outputs(stack, ("prometheusQueryEndpoint",), instead="--prometheus-url",
                                   missing_hint=" (monitoring: true makes one)")
    except StackOutputError as exc:
        raise CompareError(str(exc)) from None
    return endpoint


def azure_token() -> str:
    """An Entra token for the workspace's query API (az login, workload identity, ...)."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential
    try:
        return DefaultAzureCredential().get_token(AZURE_PROMETHEUS_SCOPE).token
    except ClientAuthenticationError as err:
        raise CompareError(f"could not sign in to Azure (az login?): {err}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m scoring_tools.compare",
        description="Compare a candidate deployment with the baseline on Prometheus metrics; "
                    "exit 0 promote, 1 hold, 2 no data, 3 error (nothing measured).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="a Pulumi stack: its prometheusQueryEndpoint, with an "
                        "Entra token (azure-identity)")
    source.add_argument("--prometheus-url", help="any Prometheus, e.g. http://127.0.0.1:9090")
    parser.add_argument("--candidate", required=True, help="the deployment being promoted")
    parser.add_argument("--baseline", default="blue", help="the deployment it must match "
                        "(default: blue)")
    parser.add_argument("--window", default="10m", help="PromQL range, e.g. 10m (default)")
    defaults = Thresholds()
    parser.add_argument("--min-requests", type=float, default=defaults.min_requests,
                        help="fewer requests than this in the window for either is 'no data' "
                        "(default: %(default)g)")
    parser.add_argument("--max-error-increase", type=float, default=defaults.max_error_increase,
                        help="the candidate's 5xx ratio may exceed the baseline's by this "
                        "(a fraction; default: %(default)g)")
    parser.add_argument("--max-latency-ratio", type=float, default=defaults.max_latency_ratio,
                        help="the candidate's p50 and p99 may be this many times the baseline's "
                        "(default: %(default)g)")
    parser.add_argument("--latency-slack-ms", type=float, default=defaults.latency_slack_ms,
                        help="... plus this many milliseconds (default: %(default)g)")
    args = parser.parse_args(argv)
    if not _WINDOW.match(args.window):
        parser.error(f"--window {args.window!r}: use a PromQL duration such as 30s, 10m or 1h")
    if args.candidate == args.baseline:
        parser.error("--candidate and --baseline must be two different deployments")
    for name in ("min_requests", "max_error_increase", "latency_slack_ms"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.max_latency_ratio <= 0:
        parser.error("--max-latency-ratio must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.stack:
            prometheus = Prometheus(stack_endpoint(args.stack), token=azure_token())
        else:
            prometheus = Prometheus(args.prometheus_url)
        candidate = prometheus.stats(args.candidate, args.window)
        baseline = prometheus.stats(args.baseline, args.window)
    except CompareError as err:
        print(f"error: {err}", file=sys.stderr)
        return ERROR
    status, reasons = verdict(candidate, baseline, Thresholds(
        min_requests=args.min_requests, max_error_increase=args.max_error_increase,
        max_latency_ratio=args.max_latency_ratio, latency_slack_ms=args.latency_slack_ms))
    print(f"window {args.window}")
    print(table(candidate, baseline))
    word = {PROMOTE: "promote", HOLD: "hold", NO_DATA: "no data"}[status]
    print(f"verdict: {word}" + "".join(f"\n  - {r}" for r in reasons))
    return status


if __name__ == "__main__":
    sys.exit(main())
