"""Read back what a deployment was asked and answered (payload capture, docs/capture.md).

    python -m scoring_tools.captures --stack prod --deployment green --since 2h
    python -m scoring_tools.captures --stack prod --deployment green --since 1d --out green.jsonl
    python -m scoring_tools.captures --stack prod --deployment blue --join shadow --since 6h

Where from: `--stack` reads the stack's `captureUri` output (`pulumi stack output`), or
`--capture-uri` names the container. Signs in with azure-identity's DefaultAzureCredential
(`az login`, a CI workload identity): your own Entra login needs Storage Blob Data Reader
on the captures container (the stack grants the pods write only there, nobody read).

Prints a summary (records, statuses, latency percentiles, top classes). `--out FILE.jsonl`
writes the records as JSON Lines (`pandas.read_json(path, lines=True)`); `--out DIR/`
writes `DIR/records.jsonl`, one row per input (flat columns: request_id, status,
latency_ms, sha256, format, top1_label, top1_score, ...) and, when images were kept,
each image as `DIR/images/<sha256>.<format>` (its path in `image_path`).

`--join OTHER`: the records of both deployments, joined by request id (a shadow sees the
live deployment's x-request-id), and where they disagree: a different top-1 class, or a
class whose score moved by more than `--threshold`. Exit status 0, or 1 when there were
disagreements (a CI gate), 2 when nothing could be read.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import re
import sys
from collections import Counter
from pathlib import Path

from scoring_tools.stack import StackOutputError, stack_outputs

OK, DISAGREE, NO_DATA = 0, 1, 2
_SPAN = re.compile(r"^(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class CapturesError(Exception):
    """Something the user can fix (a flag, the stack, a permission); exits NO_DATA."""


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``2h``, ``30m``, ``3d`` before ``now``, or an ISO 8601 time (UTC unless it says)."""
    match = _SPAN.match(text.strip())
    if match:
        return now - dt.timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CapturesError(f"--since {text!r}: use a span (30m, 2h, 3d) or an ISO time "
                            "(2026-12-07T09:00)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def hour_prefixes(deployment: str, since: dt.datetime, until: dt.datetime) -> list[str]:
    """The blob prefixes of every UTC hour the window touches."""
    hour = since.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    prefixes = []
    while hour <= until:
        prefixes.append(f"{deployment}/{hour:%Y/%m/%d/%H}/")
        hour += dt.timedelta(hours=1)
    return prefixes


def read_records(container, deployment: str, since: dt.datetime, until: dt.datetime) -> list[dict]:
    """Every record of ``deployment`` timed within the window, oldest first."""
    records = []
    for prefix in hour_prefixes(deployment, since, until):
        for blob in container.list_blobs(name_starts_with=prefix):
            data = container.download_blob(blob.name).readall()
            for line in data.splitlines():
                if line.strip():
                    records.append(json.loads(line))
    records = [r for r in records if since <= dt.datetime.fromisoformat(r["time"]) <= until]
    return sorted(records, key=lambda r: r["time"])


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _top1(record: dict) -> list[dict | None]:
    """Each input's best class (None where the answer had none, e.g. an error)."""
    return [(p[0] if p else None) for p in (record.get("predictions") or [])]


def summary(deployment: str, records: list[dict]) -> str:
    latencies = [r["latency_ms"] for r in records]
    statuses = Counter(r["status"] for r in records)
    classes = Counter(c["label"] for r in records for c in _top1(r) if c)
    lines = [f"{deployment}: {len(records)} records"
             + (f", {records[0]['time']} .. {records[-1]['time']}" if records else "")]
    if records:
        lines.append("status: " + ", ".join(f"{s} x{n}" for s, n in sorted(statuses.items())))
        lines.append("latency ms: " + ", ".join(
            f"p{int(q * 100)} {_percentile(latencies, q):.1f}" for q in (0.5, 0.9, 0.99)))
        lines.append("top classes: " + ", ".join(f"{label} x{n}" for label, n in classes.most_common(5)))
    return "\n".join(lines)


def _rows(records: list[dict], images: Path | None) -> list[dict]:
    """One flat row per input, for a DataFrame; images written out when kept."""
    rows = []
    for record in records:
        predictions = record.get("predictions") or []
        for index, item in enumerate(record.get("inputs") or [{}]):
            best = predictions[index][0] if index < len(predictions) and predictions[index] else {}
            row = {k: record[k] for k in ("time", "deployment", "request_id", "protocol",
                                          "status", "latency_ms")}
            row.update(model_version=record["model"]["version"], model_digest=record["model"]["digest"],
                       input=index, sha256=item.get("sha256"), bytes=item.get("bytes"),
                       format=item.get("format"), top1_label=best.get("label"),
                       top1_score=best.get("score"))
            if images is not None and "image_b64" in item:
                path = images / f"{item['sha256']}.{item['format']}"
                path.write_bytes(base64.b64decode(item["image_b64"]))
                row["image_path"] = str(path.relative_to(images.parent))
            rows.append(row)
    return rows


def write(records: list[dict], out: Path) -> Path:
    """A ``.jsonl`` file of the records as captured, or a folder (see the module doc)."""
    if out.suffix == ".jsonl":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(r) + "\n" for r in records))
        return out
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    target = out / "records.jsonl"
    target.write_text("".join(json.dumps(r) + "\n" for r in _rows(records, images)))
    return target


def join(live: list[dict], shadow: list[dict], threshold: float) -> dict:
    """Pairs by request id and where they disagree, input by input."""
    theirs = {r["request_id"]: r for r in shadow}
    pairs = [(r, theirs[r["request_id"]]) for r in live if r["request_id"] in theirs]
    disagreements = []
    for a, b in pairs:
        for index, (pa, pb) in enumerate(zip(a.get("predictions") or [], b.get("predictions") or [])):
            scores_b = {c["label"]: c["score"] for c in pb or []}
            moved = max((abs(c["score"] - scores_b[c["label"]]) for c in pa or []
                         if c["label"] in scores_b), default=0.0)
            top_a, top_b = (pa[0]["label"] if pa else None), (pb[0]["label"] if pb else None)
            if top_a != top_b or moved > threshold:
                disagreements.append({"request_id": a["request_id"], "input": index,
                                      "top1": [top_a, top_b], "max_score_change": round(moved, 6),
                                      "status": [a["status"], b["status"]]})
    ids = {r["request_id"] for r in shadow}
    return {"joined": len(pairs), "only_live": sum(r["request_id"] not in ids for r in live),
            "only_other": len(shadow) - len(pairs), "disagreements": disagreements}


def _container(args, credential, connection_verify):
    from azure.storage.blob import ContainerClient

    from scoring_app.capture.uploader import location
    uri = args.capture_uri
    if not uri:
        try:
            (uri,) = stack_outputs(args.stack, ("captureUri",), instead="--capture-uri",
                                   missing_hint=": turn capture on (config `capture`) and `pulumi up`")
        except StackOutputError as exc:
            raise CapturesError(str(exc)) from None
    loc = location(uri)
    if credential is None:
        from azure.identity import DefaultAzureCredential
        credential = DefaultAzureCredential()
    extra = {} if connection_verify is None else {"connection_verify": connection_verify}
    return ContainerClient(loc.account_url, loc.container, credential=credential, **extra)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m scoring_tools.captures", description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="read the stack's captureUri output")
    where.add_argument("--capture-uri", help="https://<account>.blob.core.windows.net/captures")
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--since", default="1h", help="30m, 2h, 3d, or an ISO time (default 1h)")
    parser.add_argument("--until", help="an ISO time (default now)")
    parser.add_argument("--out", type=Path, help="FILE.jsonl, or a folder")
    parser.add_argument("--join", metavar="OTHER", help="another deployment, joined by request id")
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="--join: a score change past this is a disagreement (default 0.1)")
    return parser.parse_args(argv)


def run(args, credential=None, connection_verify=None, now=None) -> int:
    now = now or dt.datetime.now(dt.timezone.utc)
    since = parse_since(args.since, now)
    until = parse_since(args.until, now) if args.until else now
    container = _container(args, credential, connection_verify)
    try:
        records = _read(container, args.deployment, since, until)
        print(summary(args.deployment, records))
        if args.join:
            other = _read(container, args.join, since, until)
            print(summary(args.join, other))
            return _report_join(args, records, other)
        if args.out:
            print(f"wrote {write(records, args.out)}")
        return OK if records else NO_DATA
    finally:
        container.close()


def _read(container, deployment, since, until) -> list[dict]:
    from azure.core.exceptions import AzureError, HttpResponseError
    try:
        return read_records(container, deployment, since, until)
    except HttpResponseError as exc:
        hint = (" (your login needs Storage Blob Data Reader on the captures container)"
                if exc.status_code in (401, 403) else "")
        raise CapturesError(f"{exc.status_code} reading {deployment}'s captures{hint}: "
                            f"{str(exc).splitlines()[0]}") from None
    except AzureError as exc:
        raise CapturesError(f"reading {deployment}'s captures: {str(exc).splitlines()[0]}") from None


def _report_join(args, records, other) -> int:
    result = join(records, other, args.threshold)
    print(f"joined by request id: {result['joined']} (only {args.deployment}: "
          f"{result['only_live']}, only {args.join}: {result['only_other']})")
    found = result["disagreements"]
    print(f"disagreements: {len(found)} (top-1 differs, or a score moved past {args.threshold})")
    for d in found[:10]:
        print(f"  {d['request_id']}[{d['input']}]: top-1 {d['top1'][0]} vs {d['top1'][1]}, "
              f"largest score change {d['max_score_change']:.3f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(d) + "\n" for d in found))
        print(f"wrote {args.out}")
    if not result["joined"]:
        return NO_DATA
    return DISAGREE if found else OK


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except CapturesError as exc:
        print(f"captures: {exc}", file=sys.stderr)
        return NO_DATA


if __name__ == "__main__":
    sys.exit(main())
