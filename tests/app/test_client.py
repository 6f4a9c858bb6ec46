"""The command-line client against the real server, and with a fake pulumi."""

from __future__ import annotations

import http.server
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
