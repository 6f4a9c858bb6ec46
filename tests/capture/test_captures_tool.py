"""``python -m scoring_tools.captures`` against Azurite: records written by the server's own
sink and uploader, read back, summarised, written for pandas, and two deployments joined."""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from scoring_app.capture import Entry
from scoring_app.capture.sink import Capture
from scoring_app.capture.uploader import BlobUploader
from scoring_tools import captures as tool
from scoring_tools.local import ROOT
from tests.app import media
from tests.capture.standins import Model
from tests.model_store.azurite import TENANT, Token
from tests.model_store.fake_entra import FakeEntra

pytestmark = pytest.mark.slow
JPEG = media.jpeg(media.RED)


def _prediction(label, score):
    other = "red" if label == "blue" else "blue"
    return [{"label": label, "index": 0, "score": score}, {"label": other, "index": 1, "score": 1 - score}]


def _write(azurite, url, deployment, rows, keep_images=False):
    """rows: (request_id, status, latency_s, top label, its score), captured now."""
    capture = Capture(BlobUploader(url, Token(), connection_verify=str(azurite.cert)),
                      deployment=deployment, model={"name": "colours", "version": "2", "digest": "d" * 64},
                      rank=Model().postprocess, keep_images=keep_images, buffer_bytes=1 << 22,
                      block_bytes=1 << 20, block_seconds=3600)
    for request_id, status, latency, label, score in rows:
        capture.offer(Entry(time.time(), request_id, "score", "/score", status, latency,
                            {"images": [JPEG], "predictions": [_prediction(label, score)]}))
    capture.flush(30)


@pytest.fixture()
def captured(azurite):
    container = azurite.container(f"captures{uuid.uuid4().hex[:8]}")
    container.create_container()
    url = f"{azurite.account_url}/{container.container_name}"
    _write(azurite, url, "blue", [(f"r{i}", 200, 0.010 + i / 1000, "blue", 0.9) for i in range(8)],
           keep_images=True)
    _write(azurite, url, "shadow", [(f"r{i}", 200, 0.02, "blue", 0.9) for i in range(5)]
           + [("r5", 200, 0.02, "red", 0.7), ("r6", 200, 0.02, "blue", 0.6), ("x1", 200, 0.02, "blue", 0.9)])
    yield url
    container.close()


def _args(url, **kw):
    defaults = dict(stack=None, capture_uri=url, deployment="blue", since="2h", until=None,
                    out=None, join=None, threshold=0.1)
    return argparse.Namespace(**{**defaults, **kw})


def test_records_are_read_back_summarised_and_written_for_pandas(azurite, captured, tmp_path, capsys):
    import pandas
    status = tool.run(_args(captured, out=tmp_path / "blue"), credential=Token(),
                      connection_verify=str(azurite.cert))
    printed = capsys.readouterr().out
    assert status == tool.OK
    assert "blue: 8 records" in printed and "status: 200 x8" in printed
    assert "latency ms: p50 14.0" in printed and "top classes: blue x8" in printed
    frame = pandas.read_json(tmp_path / "blue" / "records.jsonl", lines=True)
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(8))
    assert set(frame["top1_label"]) == {"blue"} and set(frame["format"]) == {"jpeg"}
    assert all((tmp_path / "blue" / p).read_bytes() == JPEG for p in frame["image_path"])
    # as captured, JSON Lines
    assert tool.run(_args(captured, out=tmp_path / "blue.jsonl"), credential=Token(),
                    connection_verify=str(azurite.cert)) == tool.OK
    raw = pandas.read_json(tmp_path / "blue.jsonl", lines=True)
    assert len(raw) == 8 and base64.b64decode(raw["inputs"][0][0]["image_b64"]) == JPEG


def test_a_window_before_the_records_finds_none(azurite, captured, capsys):
    until = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).isoformat()
    assert tool.run(_args(captured, since="3h", until=until), credential=Token(),
                    connection_verify=str(azurite.cert)) == tool.NO_DATA
    assert "blue: 0 records" in capsys.readouterr().out


def test_join_shows_where_shadow_and_live_disagree(azurite, captured, tmp_path, capsys):
    out = tmp_path / "disagreements.jsonl"
    status = tool.run(_args(captured, join="shadow", out=out), credential=Token(),
                      connection_verify=str(azurite.cert))
    printed = capsys.readouterr().out
    assert status == tool.DISAGREE
    assert "joined by request id: 7 (only blue: 1, only shadow: 1)" in printed
    found = {d["request_id"]: d for d in map(json.loads, out.read_text().splitlines())}
    assert set(found) == {"r5", "r6"}  # top-1 differs; a score moved 0.3
    assert found["r5"]["top1"] == ["blue", "red"]
    assert found["r6"]["top1"] == ["blue", "blue"] and found["r6"]["max_score_change"] == pytest.approx(0.3)
    # a looser threshold keeps only the top-1 change
    tool.run(_args(captured, join="shadow", out=out, threshold=0.5), credential=Token(),
             connection_verify=str(azurite.cert))
    assert [json.loads(x)["request_id"] for x in out.read_text().splitlines()] == ["r5"]


def test_the_command_signs_in_with_default_azure_credential(azurite, captured, tmp_path):
    """DefaultAzureCredential, as on a laptop or in CI: here its workload identity link."""
    token_file = tmp_path / "token"
    token_file.write_text("ci-token")
    client_id = "22222222-3333-4444-5555-666666666666"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "SCORING_"))}
    with FakeEntra(azurite.cert, azurite.key, client_id, "ci-token") as entra:
        done = subprocess.run(
            [sys.executable, "-m", "scoring_tools.captures", "--capture-uri", captured,
             "--deployment", "shadow", "--since", "1h"], cwd=ROOT, capture_output=True, text=True,
            timeout=120, env={**clean, "AZURE_AUTHORITY_HOST": entra.authority, "AZURE_TENANT_ID": TENANT,
                              "AZURE_CLIENT_ID": client_id, "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
                              "REQUESTS_CA_BUNDLE": str(azurite.cert)})
    assert done.returncode == 0, done.stderr
    assert "shadow: 8 records" in done.stdout and "top classes: blue x7, red x1" in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["--capture-uri", "https://a.blob.core.windows.net/captures", "--deployment", "g", "--since", "soon"],
     "captures: --since 'soon': use a span (30m, 2h, 3d) or an ISO time"),
    (["--stack", "nosuchstack", "--deployment", "g"], "captures: "),
])
def test_bad_input_is_one_line_and_exit_2(argv, message):
    done = subprocess.run([sys.executable, "-m", "scoring_tools.captures", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": os.environ.get("PATH", "")})
    assert done.returncode == tool.NO_DATA
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(message)


def test_hour_prefixes_cover_the_window():
    since = dt.datetime(2026, 12, 31, 22, 30, tzinfo=dt.timezone.utc)
    assert tool.hour_prefixes("g", since, since + dt.timedelta(hours=2)) == [
        "g/2026/12/31/22/", "g/2026/12/31/23/", "g/2027/01/01/00/"]
