"""The command-line client against the real server, and with a fake pulumi."""

from __future__ import annotations

import http.server
import io
import json
import os
import subprocess
import sys
import threading

import pytest

from scoring_tools import client
from tests.app import media
from tests.app.conftest import ROOT


@pytest.fixture()
def images(tmp_path):
    paths = {}
    for name, colour in (("r.jpg", media.RED), ("g.jpg", media.GREEN), ("b.jpg", media.BLUE)):
        paths[name] = tmp_path / name
        paths[name].write_bytes(media.jpeg(colour))
    return paths


def test_client_scores_many_images_into_a_table(server, images):
    done = subprocess.run(
        [sys.executable, "-m", "scoring_tools.client", *map(str, images.values()),
         "--uri", server.url + "/score", "--key", "secondary-key-1", "--top-k", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[2:]}
    for name, label in (("r.jpg", "red"), ("g.jpg", "green"), ("b.jpg", "blue")):
        row = rows[str(images[name])]
        # the session server has no SCORING_DEPLOYMENT_NAME: no header, "-" (issue 16)
        assert row.split()[1] == label and row.split()[-2:] == ["ms", "-"]
        assert client.size_text(images[name].stat().st_size) in row  # bytes sent
    assert "scoring" in done.stderr  # the progress bar


def test_client_reads_uri_and_key_from_the_stack(server, images, tmp_path, monkeypatch, capsys):
    fake = tmp_path / "bin" / "pulumi"
    fake.parent.mkdir()
    outputs = {"scoringUri": server.url + "/score", "primaryKey": "primary-key-1",
               "secondaryKey": "secondary-key-1"}
    fake.write_text("#!/bin/sh\n"
                    '[ "$*" = "stack output --json --show-secrets --stack dev" ] || exit 3\n'
                    f"echo '{json.dumps(outputs)}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert client.main([str(images["r.jpg"]), "--stack", "dev"]) == 0
    assert " red " in capsys.readouterr().out
    assert client.main([str(images["r.jpg"]), "--stack", "prod"]) == 2
    assert "pulumi stack output failed" in capsys.readouterr().err


def test_client_explains_401_and_413(server, images, tmp_path, capsys):
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * (media.MAX_BODY + 1))
    assert client.main([str(images["r.jpg"]), "--uri", server.url + "/score", "--key", "nope"]) == 1
    assert client.MESSAGES[401] in capsys.readouterr().out
    assert client.main([str(big), "--uri", server.url + "/score", "--key", "primary-key-1"]) == 1
    assert client.MESSAGES[413] in capsys.readouterr().out


class Busy(http.server.BaseHTTPRequestHandler):
    """Answers 503 (Retry-After: 0) ``busy`` times, then a prediction."""
    busy = 2
    seen = 0

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen += 1
        if type(self).seen <= self.busy:
            body, status = b'{"error": {"code": "unavailable", "message": "busy"}}', 503
        else:
            body, status = json.dumps({"model": {"name": "m", "version": "1"}, "predictions": [
                {"label": "cat", "index": 0, "score": 0.9}]}).encode(), 200
        self.send_response(status)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("busy,retries,code,text", [(2, 3, 0, "cat 0.900"),
                                                    (5, 2, 1, client.MESSAGES[503])])
def test_client_retries_503_with_backoff(images, capsys, busy, retries, code, text):
    handler = type("H", (Busy,), {"busy": busy, "seen": 0})
    stub = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{stub.server_port}/score"
        assert client.main([str(images["r.jpg"]), "--uri", uri, "--key", "k",
                            "--retries", str(retries), "--backoff", "0.01"]) == code
    finally:
        stub.shutdown()
    assert text in capsys.readouterr().out
    assert handler.seen == min(busy, retries) + 1


# -- --max-side: shrink before sending ------------------------------------------------------
class Recorder(http.server.BaseHTTPRequestHandler):
    """Keeps every request body it is sent and answers each with one prediction."""
    bodies: list = []

    def do_POST(self):
        type(self).bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"model": {"name": "m", "version": "1"}, "predictions": [
            {"label": "cat", "index": 0, "score": 0.9}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def recorder():
    """(the URI of a stub that records what it is sent, the list of bodies it received)."""
    handler = type("R", (Recorder,), {"bodies": []})
    stub = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{stub.server_port}/score", handler.bodies
    stub.shutdown()


EXIF_ORIENTATION, ROTATE_90_CLOCKWISE_TO_SHOW = 0x0112, 6


@pytest.fixture()
def sideways_photo(tmp_path):
    """A 3000x2000 JPEG stored red above blue, with grain so it compresses like a photo, whose
    EXIF orientation says: turn 90 degrees clockwise to show. Upright it is 2000 wide and 3000
    high, blue on the left and red on the right."""
    import numpy as np
    from PIL import Image

    pixels = np.empty((2000, 3000, 3), np.int16)
    pixels[:1000], pixels[1000:] = media.RED, media.BLUE
    pixels += np.random.default_rng(0).integers(-20, 21, pixels.shape, dtype=np.int16)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CLOCKWISE_TO_SHOW
    path = tmp_path / "sideways.jpg"
    path.write_bytes(media.encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG",
                                  quality=90, exif=exif.tobytes()))
    return path


def _mean_colour(image, box) -> tuple:
    import numpy as np

    return tuple(np.asarray(image.crop(box), dtype=np.float64).reshape(-1, 3).mean(axis=0))


def test_max_side_sends_a_large_photo_shrunk_and_upright(recorder, sideways_photo, capsys):
    from PIL import Image

    uri, bodies = recorder
    assert client.main([str(sideways_photo), "--uri", uri, "--key", "k", "--max-side", "800"]) == 0
    (body,) = bodies
    original = sideways_photo.read_bytes()
    assert len(body) < len(original) / 10
    with Image.open(io.BytesIO(body)) as sent:
        assert sent.format == "JPEG" and sent.size == (533, 800)  # upright: portrait, 800 high
        assert sent.getexif().get(EXIF_ORIENTATION, 1) == 1  # no orientation left to apply twice
        left, right = _mean_colour(sent, (0, 0, 250, 800)), _mean_colour(sent, (283, 0, 533, 800))
    assert left == pytest.approx(media.BLUE, abs=8) and right == pytest.approx(media.RED, abs=8)
    (row,) = capsys.readouterr().out.splitlines()[2:]
    assert f"{client.size_text(len(body))} (of {client.size_text(len(original))})" in row


def test_without_max_side_the_bytes_go_as_they_are(recorder, sideways_photo, capsys):
    uri, bodies = recorder
    assert client.main([str(sideways_photo), "--uri", uri, "--key", "k"]) == 0
    assert bodies == [sideways_photo.read_bytes()]
    (row,) = capsys.readouterr().out.splitlines()[2:]
    assert client.size_text(len(bodies[0])) in row and "(of" not in row


def test_max_side_leaves_a_small_upright_image_untouched(recorder, images):
    uri, bodies = recorder
    assert client.main([str(images["r.jpg"]), "--uri", uri, "--key", "k", "--max-side", "48"]) == 0
    assert bodies == [images["r.jpg"].read_bytes()]


def test_max_side_reports_a_file_it_cannot_read_and_sends_the_rest(recorder, images, tmp_path, capsys):
    uri, bodies = recorder
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo")
    assert client.main([str(notes), str(images["r.jpg"]), "--uri", uri, "--key", "k",
                        "--max-side", "16"]) == 1
    assert len(bodies) == 1
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert "not an image Pillow can read" in rows[str(notes)]
    assert "cat 0.900" in rows[str(images["r.jpg"])]


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5", "65536", ""])
def test_a_bad_max_side_is_a_one_line_error_and_sends_nothing(recorder, images, capsys, value):
    uri, bodies = recorder
    assert client.main([str(images["r.jpg"]), "--uri", uri, "--key", "k", f"--max-side={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --max-side must be a whole number")
    assert bodies == []
