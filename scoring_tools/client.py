"""Command-line client: score images against a deployed (or local) service.

    python -m scoring_tools.client IMAGE... --uri URI --key KEY
    python -m scoring_tools.client IMAGE... --stack dev
    python -m scoring_tools.client IMAGE... --stack prod --deployment green

``--stack`` reads ``scoringUri`` and ``primaryKey`` from
``pulumi stack output --json --show-secrets --stack NAME``. Images are sent
concurrently (raw bytes, as the 2019 clients did) with a progress bar, then a
table: image, top classes, latency, and the deployment that answered (its
``azureml-model-deployment`` header). ``--deployment NAME`` sends that header,
so the endpoint's routes send the request to that deployment only. 503 is
retried with backoff.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import sys
import time
from pathlib import Path

import requests
from tqdm import tqdm

from scoring_tools.stack import StackOutputError
from scoring_tools.stack import stack_outputs as read_outputs

MESSAGES = {
    401: "401 Unauthorized: the key was refused; check --key (or the stack's primaryKey)",
    413: "413 Payload Too Large: the image is over the server's size limit",
    503: "503 Service Unavailable: the server stayed busy or not ready after retries",
}


class ClientError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclasses.dataclass
class Result:
    image: str
    status: int | None
    latency_s: float
    top: str
    deployment: str = "-"  # azureml-model-deployment of the answer


def stack_outputs(stack: str) -> tuple[str, str]:
    """``(scoringUri, primaryKey)`` of a Pulumi stack."""
    try:
        return read_outputs(stack, ("scoringUri", "primaryKey"), show_secrets=True,
                            instead="--uri and --key")
    except StackOutputError as exc:
        raise ClientError(str(exc)) from None


DEPLOYMENT_HEADER = "azureml-model-deployment"


def score_one(session: requests.Session, uri: str, key: str, path: Path, top_k: int,
              retries: int, backoff_s: float, deployment: str | None = None) -> Result:
    data = path.read_bytes()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"}
    if deployment:
        headers[DEPLOYMENT_HEADER] = deployment
    for attempt in range(retries + 1):
        started = time.perf_counter()
        try:
            response = session.post(uri, data=data, headers=headers,
                                    params={"top_k": top_k}, timeout=60)
        except requests.RequestException as exc:
            return Result(str(path), None, time.perf_counter() - started, f"error: {exc}")
        latency = time.perf_counter() - started
        if response.status_code != 503 or attempt == retries:
            break
        retry_after = response.headers.get("Retry-After", "")
        time.sleep(min(float(retry_after) if retry_after.isdigit() else 0, 30)
                   or backoff_s * 2 ** attempt)
    if response.status_code == 200:
        top = ", ".join(f"{p['label']} {p['score']:.3f}"
                        for p in response.json()["predictions"])
    else:
        top = MESSAGES.get(response.status_code) or _error_message(response)
    return Result(str(path), response.status_code, latency, top,
                  response.headers.get(DEPLOYMENT_HEADER, "-"))


def _error_message(response: requests.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:200]}"


def table(results: list[Result]) -> str:
    rows = [("image", "top classes", "latency", "deployment")] + [
        (r.image, r.top, f"{r.latency_s * 1000:.0f} ms", r.deployment) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score images with the scoring service.")
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--uri", help="the scoring URI, e.g. http://1.2.3.4/score")
    target.add_argument("--stack", help="a Pulumi stack to read scoringUri and primaryKey from")
    parser.add_argument("--key", help="the API key (with --uri)")
    parser.add_argument("--deployment", help="send azureml-model-deployment: NAME, so only "
                        "that deployment answers, whatever the traffic split")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--retries", type=int, default=4, help="retries on 503")
    parser.add_argument("--backoff", type=float, default=0.5, help="first backoff, seconds")
    args = parser.parse_args(argv)
    try:
        if args.stack:
            uri, key = stack_outputs(args.stack)
        elif args.key:
            uri, key = args.uri, args.key
        else:
            raise ClientError("--uri needs --key")
        missing = [str(p) for p in args.images if not p.is_file()]
        if missing:
            raise ClientError(f"no such file: {', '.join(missing)}")
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with requests.Session() as session, \
            concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=args.concurrency)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        futures = [pool.submit(score_one, session, uri, key, path, args.top_k,
                               args.retries, args.backoff, args.deployment)
                   for path in args.images]
        for _ in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                      desc="scoring", unit="image", file=sys.stderr):
            pass
        results = [f.result() for f in futures]
    print(table(results))
    return 0 if all(r.status == 200 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
