"""Payload capture through the real app with a stand-in model and in-memory uploaders:
the request id, sampling, what a record holds, blocks and partitions, and the bound."""
from __future__ import annotations

import base64
import threading

import pytest

from scoring_app.app import create_app
from scoring_app.capture import Entry, records
from scoring_app.capture.sink import Capture
from scoring_app.capture.wsgi import CaptureMiddleware
from tests.app import media
from tests.capture.standins import MemoryUploader, Model, app_with_capture, sample

JPEG = media.jpeg(media.RED)


@pytest.fixture()
def uploader():
    return MemoryUploader()


def test_the_request_id_is_the_one_sent_or_ours_and_is_answered(tmp_path, uploader):
    app, service = app_with_capture(tmp_path, uploader)
    client = app.test_client()
    sent = client.post("/score", data=JPEG, headers={"x-request-id": "edge-1234"})
    assert sent.status_code == 200 and sent.headers["x-request-id"] == "edge-1234"
    ours = client.post("/score", data=JPEG)
    minted = ours.headers["x-request-id"]
    assert len(minted) == 32 and minted != client.post("/score", data=JPEG).headers["x-request-id"]
    # not a short printable token (a space, too long): replaced, never echoed
    for bad in ("two words", "x" * 129):
        assert client.post("/score", data=JPEG, headers={"x-request-id": bad}).headers[
            "x-request-id"] != bad
    v2 = client.post("/v2/models/model/infer", headers={"x-request-id": "edge-5678"}, json={
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1],
                    "data": [base64.b64encode(JPEG).decode()]}]})
    assert v2.status_code == 200 and v2.headers["x-request-id"] == "edge-5678"
    assert "x-request-id" not in client.get("/readyz").headers  # only scoring routes
    service.capture.flush(5)
    assert {r["request_id"] for r in uploader.records()} >= {"edge-1234", "edge-5678", minted}


def test_capture_off_adds_nothing(tmp_path):
    app = create_app({"model_dir": str(tmp_path), "auth": "disabled"}, model=Model())
    service = app.extensions["scoring"]
    assert service.batcher.ready.wait(30) and service.capture is None
    assert "x-request-id" not in app.test_client().post("/score", data=JPEG).headers


def test_sampling_follows_the_request_id_so_live_and_shadow_pick_the_same():
    live = CaptureMiddleware(None, None, 0.05, rng=lambda: 0.0)
    shadow = CaptureMiddleware(None, None, 0.05, rng=lambda: 1.0)
    ids = [f"req-{i}" for i in range(20000)]
    picked = [i for i in ids if live.sampled(i, sent=True)]
    assert picked == [i for i in ids if shadow.sampled(i, sent=True)]
    assert 0.04 < len(picked) / len(ids) < 0.06
    assert not any(CaptureMiddleware(None, None, 0.0).sampled(i, True) for i in ids[:1000])
    assert all(CaptureMiddleware(None, None, 1.0).sampled(i, True) for i in ids[:1000])
    # an id of ours: the random draw decides
    assert live.sampled("ours", sent=False) and not shadow.sampled("ours", sent=False)


@pytest.mark.parametrize("keep", [False, True])
def test_a_record_holds_hash_size_format_and_the_image_only_when_asked(tmp_path, uploader, keep):
    app, service = app_with_capture(tmp_path, uploader, capture_images=keep)
    png = media.png16(media.GREEN)
    answer = app.test_client().post("/score", json={"instances": [
        {"b64": base64.b64encode(JPEG).decode()}, {"b64": base64.b64encode(png).decode()}]},
        headers={"x-request-id": "r1"})
    assert answer.status_code == 200
    service.capture.flush(5)
    [record] = uploader.records()
    assert record["deployment"] == "green" and record["protocol"] == "score"
    assert record["status"] == 200 and record["model"] == {"name": "model", "version": "1", "digest": ""}
    assert record["predictions"] == answer.json["predictions"]
    import hashlib
    assert [i["sha256"] for i in record["inputs"]] == [hashlib.sha256(x).hexdigest() for x in (JPEG, png)]
    assert [i["bytes"] for i in record["inputs"]] == [len(JPEG), len(png)]
    assert [i["format"] for i in record["inputs"]] == ["jpeg", "png"]
    kept = [base64.b64decode(i["image_b64"]) for i in record["inputs"] if "image_b64" in i]
    assert kept == ([JPEG, png] if keep else [])


def test_a_failed_request_is_captured_with_its_status(tmp_path, uploader):
    app, service = app_with_capture(tmp_path, uploader)
    assert app.test_client().post("/score", data=b"x", headers={
        "Content-Type": "text/plain", "x-request-id": "bad"}).status_code == 415
    service.capture.flush(5)
    [record] = uploader.records()
    assert (record["request_id"], record["status"], record["inputs"]) == ("bad", 415, [])


def _capture(uploader, **kw):
    args = dict(deployment="blue", model={"name": "m", "version": "1", "digest": "d"},
                rank=Model().postprocess, keep_images=False, buffer_bytes=1 << 20,
                block_bytes=1 << 20, block_seconds=3600)
    return Capture(uploader, **{**args, **kw})


def _entry(when, image=b"\xff\xd8\xff" + b"0" * 100):
    return Entry(when, "id", "score", "/score", 200, 0.001, {"images": [image], "predictions": [[]]})


def test_blocks_are_cut_by_size_and_by_the_hour_and_named_by_partition(uploader):
    capture = _capture(uploader, block_bytes=2000)
    hour = 1_800_000_000 - 1_800_000_000 % 3600  # 2027-01-15T08:00:00Z
    for i in range(20):
        capture.offer(_entry(hour - 10 + i * 0.1))  # the first hundred ten seconds: one hour
    for i in range(20):
        capture.offer(_entry(hour + 1 + i))
    capture.flush(10)
    names = sorted(uploader.blobs)
    assert {n.rsplit("/", 1)[0] for n in names} == {"blue/2027/01/15/07", "blue/2027/01/15/08"}
    assert all(n.endswith(".jsonl") and len(uploader.blobs[n]) <= 2000 for n in names)
    assert len(names) > 2  # cut by size too
    assert sorted(r["time"][11:13] for r in uploader.records()).count("07") == 20
    assert uploader.closed


def test_a_failed_upload_drops_its_block_and_is_counted(uploader):
    capture = _capture(uploader)
    uploader.failing = True
    failures = sample("scoring_capture_upload_failures_total")
    dropped = sample("scoring_capture_dropped_records_total", reason="upload_failed")
    for i in range(7):
        capture.offer(_entry(1_800_000_000 + i))
    capture.flush(10)
    assert uploader.blobs == {}
    assert sample("scoring_capture_upload_failures_total") == failures + 1
    assert sample("scoring_capture_dropped_records_total", reason="upload_failed") == dropped + 7


def test_the_buffer_stays_bounded_while_uploads_hang_and_every_request_is_served(tmp_path, uploader):
    limit = 1 << 20
    app, service = app_with_capture(tmp_path, uploader, capture_buffer_bytes=limit,
                                    capture_block_bytes=1 << 16, capture_block_seconds=0.2)
    uploader.gate.clear()  # the first upload hangs: Blob Storage stopped answering
    image = JPEG + b"\0" * 20000  # trailing bytes after the JPEG's end: still decodable
    dropped = sample("scoring_capture_dropped_records_total", reason="buffer_full")
    statuses, peak = [], [0]
    lock = threading.Lock()

    def client(n):
        c = app.test_client()
        for _ in range(n):
            status = c.post("/score", data=image).status_code
            with lock:
                statuses.append(status)
                peak[0] = max(peak[0], service.capture._held)

    threads = [threading.Thread(target=client, args=(60,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 480
    assert peak[0] <= limit and service.capture._held <= limit
    # while the upload hangs, what does not fit is dropped, not queued: far more than fits
    dropped = sample("scoring_capture_dropped_records_total", reason="buffer_full") - dropped
    assert dropped > 480 // 2
    uploader.gate.set()
    service.capture.flush(10)
    # every record is either dropped and counted, or uploaded once the storage answers
    assert 0 < len(uploader.records()) and len(uploader.records()) + dropped == 480


class Recorder:
    def __init__(self):
        self.entries = []

    def offer(self, entry):
        self.entries.append(entry)


def test_the_request_path_hands_over_references_only(tmp_path):
    """A sampled request leaves an entry holding the very bytes it read and the answer's
    predictions: no hashing or encoding on the request path."""
    app = create_app({"model_dir": str(tmp_path), "auth": "disabled"}, model=Model())
    assert app.extensions["scoring"].batcher.ready.wait(30)
    recorder = Recorder()
    app.wsgi_app = CaptureMiddleware(app.wsgi_app, recorder, 1.0)
    answer = app.test_client().post("/score", data=JPEG, headers={"x-request-id": "r9"})
    [entry] = recorder.entries
    assert entry.slot["images"] == [JPEG] and entry.slot["predictions"] == [answer.json["predictions"]]
    assert (entry.request_id, entry.status, entry.protocol) == ("r9", 200, "score")
    assert entry.cost == records.OVERHEAD_BYTES + len(JPEG)
    app.test_client().get("/healthz")
    assert len(recorder.entries) == 1  # only scoring routes are offered


@pytest.mark.parametrize("name, value, message", [
    ("SCORING_CAPTURE_URI", "http://a.blob.core.windows.net/captures", "must be empty or https://"),
    ("SCORING_CAPTURE_URI", "https://a.blob.core.windows.net/captures?sv=1&sig=x", "no SAS"),
    ("SCORING_CAPTURE_URI", "https://a.blob.core.windows.net/captures/more", "<container>"),
    ("SCORING_CAPTURE_SAMPLE_RATE", "1.5", "between 0 and 1"),
    ("SCORING_CAPTURE_IMAGES", "maybe", "true or false"),
    ("SCORING_CAPTURE_BUFFER_BYTES", "10", "between"),
])
def test_a_bad_capture_setting_is_named(name, value, message):
    from scoring_app import settings
    with pytest.raises(settings.SettingsError, match=f"^{name}=.*{message}"):
        settings.load({name: value})


def test_capture_without_workload_identity_stops_at_start(tmp_path, monkeypatch):
    from scoring_app import settings
    for variable in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(settings.SettingsError, match="SCORING_CAPTURE_URI is set but workload identity"):
        create_app({"model_dir": str(tmp_path), "auth": "disabled",
                    "capture_uri": "https://a.blob.core.windows.net/captures"}, model=Model())


def test_a_flush_budget_past_the_graceful_timeout_stops_gunicorn_at_start(tmp_path):
    import subprocess
    import sys

    from scoring_tools.local import GUNICORN, ROOT
    env = {"PATH": "/usr/bin:/bin", "SCORING_AUTH": "disabled", "TMPDIR": str(tmp_path),
           "SCORING_CAPTURE_URI": "https://a.blob.core.windows.net/captures",
           "SCORING_CAPTURE_FLUSH_SECONDS": "30", "SCORING_GRACEFUL_TIMEOUT_S": "30"}
    done = subprocess.run([sys.executable, *GUNICORN, "--check-config"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "SCORING_CAPTURE_FLUSH_SECONDS=30 must be below SCORING_GRACEFUL_TIMEOUT_S=30" in done.stderr


def test_after_the_flush_records_are_refused_and_counted_as_shutdown(uploader):
    capture = _capture(uploader)
    capture.offer(_entry(1_800_000_000))
    capture.flush(10)
    before = sample("scoring_capture_dropped_records_total", reason="shutdown")
    capture.offer(_entry(1_800_000_001))
    assert sample("scoring_capture_dropped_records_total", reason="shutdown") == before + 1
    assert len(uploader.records()) == 1 and not capture._pending
