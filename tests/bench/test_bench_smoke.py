"""The whole benchmark, run for a few seconds on the tiny model, so that it cannot rot.

This checks that every stage runs and that the figures it writes are complete and sane; it
asserts nothing about speed (that is what the benchmark itself reports, as ratios).
"""
import contextlib
import io
import json

import pytest

from bench import cli, report

# The servers driven here: the 2019-style baseline, ours, and ours at SCORING_PRECISION=mixed
# (Triton is optional, with a venv of its own: not on the test path).
SMOKE_SERVERS = ("baseline", "ours", "mixed")
CONCURRENCY = 2
BATCH_SIZES = (1, 2)
ROUNDS = 2  # turns each server takes, alternating
OVERRIDE = ("SCORING_MODEL_CALLS", "1")  # a setting of ours away from its default (auto: 2 on a CPU)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run the harness once; return its JSON, its PNG's bytes and what it printed."""
    out = tmp_path_factory.mktemp("bench")
    argv = ["--models", "tiny", "--servers", ",".join(SMOKE_SERVERS), "--client", "python",
            "--concurrency", str(CONCURRENCY), "--duration", "2", "--rounds", str(ROUNDS), "--warmup", "1",
            "--batch-sizes", ",".join(map(str, BATCH_SIZES)), "--limit-seconds", "0.3",
            "--image-size", "64x48", "--out", str(out)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.MonkeyPatch.context() as env:
        env.setenv(OVERRIDE[0], OVERRIDE[1])  # ours reads it; the run must record it
        assert cli.main(argv) == 0
    return {
        "out": out,
        "results": json.loads((out / "results.json").read_text()),
        "png": (out / "results.png").read_bytes(),
        "printed": printed.getvalue(),
    }


@pytest.mark.slow
def test_limit_is_measured_at_every_batch_size(run):
    limit = run["results"]["models"]["tiny"]["limit"]
    assert [row["batch"] for row in limit["by_batch"]] == list(BATCH_SIZES)
    assert limit["best_batch"] in BATCH_SIZES
    assert limit["images_per_s"] == max(row["images_per_s"] for row in limit["by_batch"])
    assert limit["latency_batch"] == 1 and limit["latency_ms"] > 0
    assert all(row["calls"] >= 3 and 0 < row["cpu_s_per_image"] < 1 for row in limit["by_batch"])


@pytest.mark.slow
def test_limit_is_measured_again_in_turns_with_the_servers(run):
    """At the sweep's best two batch sizes, once a round each, keeping the best."""
    model = run["results"]["models"]["tiny"]
    (point,) = model["limit_in_turns"]
    measured = [candidate["batch"] for candidate in point["candidates"]]
    assert point["concurrency"] == CONCURRENCY and model["limit"]["best_batch"] in measured
    assert point["window_images_per_s"] == max(candidate["window_images_per_s"] for candidate in point["candidates"])
    assert point["rounds"] == ROUNDS and len(point["turns"]) == ROUNDS
    assert 0 < point["window_images_per_s"] and 0 < point["images_per_s"] and 0 < point["cpu_s_per_image"] < 1
    assert "limit in turns at c=2" in run["printed"]


@pytest.mark.slow
@pytest.mark.parametrize("server", SMOKE_SERVERS)
def test_each_server_answers_every_request(run, server):
    (point,) = run["results"]["models"]["tiny"]["servers"][server]
    assert point["concurrency"] == CONCURRENCY
    assert point["rounds"] == ROUNDS and len(point["turns"]) == ROUNDS
    assert point["requests"] > 0 and point["ok"] == point["requests"]
    assert point["status_errors"] == 0 and point["socket_errors"] == 0
    assert point["rps"] == pytest.approx(point["ok"] / point["duration_s"])
    assert 0 < point["p50_ms"] <= point["p99_ms"]
    assert point["server_cpu_s"] > 0
    assert point["cpu_s_per_request"] == pytest.approx(point["server_cpu_s"] / point["ok"])


@pytest.mark.slow
def test_settings_given_to_ours_are_recorded_and_printed(run):
    assert run["results"]["meta"]["ours_settings"] == dict([OVERRIDE])
    assert f"ours ran with {OVERRIDE[0]}={OVERRIDE[1]} " in run["printed"]
    log = (run["out"] / "logs" / "tiny-ours.log").read_text()
    assert "up to 1 model calls at once" in log  # and ours did read it


@pytest.mark.slow
def test_every_target_is_reported_and_outputs_are_written(run):
    targets = run["results"]["targets"]
    assert [(row["model"], row["target"]) for row in targets] == [(t.model, t.name) for t in report.TARGETS]
    assert all(row["status"] in ("PASS", "FAIL", "n/a") for row in targets)
    assert run["results"]["meta"]["client"] == "python"
    assert run["png"].startswith(b"\x89PNG\r\n\x1a\n")
    for server in SMOKE_SERVERS:
        assert f"  {server} " in run["printed"]
    assert "targets:" in run["printed"]
    table = (run["out"] / "results.md").read_text()
    assert " ".join(run["results"]["meta"]["command"]) in table
    assert all(f"| {server} | {CONCURRENCY} | " in table for server in SMOKE_SERVERS)


@pytest.mark.slow
def test_a_request_decoded_at_ratio_1_measures_no_full_decode_twin(run):
    """64x48 is under twice the input: both graphs would do the same work."""
    model = run["results"]["models"]["tiny"]
    assert model["full_decode"] == {"ratio": 1, "model_dir": None, "limit": None}
    assert model["full_decode_limit_in_turns"] == []
    assert "full-decode limit in turns" not in run["printed"]


@pytest.mark.slow
def test_mixed_says_what_it_serves_in_and_what_its_guard_measured(run):
    from scoring_app.model import precision
    import tensorflow as tf

    support = precision.detect(tf)
    found = run["results"]["models"]["tiny"]["precision"]
    assert found["ours"] == {"served": "fp32", "reason": "SCORING_PRECISION=fp32"}  # no guard figures
    assert found["mixed"]["served"] in (support.kind, "fp32")
    if support.option is None:
        assert found["mixed"] == {"served": "fp32", "reason": support.why_not}
    else:  # measured on the warm-up image: one image, agreement 0 or 1
        assert found["mixed"]["top1_agreement"] in (0.0, 1.0) and found["mixed"]["max_deviation"] >= 0
        assert found["mixed"]["reason"] in ("guard passed", "guard failed")
    assert "  mixed precision: served " in run["printed"]


@pytest.mark.slow
def test_baseline_speaks_the_old_clients_protocol(run, tmp_path, monkeypatch):
    """The load only compares like with like if the baseline checks keys and images as ours does."""
    from bench import images
    from bench.baseline.app import TOP_K, create_app

    (tmp_path / "primary").write_text("the-key\n")
    monkeypatch.setenv("SCORING_MODEL_DIR", run["results"]["models"]["tiny"]["model_dir"])
    monkeypatch.setenv("SCORING_API_KEYS_DIR", str(tmp_path))
    client = create_app().test_client()
    good = {"Authorization": "Bearer the-key"}

    answer = client.post("/score", data=images.make_jpeg(32, 32), headers=good)
    assert answer.status_code == 200 and len(answer.json["predictions"]) == TOP_K
    assert client.post("/score", data=b"not an image", headers=good).status_code == 400
    assert client.post("/score", data=b"", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/score", data=b"").status_code == 401
    assert client.get("/score").status_code == 405
