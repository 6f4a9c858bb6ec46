"""bench.cold_start end to end on the tiny model: one round, its parts adding up."""
import json

import pytest

from bench import cold_start
from scoring_app.model_store import manifest as mf

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("scan", [False, True], ids=["plain", "scan"])
def test_one_round_splits_the_cold_start(tmp_path, scan):
    argv = ["--rounds", "1", "--model", "tiny", "--out", str(tmp_path)] + ["--scan"] * scan
    assert cold_start.main(argv) == 0
    result = json.loads((tmp_path / "cold_start.json").read_text())
    [round_] = result["rounds"]
    assert result["scan"] is scan
    assert ("scan_s" in round_) is scan and ("scan_max_rss_mib" in round_) is scan
    assert round_.get("scan_inner_s", 0) <= round_.get("scan_s", 0)
    model_dir = next((tmp_path / "models").glob("tiny-*"))
    assert round_["bytes"] == result["model_bytes"] == sum(e.size for e in mf.build(model_dir))
    parts = (round_["fetch_s"] + round_.get("scan_s", 0) + round_["load_s"] + round_["warmup_s"]
             + round_["process_start_s"])
    assert parts == pytest.approx(round_["total_s"], abs=0.01)
    assert min(round_["fetch_s"], round_["load_s"], round_["warmup_s"], round_["process_start_s"]) > 0
    assert round_["reported_fetch_s"] > 0  # the server read the fetch's figures
    assert round_["fetch_mb_per_s"] == pytest.approx(
        round_["bytes"] / 1e6 / round_["fetch_s"], rel=0.05)


def test_rounds_must_be_positive(tmp_path):
    with pytest.raises(SystemExit):
        cold_start.main(["--rounds", "0", "--out", str(tmp_path)])
