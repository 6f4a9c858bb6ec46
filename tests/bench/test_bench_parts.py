"""The benchmark's pure parts: target arithmetic, client output parsing, /proc accounting, CLI."""
import io
import subprocess
import sys
import textwrap

import pytest

from bench import cli, limit, load, procstat, report, servers


def _results(ours_rps: float, baseline_rps: float) -> dict:
    def point(rps, concurrency):
        return {"concurrency": concurrency, "rps": rps, "p50_ms": 10.0, "cpu_s_per_request": 0.003}

    sweep = {"images_per_s": 1.0, "cpu_s_per_image": 1.0, "latency_ms": 1.0}  # not what targets use
    in_turns = [{"concurrency": 1, "batch": 1, "images_per_s": 50.0, "cpu_s_per_image": 0.004, "p50_ms": 10.0},
                {"concurrency": 32, "batch": 16, "window_images_per_s": 100.0, "cpu_s_per_image": 0.002, "p50_ms": 80.0}]
    servers = {"ours": [point(ours_rps, 1), point(ours_rps, 32)], "baseline": [point(baseline_rps, 32)]}
    return {"tiny": {"limit": sweep, "limit_in_turns": in_turns, "servers": servers}}


def _row(rows: list[dict], name: str, model: str = "tiny") -> dict:
    (row,) = [row for row in rows if row["model"] == model and row["target"] == name]
    return row


@pytest.mark.parametrize(("ours", "baseline", "status"), [(200.0, 100.0, "PASS"), (199.0, 100.0, "FAIL")])
def test_throughput_target_passes_at_its_threshold(ours, baseline, status):
    row = _row(report.evaluate(_results(ours, baseline)), "ours / baseline throughput, c=32")
    assert row["ratio"] == pytest.approx(ours / baseline) and row["status"] == status


def test_at_most_target_fails_above_its_threshold():
    row = _row(report.evaluate(_results(200.0, 100.0)), "server CPU per request / model CPU per image, c=32")
    assert row["ratio"] == pytest.approx(1.5) and row["status"] == "PASS"
    results = _results(200.0, 100.0)
    results["tiny"]["servers"]["ours"][1]["cpu_s_per_request"] = 0.0031
    row = _row(report.evaluate(results), "server CPU per request / model CPU per image, c=32")
    assert row["status"] == "FAIL"


def test_targets_without_their_figures_are_not_applicable():
    rows = report.evaluate(_results(200.0, 100.0))
    assert _row(rows, "c=1 p50 ours / baseline")["status"] == "n/a"  # baseline not run at c=1
    assert {row["status"] for row in rows if row["model"] == "resnet50"} == {"n/a"}
    results = _results(200.0, 100.0)
    del results["tiny"]["limit_in_turns"][1]  # the limit took no turn at c=32: no CPU target
    row = _row(report.evaluate(results), "server CPU per request / model CPU per image, c=32")
    assert row["status"] == "n/a"


PHOTO = {"width": 4032, "height": 3024, "bytes": 3_700_000}


def _photo_results(ours: float, triton: float | None, kserve: float | None) -> dict:
    def point(rps):
        return [{"concurrency": 8, "rps": rps, "p50_ms": 100.0, "cpu_s_per_request": 0.05}]

    servers = {"ours": point(ours), **({"triton": point(triton)} if triton else {}),
               **({"kserve": point(kserve)} if kserve else {})}
    # the served graph's limit (DCT-scaled decode) and its full-decode twin's, in the same turns
    in_turns = [{"concurrency": 8, "batch": 8, "window_images_per_s": 60.0, "cpu_s_per_image": 0.03, "p50_ms": 130.0}]
    full_in_turns = [{"concurrency": 8, "batch": 4, "window_images_per_s": 40.0, "cpu_s_per_image": 0.05,
                      "p50_ms": 100.0}]
    return {"tiny": {"limit": {}, "full_decode": {"ratio": 8}, "limit_in_turns": in_turns,
                     "full_decode_limit_in_turns": full_in_turns, "servers": servers}}


@pytest.mark.parametrize(("triton", "kserve", "ratio", "status"),
                         [(30.0, 20.0, 48.0 / 30.0, "PASS"), (20.0, 31.0, 48.0 / 31.0, "FAIL"),
                          (None, 29.0, 48.0 / 29.0, "PASS"), (None, None, None, "n/a")])
def test_the_photo_target_divides_by_the_best_peer_of_the_run(triton, kserve, ratio, status):
    row = _row(report.evaluate(_photo_results(48.0, triton, kserve), PHOTO), "photo: ours / best peer throughput, c=8")
    assert row["status"] == status and row["ratio"] == (None if ratio is None else pytest.approx(ratio))


def test_photo_targets_are_judged_on_photo_runs_only_and_default_ones_elsewhere():
    photo, default = _photo_results(48.0, 30.0, 20.0), _results(200.0, 100.0)
    assert _row(report.evaluate(photo, PHOTO), "photo: served / full-decode in-process limit, c=8")["ratio"] == pytest.approx(1.2)
    assert _row(report.evaluate(photo, PHOTO), "photo: served / full-decode in-process limit, c=8")["status"] == "PASS"
    assert _row(report.evaluate(photo, {**PHOTO, "height": 2976}), "photo: ours / best peer throughput, c=8")["status"] == "n/a"
    assert _row(report.evaluate(default, PHOTO), "ours / baseline throughput, c=32")["status"] == "n/a"
    assert _row(report.evaluate(default, {"width": 224, "height": 224}), "ours / baseline throughput, c=32")["status"] == "PASS"
    assert _row(report.evaluate(photo), "photo: ours / best peer throughput, c=8")["status"] == "n/a"


def test_the_photo_target_divides_by_the_full_decode_limit_and_is_na_without_it():
    photo = _photo_results(48.0, 30.0, 20.0)
    row = _row(report.evaluate(photo, PHOTO), "photo: served / full-decode in-process limit, c=8")
    assert row["ratio"] == pytest.approx(48.0 / 40.0)  # not 48 / 60, the served graph's limit
    del photo["tiny"]["full_decode_limit_in_turns"]
    row = _row(report.evaluate(photo, PHOTO), "photo: served / full-decode in-process limit, c=8")
    assert row["status"] == "n/a"


def _markdown_run() -> dict:
    results = {"meta": {"started": "2026-12-07T05:00:00+0000", "finished": "2026-12-07T05:09:00+0000",
                        "machine": "Linux-test", "cpus": 2, "client": "wrk", "loadavg": {"before": 0.5, "after": 1.5},
                        "image": {**PHOTO, "bytes": 3697957},
                        "command": ["python", "-m", "bench", "--image-size", "4032x3024"], "ours_settings": {}},
               "models": _photo_results(48.0, 30.0, 20.0)}
    for points in results["models"]["tiny"]["servers"].values():
        for point in points:
            point.update(status_errors=0, socket_errors=0, p99_ms=300.0)
    results["targets"] = report.evaluate(results["models"], results["meta"]["image"])
    return results


def test_the_markdown_table_names_the_run_and_sets_each_figure_against_both_limits():
    text = report.markdown(_markdown_run())
    assert "2026-12-07T05:00:00+0000" in text and "Linux-test, 2 CPUs" in text and "3,697,957 bytes" in text
    assert "```sh\npython -m bench --image-size 4032x3024\n```" in text
    assert "| ours | 8 | 48.0 | 0.80x | 1.20x | 100.0 | 300.0 | 50.00 |" in text
    assert "| full-decode in-process limit (batch 4) | 8 | 40.0 | 0.67x | 1.00x |" in text
    assert "| tiny | photo: served / full-decode in-process limit, c=8 | 1.20 | >= 1.2 | PASS |" in text
    assert "| tiny | photo: ours / best peer throughput, c=8 | 1.60 | >= 1.6 | PASS |" in text
    assert "c=32" not in text  # targets this run could not judge are left out


def test_limit_targets_use_the_limit_measured_at_the_same_concurrency():
    """Not the first sweep's figures (all 1.0 here), and nothing from another concurrency."""
    resnet = {
        "limit": {"images_per_s": 1.0, "best_batch": 16, "cpu_s_per_image": 1.0, "latency_batch": 1, "latency_ms": 1.0},
        "limit_in_turns": [{"concurrency": 1, "batch": 1, "images_per_s": 11.0, "cpu_s_per_image": 0.15, "p50_ms": 90.0},
                           {"concurrency": 8, "batch": 16, "window_images_per_s": 16.0, "images_per_s": 17.0,
                            "cpu_s_per_image": 0.11, "p50_ms": 950.0}],
        "servers": {"ours": [{"concurrency": 1, "rps": 10.0, "p50_ms": 99.0}, {"concurrency": 8, "rps": 15.2, "p50_ms": 500.0}]},
    }
    rows = report.evaluate({"resnet50": resnet})
    assert _row(rows, "served / in-process limit, c=8", "resnet50")["ratio"] == pytest.approx(0.95)
    assert _row(rows, "c=1 p50 / model batch-1 latency", "resnet50")["ratio"] == pytest.approx(1.1)
    assert _row(rows, "served / in-process limit, c=32", "resnet50")["status"] == "n/a"


def test_wrk_result_line_is_found_among_its_own_output():
    stdout = textwrap.dedent("""\
        Running 2s test @ http://127.0.0.1:1/score
          1 threads and 2 connections
        BENCH_RESULT {"requests": 40, "duration_s": 2.0, "status_errors": 1, "socket_errors": 0, "p50_ms": 5.0, "p99_ms": 9.5}
        Requests/sec:     20.00
        """)
    assert load.parse_output("wrk", stdout)["p99_ms"] == 9.5
    with pytest.raises(RuntimeError, match="BENCH_RESULT"):
        load.parse_output("wrk", "Running 2s test\n")


def test_tree_cpu_counts_descendants():
    """A child spawns a grandchild that burns 0.3 s of CPU and then waits: the tree has it all."""
    grandchild = "import sys,time\nwhile time.process_time() < 0.3: pass\nprint('burnt', flush=True)\nsys.stdin.read()"
    child = (f"import subprocess,sys\np = subprocess.Popen([sys.executable, '-c', {grandchild!r}], "
             "stdout=sys.stdout, stdin=subprocess.PIPE)\nsys.stdin.read()\np.stdin.close()\np.wait()")
    process = subprocess.Popen([sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "burnt\n"
        assert procstat.tree_cpu_seconds(process.pid) >= 0.29  # clock ticks are 10 ms
    finally:
        process.stdin.close()
        process.wait()
    with pytest.raises(ProcessLookupError):
        procstat.tree_cpu_seconds(process.pid)


def test_wait_idle_returns_once_the_tree_stops_burning_cpu():
    """CPU-seconds read every 0.25 s: busy (a core each read), then idle; then a timeout."""
    readings = iter([0.0, 0.25, 0.5, 0.75, 0.751, 9.0])
    assert procstat.wait_idle(1, read=lambda pid: next(readings), sleep=lambda s: None) == 1.0
    always_busy = iter(range(1000))
    assert procstat.wait_idle(1, timeout=2, read=lambda pid: next(always_busy), sleep=lambda s: None) == 2.0


@pytest.mark.parametrize("argv", [["--models", "vgg"], ["--servers", "nginx"], ["--concurrency", "0"],
                                  ["--image-size", "224"], ["--duration", "0"], ["--client", "curl"],
                                  ["--rounds", "0"]])
def test_bad_options_stop_with_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.parse_args(argv)
    assert stopped.value.code == 2 and "error:" in capsys.readouterr().err


def test_turns_combine_into_one_figure():
    def turn(ok, seconds, p50, p99, cpu):
        return {"requests": ok + 1, "ok": ok, "status_errors": 1, "socket_errors": 0, "duration_s": seconds,
                "server_cpu_s": cpu, "p50_ms": p50, "p99_ms": p99, "rps": ok / seconds}

    point = cli.combine([turn(100, 5.0, 9.0, 30.0, 0.4), turn(300, 5.0, 3.0, 10.0, 0.8),
                         turn(200, 5.0, 5.0, 20.0, 0.6)], concurrency=8)
    assert point["concurrency"] == 8 and point["rounds"] == 3
    assert point["ok"] == 600 and point["requests"] == 603 and point["status_errors"] == 3
    assert point["rps"] == pytest.approx(600 / 15.0)
    assert point["p50_ms"] == 5.0 and point["p99_ms"] == 30.0  # median turn's p50, worst turn's p99
    assert point["cpu_s_per_request"] == pytest.approx(1.8 / 600)
    assert [t["rps"] for t in point["turns"]] == [20.0, 60.0, 40.0]


def test_limit_turns_combine_over_their_windows_and_keep_the_best_batch():
    def turn(batch, calls, window_calls, window, wall, cpu, p50):
        return {"batch": batch, "images": batch * calls, "wall_s": wall, "cpu_s": cpu, "p50_ms": p50,
                "window_images": batch * window_calls, "window_s": window,
                "window_images_per_s": batch * window_calls / window, "images_per_s": batch * calls / wall,
                "cpu_s_per_image": cpu / (batch * calls)}

    point = cli.combine_limit([turn(16, 5, 4, 5.0, 5.5, 9.0, 900.0), turn(8, 5, 5, 5.0, 5.1, 5.0, 500.0),
                               turn(16, 6, 5, 5.0, 6.0, 10.0, 1000.0), turn(8, 6, 5, 5.0, 5.6, 5.0, 480.0),
                               turn(16, 5, 5, 5.0, 5.0, 8.0, 950.0), turn(8, 5, 5, 5.0, 5.2, 5.0, 490.0)],
                              concurrency=32)
    # batch 16: 14 calls x 16 in 15 s of windows = 14.93/s (16 x 16 / 16.5 s = 15.5/s over whole calls);
    # batch 8: 15 x 8 / 15 s = 8/s
    assert point["concurrency"] == 32 and point["batch"] == 16 and point["rounds"] == 3
    assert point["window_images_per_s"] == pytest.approx(14 * 16 / 15.0)
    assert point["images_per_s"] == pytest.approx(16 * 16 / 16.5)
    assert point["cpu_s_per_image"] == pytest.approx(27.0 / (16 * 16))
    assert point["p50_ms"] == 950.0
    assert [candidate["batch"] for candidate in point["candidates"]] == [16, 8]
    assert point["candidates"][1]["window_images_per_s"] == pytest.approx(8.0)
    # the best by the windows' count, not by whole calls
    slow_window = cli.combine_limit([turn(16, 6, 3, 5.0, 5.0, 9.0, 900.0), turn(8, 10, 10, 5.0, 5.0, 5.0, 500.0)],
                                    concurrency=8)
    assert slow_window["batch"] == 8 and slow_window["window_images_per_s"] == pytest.approx(16.0)


def test_limit_counts_a_turn_as_a_load_client_would(monkeypatch):
    """Calls of 0.4 s in a window of 1 s: the third ends past it. Whole calls: 3 calls in
    1.2 s; the window: 2 calls in 1 s. A fake clock, so nothing here depends on speed."""
    clock = {"now": 0.0}

    def infer(**inputs):
        clock["now"] += 0.4

    monkeypatch.setattr(limit.time, "perf_counter", lambda: clock["now"])
    row = limit.measure_batch(infer, "images", b"jpeg", batch=4, min_seconds=1.0)
    assert row["calls"] == 3 and row["images"] == 12 and row["wall_s"] == pytest.approx(1.2)
    assert row["window_images"] == 8 and row["window_images_per_s"] == pytest.approx(8.0)
    assert row["images_per_s"] == pytest.approx(10.0)


def test_limit_candidates_are_the_sweeps_best_few_or_batch_1_for_latency():
    rates = {1: 11.0, 2: 13.0, 4: 14.1, 8: 16.1, 16: 16.6, 32: 15.9}
    sweep = {"latency_batch": 1, "by_batch": [{"batch": b, "images_per_s": r} for b, r in rates.items()]}
    assert cli.limit_candidates(sweep, concurrency=1) == [1]
    assert cli.limit_candidates(sweep, concurrency=8) == [16, 8]
    sweep["by_batch"] = sweep["by_batch"][:2]  # a sweep over batch 1 and 2 only
    assert cli.limit_candidates(sweep, concurrency=32) == [2, 1]


def test_quick_fills_only_what_was_not_given():
    args = cli.parse_args(["--quick", "--concurrency", "4"])
    assert args.concurrency == [4] and args.duration == cli.QUICK["duration"]
    assert args.cache_dir == args.out / "models"


@pytest.mark.parametrize("peer", sorted(servers.PEERS))
def test_a_peer_is_left_out_and_said_so_when_its_venv_is_missing(monkeypatch, tmp_path, peer):
    python = tmp_path / "python"
    python.write_text("")
    for name, found in servers.PEERS.items():
        monkeypatch.setenv(found.python_variable, str(tmp_path / "no-python" if name == peer else python))
    args = cli.parse_args([])
    assert args.servers == [name for name in servers.SERVER_NAMES
                            if name != peer and name not in servers.OPT_IN]
    (note,) = args.left_out
    assert note.startswith(f"left out {peer}: ") and servers.PEERS[peer].install in note
    with pytest.raises(SystemExit):
        cli.parse_args(["--servers", f"ours,{peer}"])
    monkeypatch.setenv(servers.PEERS[peer].python_variable, str(python))
    args = cli.parse_args([])
    assert args.servers == ["baseline", "ours", "mixed", "triton", "kserve"] and args.left_out == []


def test_capture_servers_run_only_when_named():
    """capture100 / capture5 need a local Azurite (bench/capture_sink.py): opt-in, and then
    ours with capture on at those rates."""
    from bench import capture_sink
    assert not set(cli.parse_args([]).servers) & set(servers.OPT_IN)
    args = cli.parse_args(["--servers", "ours,capture100,capture5"])
    assert args.servers == ["ours", "capture100", "capture5"]
    assert capture_sink.RATES == {"capture100": "1", "capture5": "0.05"}


def test_tritons_request_is_one_bytes_tensor_in_the_binary_extension():
    import json
    import struct

    from bench.triton_peer import INPUT, OUTPUT, v2_body
    body, header_length = v2_body(b"\xff\xd8\xffjpeg")
    header, raw = json.loads(body[:header_length]), body[header_length:]
    (tensor,) = header["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == (INPUT, "BYTES", [1, 1])
    assert tensor["parameters"]["binary_data_size"] == len(raw)
    assert struct.unpack("<I", raw[:4]) == (len(raw) - 4,) and raw[4:] == b"\xff\xd8\xffjpeg"
    assert header["outputs"] == [{"name": OUTPUT, "parameters": {"binary_data": False}}]


def test_kserves_request_is_one_base64_instance_as_its_image_examples_send():
    import base64
    import json

    from bench.kserve_peer import decode_instances, v1_body
    image = b"\xff\xd8\xffjpeg"
    payload = json.loads(v1_body(image))
    assert payload == {"instances": [{"image": {"b64": base64.b64encode(image).decode()}}]}
    assert decode_instances(payload) == [image]
    assert decode_instances({"instances": payload["instances"] * 2}) == [image, image]


@pytest.mark.parametrize("payload", [b"raw bytes", {}, {"instances": []}, {"instances": {"image": "x"}},
                                     {"instances": [{"image": "eA=="}]}, {"instances": [{"b64": "eA=="}]},
                                     {"instances": [{"image": {"b64": "not base64!"}}]}])
def test_the_kserve_peer_refuses_what_is_not_base64_image_instances(payload):
    from bench.kserve_peer import decode_instances
    with pytest.raises(ValueError, match="instance"):
        decode_instances(payload)


def test_precision_metrics_are_read_from_a_servers_metrics(monkeypatch):
    import urllib.request

    text = ('# TYPE scoring_precision_info gauge\n'
            'scoring_precision_info{reason="guard passed",requested="mixed",served="bf16"} 1.0\n'
            '# TYPE scoring_precision_max_deviation gauge\nscoring_precision_max_deviation{served="bf16"} 0.004\n'
            '# TYPE scoring_precision_top1_agreement gauge\nscoring_precision_top1_agreement{served="bf16"} 1.0\n')

    class Answer(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Answer(text.encode()))
    assert cli.precision_metrics("http://x/metrics") == {
        "served": "bf16", "reason": "guard passed", "max_deviation": 0.004, "top1_agreement": 1.0}
