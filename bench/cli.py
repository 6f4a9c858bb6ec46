"""``python -m bench``: the whole benchmark, one model after the other.

For each model: build it (cached) and sweep its in-process limit over the batch sizes in a
child process that then stays up; start the servers on it side by side; and at each
concurrency let the servers and the limit take turns, ``--rounds`` times: each server a short
measured run after a warm-up, with the server tree's CPU sampled from /proc before and after,
then the limit measured again, as long, at the sweep's best two batch sizes, keeping the best
(at batch 1 for concurrency 1, where the target is latency). Only one of them works at a time (an idle one
costs nothing), and the turns give all of them the same machine: on a shared 2-core VM whose
speed drifts by a fifth over minutes, measuring one after the other would put that drift into
the ratios. Where the request's JPEG is decoded at a DCT scale (a photo at least twice the
input on both sides), the full-decode twin's limit (bench/limit.py) takes a turn beside it.
"""
import argparse
import contextlib
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import capture_sink, images, limit, load, models, procstat, report, servers

DEFAULT_OUT = servers.BENCH_ROOT / "bench" / "results"
# --quick: every stage shortened, for a first look in about a minute per model.
QUICK = {"batch_sizes": [1, 8], "limit_seconds": 1.0, "concurrency": [1, 8], "duration": 3, "warmup": 1, "rounds": 1}


def _int_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",")]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def _names(choices: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = text.split(",")
        unknown = sorted(set(names) - set(choices))
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
        return names

    return parse


def _image_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if min(width, height) < 1:
        raise argparse.ArgumentTypeError(f"image sides must be positive, got {text!r}")
    return width, height


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=_names(models.MODEL_NAMES), default=list(models.MODEL_NAMES),
                        help="comma-separated, from %(default)s")
    parser.add_argument("--servers", type=_names(servers.SERVER_NAMES),
                        help=f"comma-separated, from {','.join(servers.SERVER_NAMES)} (default: all; "
                             "triton and kserve only where their venvs are installed: "
                             "make triton-venv, make kserve-venv)")
    parser.add_argument("--concurrency", type=_int_list, help="comma-separated levels (default 1,8,32)")
    parser.add_argument("--duration", type=int, help="measured seconds per server and concurrency, split over the rounds (default 15)")
    parser.add_argument("--rounds", type=int, help="turns each server takes at each concurrency (default 3)")
    parser.add_argument("--warmup", type=int, help="seconds of unmeasured load before each run (default 3)")
    parser.add_argument("--batch-sizes", type=_int_list, help="in-process limit batch sizes (default 1,2,4,8,16,32)")
    parser.add_argument("--limit-seconds", type=float, help="seconds per batch size of the in-process limit (default 3)")
    parser.add_argument("--quick", action="store_true", help=f"short settings for a first look: {QUICK}")
    parser.add_argument("--image-size", type=_image_size, default=(224, 224), metavar="WxH",
                        help="size of the JPEG every request sends (default 224x224)")
    parser.add_argument("--client", choices=load.CLIENTS, default="auto",
                        help="load generator: wrk if installed (auto), or the Python one")
    parser.add_argument("--app-root", type=Path, default=servers.BENCH_ROOT,
                        help="directory holding scoring_app/ for 'ours' (default: this repository)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where results.json/.png go (default %(default)s)")
    parser.add_argument("--cache-dir", type=Path, help="where built models are kept (default OUT/models)")
    parser.add_argument("--ready-timeout", type=float, default=300, help="seconds a server may take to be ready")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else {"batch_sizes": [1, 2, 4, 8, 16, 32], "limit_seconds": 3.0,
                                         "concurrency": [1, 8, 32], "duration": 15, "warmup": 3, "rounds": 3}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.duration < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error("--duration must be at least 1 second, --rounds at least 1 and --warmup not negative")
    args.cache_dir = args.cache_dir or args.out / "models"
    # a peer whose venv is missing: left out of the default, said so; named, an error
    missing = [name for name in servers.PEERS if servers.peer_python(name) is None]
    args.left_out = []
    if args.servers is None:
        args.servers = [name for name in servers.SERVER_NAMES if name not in missing
                        and name not in servers.OPT_IN]
        args.left_out = [f"left out {servers.missing_note(name)}" for name in missing]
    named_missing = [name for name in missing if name in args.servers]
    if named_missing:
        parser.error(f"--servers {servers.missing_note(named_missing[0])}")
    return args


def _progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _settle(running: dict[str, servers.Server]) -> None:
    """Wait until no server is still computing requests its last client abandoned (with
    ResNet50 at c=32, seconds of work): they must not count in the next measured turn, of
    whichever server or of the limit."""
    for server in running.values():
        procstat.wait_idle(server.pid)


def _run_once(server: servers.Server, running: dict[str, servers.Server], args, client: str, key_file: Path,
              image_file: Path, concurrency: int, seconds: int) -> dict:
    """One turn: a warm-up, then a measured run with the server tree's CPU around it."""
    body = server.body_file or image_file
    if args.warmup:
        load.run(client, server.score_url, key_file, body, concurrency, args.warmup, server.header)
    _settle(running)
    cpu_before = procstat.tree_cpu_seconds(server.pid)
    point = load.run(client, server.score_url, key_file, body, concurrency, seconds, server.header)
    point["server_cpu_s"] = procstat.tree_cpu_seconds(server.pid) - cpu_before
    return point


def combine(turns: list[dict], concurrency: int) -> dict:
    """One figure per server and concurrency from its turns: counts and CPU added up, so
    requests/s and CPU per request are over all of them; p50 the median turn's, p99 the
    worst turn's (wrk reports percentiles, not the latencies to pool)."""
    point = {field: sum(turn[field] for turn in turns)
             for field in ("requests", "ok", "status_errors", "socket_errors", "duration_s", "server_cpu_s")}
    point.update(concurrency=concurrency, rounds=len(turns), rps=point["ok"] / point["duration_s"],
                 p50_ms=statistics.median_high(turn["p50_ms"] for turn in turns),
                 p99_ms=max(turn["p99_ms"] for turn in turns),
                 cpu_s_per_request=point["server_cpu_s"] / point["ok"] if point["ok"] else None,
                 turns=[{key: turn[key] for key in ("rps", "p50_ms", "p99_ms", "server_cpu_s")} for turn in turns])
    return point


# The limit's turns measure the sweep's best two batch sizes, each as long as a server's turn
# (its count depends on the window: see bench.limit.measure_batch), and keep the best: one
# short sweep on this VM has ranked batch 4 first for ResNet50, another put batch 32 far
# ahead, and a limit re-measured at one size only can land on the wrong one.
LIMIT_CANDIDATES = 2


def limit_candidates(sweep: dict, concurrency: int) -> list[int]:
    """The batch sizes the limit's turns measure at ``concurrency``: batch 1 where the target
    is latency (c=1), else the sweep's best few."""
    if concurrency == 1:
        return [sweep["latency_batch"]]
    rows = sorted(sweep["by_batch"], key=lambda row: -row["images_per_s"])
    return [row["batch"] for row in rows[:LIMIT_CANDIDATES]]


def combine_limit(turns: list[dict], concurrency: int) -> dict:
    """The limit's turns at one concurrency as one figure: each batch size's turns combined
    (``_limit_at``), then the batch size with the most images/s in the windows."""
    by_batch = {}
    for turn in turns:
        by_batch.setdefault(turn["batch"], []).append(turn)
    candidates = [_limit_at(batch, batch_turns) for batch, batch_turns in by_batch.items()]
    best = max(candidates, key=lambda candidate: candidate["window_images_per_s"])
    return {"concurrency": concurrency, **best,
            "candidates": [{key: candidate[key] for key in ("batch", "window_images_per_s", "images_per_s")}
                           for candidate in candidates]}


def _limit_at(batch: int, turns: list[dict]) -> dict:
    """One batch size's turns: images and CPU added up (``window_images_per_s`` over the
    windows, as a load client counts a server's turn; ``images_per_s`` over whole calls),
    call latency the median turn's."""
    images, wall, cpu, window_images, window = (
        sum(turn[field] for turn in turns) for field in ("images", "wall_s", "cpu_s", "window_images", "window_s"))
    fields = ("window_images_per_s", "images_per_s", "cpu_s_per_image", "p50_ms")
    return {"batch": batch, "rounds": len(turns), "window_images_per_s": window_images / window,
            "images_per_s": images / wall, "cpu_s_per_image": cpu / images,
            "p50_ms": statistics.median_high(turn["p50_ms"] for turn in turns),
            "turns": [{key: turn[key] for key in fields} for turn in turns]}


def _measure(running: dict[str, servers.Server], probe: limit.Probe, args, client: str, key_file: Path,
             image_file: Path) -> tuple[dict[str, list[dict]], list[dict], list[dict]]:
    """Every server at every concurrency, and the limit, taking turns: A, B, limit, A, B, limit, ...
    Where the request decodes at a DCT scale, the full-decode twin's limit takes its turn
    right after the limit's (the third list; empty otherwise)."""
    seconds = max(1, round(args.duration / args.rounds))
    full_sweep = probe.full_decode["limit"]
    points, limit_points, full_points = {name: [] for name in running}, [], []
    for concurrency in args.concurrency:
        batches = limit_candidates(probe.limit, concurrency)
        full_batches = limit_candidates(full_sweep, concurrency) if full_sweep else []
        turns, limit_turns, full_turns = {name: [] for name in running}, [], []
        for _ in range(args.rounds):
            for name, server in running.items():
                turns[name].append(_run_once(server, running, args, client, key_file, image_file,
                                             concurrency, seconds))
            _settle(running)
            limit_turns.extend(probe.measure(batch, seconds) for batch in batches)
            full_turns.extend(probe.measure(batch, seconds, full_decode=True) for batch in full_batches)
        for name in running:
            point = combine(turns[name], concurrency)
            _progress(f"  {name} c={concurrency}: {point['rps']:.1f} req/s, p99 {point['p99_ms']} ms, "
                      f"errors {point['status_errors'] + point['socket_errors']}")
            points[name].append(point)
        limit_points.append(combine_limit(limit_turns, concurrency))
        _progress(f"  limit in turns: {limit_points[-1]['window_images_per_s']:.1f} images/s at batch "
                  f"{limit_points[-1]['batch']} (of {', '.join(map(str, batches))})")
        if full_turns:
            full_points.append(combine_limit(full_turns, concurrency))
            _progress(f"  full-decode limit in turns: {full_points[-1]['window_images_per_s']:.1f} images/s "
                      f"at batch {full_points[-1]['batch']} (of {', '.join(map(str, full_batches))})")
    return points, limit_points, full_points


def precision_metrics(url: str) -> dict:
    """What a server of ours says it serves in, and what its guard measured (its metrics)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "scoring_precision_info" and sample.value == 1:
                found.update(served=sample.labels["served"], reason=sample.labels["reason"])
            elif sample.name in ("scoring_precision_top1_agreement", "scoring_precision_max_deviation"):
                found[sample.name.removeprefix("scoring_precision_")] = sample.value
    return found


def _start_servers(stack: contextlib.ExitStack, args, model: str, model_dir: Path, keys: Path,
                   image_file: Path) -> dict[str, servers.Server]:
    """Every server of the run on ``model_dir``; capture servers upload to a local Azurite."""
    sink = None
    if set(args.servers) & set(capture_sink.RATES):
        sink, _ = stack.enter_context(capture_sink.running(args.out / "capture-sink"))
    running = {}
    for server_name in args.servers:
        _progress(f"{model}: starting {server_name}")
        log_file = args.out / "logs" / f"{model}-{server_name}.log"
        extra = ({**sink, "SCORING_CAPTURE_SAMPLE_RATE": capture_sink.RATES[server_name]}
                 if server_name in capture_sink.RATES else None)
        running[server_name] = stack.enter_context(servers.running(
            server_name, args.app_root, model_dir, model, keys, log_file, args.ready_timeout, image_file,
            extra_env=extra))
    return running


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for note in args.left_out:
        _progress(note)
    client = load.resolve_client(args.client)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(exist_ok=True)
    image_file = args.out / "request.jpg"
    image_file.write_bytes(images.make_jpeg(*args.image_size))
    results = {
        # the 1-minute load average around the run: on a shared machine, what it ran beside
        "meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
                 "loadavg": {"before": os.getloadavg()[0]},
                 "machine": platform.platform(), "client": client, "command": ["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)],
                 "image": {"width": args.image_size[0], "height": args.image_size[1],
                           "bytes": image_file.stat().st_size},
                 "concurrency": args.concurrency, "duration_s": args.duration, "rounds": args.rounds,
                 "warmup_s": args.warmup, "servers": args.servers, "left_out": args.left_out,
                 # ours reads SCORING_* from this environment (servers.running): a run with
                 # settings other than the defaults says so
                 "ours_settings": {name: value for name, value in sorted(os.environ.items())
                                   if name.startswith("SCORING_")}},
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="bench-keys-") as keys:  # a throwaway key, never printed
        key_file = Path(keys) / "primary"
        key_file.write_text(secrets.token_urlsafe(32))
        key_file.chmod(0o600)
        for name in args.models:
            _progress(f"{name}: building if needed, then measuring the in-process limit")
            with contextlib.ExitStack() as stack:
                probe = stack.enter_context(limit.running(
                    name, args.cache_dir, image_file, args.batch_sizes, args.limit_seconds, servers.BENCH_ROOT,
                    args.out / "logs" / f"{name}-limit.log"))
                model_dir = probe.model_dir
                model_results = results["models"][name] = {"model_dir": str(model_dir), "limit": probe.limit,
                                                            "full_decode": probe.full_decode, "servers": {}}
                running = _start_servers(stack, args, name, model_dir, Path(keys), image_file)
                model_results["precision"] = {server_name: precision_metrics(server.metrics_url)
                                              for server_name, server in running.items() if server.metrics_url}
                (model_results["servers"], model_results["limit_in_turns"],
                 model_results["full_decode_limit_in_turns"]) = _measure(
                    running, probe, args, client, key_file, image_file)
    results["meta"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["meta"]["loadavg"]["after"] = os.getloadavg()[0]
    results["targets"] = report.evaluate(results["models"], results["meta"]["image"])
    json_path, png_path, md_path = report.write(results, args.out)
    print(report.summary(results))
    print(f"\nwrote {json_path}, {png_path} and {md_path} (the table for docs/performance.md)")
    return 0
