"""Connections that idle or stall: the worker (scoring_app/server/worker.py) must close
them after gunicorn's ``keepalive`` seconds, here 1 (GUNICORN_CMD_ARGS), and keep
serving everyone else. Without that timeout each of these would hold a greenlet
and a socket for good: the reads below would wait out their own 30 s limit and fail."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import signal
import socket
import time

import pytest
import requests

from tests.app import media
from tests.app.conftest import Server
from tests.reliability import procs

KEY = "connections-primary-key-0123456789"
WAIT_S = 30  # far past the server's 1 s: only a server that never closes reaches it


@pytest.fixture(scope="module")
def server(encoded_model_dir, tmp_path_factory):
    keys = tmp_path_factory.mktemp("connection-keys")
    (keys / "primary").write_text(KEY)
    srv = Server({"SCORING_MODEL_DIR": str(encoded_model_dir), "SCORING_API_KEYS_DIR": str(keys),
                  "SCORING_WORKERS": "1", "GUNICORN_CMD_ARGS": "--keep-alive 1 --access-logfile -",
                  "TMPDIR": str(tmp_path_factory.mktemp("connections"))})
    try:
        yield srv.wait_ready()
    finally:
        srv.stop()


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def score_request(body: bytes, length: int | None = None) -> bytes:
    return (f"POST /score HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {len(body) if length is None else length}\r\n\r\n"
            ).encode() + body


def test_an_access_log_turned_on_by_the_operator_logs_each_request(server):
    # scoring_app/server/worker.py builds access records only when an access log is on:
    # it is here (--access-logfile -), so every answer gets its line
    with connect(server) as sock:
        sock.sendall(b"GET /healthz?access-log-probe HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 200")
    deadline = time.monotonic() + 10
    while "GET /healthz?access-log-probe HTTP/1.1\" 200" not in server.output():
        assert time.monotonic() < deadline, server.output()[-2000:]
        time.sleep(0.1)


def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as sock:
        assert read_all(sock) == b""


def test_keep_alive_serves_several_requests_then_closes_when_idle(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT_S)
    for _ in range(3):
        conn.request("POST", "/score", body=media.jpeg(media.RED),
                     headers={"Authorization": f"Bearer {KEY}", "Content-Type": "image/jpeg"})
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
    assert read_all(conn.sock) == b""
    conn.close()


def test_half_sent_headers_get_408_and_are_closed_without_a_traceback(server):
    with connect(server) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: test\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert "Traceback" not in server.output()


def test_a_stalled_body_gets_408_and_the_worker_goes_on(server):
    body = media.jpeg(media.RED)
    with connect(server) as sock:
        sock.sendall(score_request(body[:10], length=len(body)))
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:400]
    assert b"request_timeout" in answer
    after = requests.post(server.url + "/score", data=body, timeout=WAIT_S,
                          headers={"Authorization": f"Bearer {KEY}", "Content-Type": "image/jpeg"})
    assert after.status_code == 200
    assert "unexpected error" not in server.output() and "Traceback" not in server.output()


def test_a_body_that_arrives_in_pieces_within_the_timeout_is_read_whole(server):
    """The body is asked for whole (its Content-Length): pauses shorter than the 1 s
    timeout between its pieces neither cut it short nor time it out."""
    body = media.jpeg(media.RED)
    third = len(body) // 3
    with connect(server) as sock:
        sock.sendall(score_request(b"", length=len(body)))
        for piece in (body[:third], body[third:2 * third], body[2 * third:]):
            time.sleep(0.4)
            sock.sendall(piece)
        answer = read_all(sock)  # the server closes the kept-alive connection after 1 s
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:400]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["predictions"][0]["label"] == "red"


def _minor_faults(pid: int) -> int:
    return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[7])


def test_a_worker_reads_bodies_of_megabytes_into_pages_it_already_has(server):
    """gunicorn's master sets glibc's allocator before it forks (server/allocator.py):
    after the first few, four 3 MB bodies (768 pages each) at a time cost the worker few
    page faults: about 3 a body here, against about 190 at glibc's defaults."""
    (worker,) = procs.workers(server.proc.pid)
    body = b"\x00" * (3 << 20)  # not an image: read whole, then refused with 400

    def send_four():
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: requests.post(
                server.url + "/score", data=body, timeout=WAIT_S,
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "image/jpeg"}), range(4)))
        assert [a.status_code for a in answers] == [400] * 4

    for _ in range(3):
        send_four()
    before = _minor_faults(worker)
    for _ in range(10):
        send_four()
    per_body = (_minor_faults(worker) - before) / 40
    assert per_body < 48, per_body


def test_once_the_worker_stops_a_kept_alive_connection_is_told_to_close(encoded_model_dir, tmp_path):
    """A client on a kept-alive connection must reconnect, not keep a stopping worker busy
    until the graceful timeout kills its requests. (A server of its own, with the default
    15 s keepalive: this module's 1 s would close the connection while the worker stops.)"""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "primary").write_text(KEY)
    srv = Server({"SCORING_MODEL_DIR": str(encoded_model_dir), "SCORING_API_KEYS_DIR": str(keys),
                  "SCORING_WORKERS": "1", "TMPDIR": str(tmp_path)})
    try:
        srv.wait_ready()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=WAIT_S)
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "image/jpeg"}
        conn.request("POST", "/score", body=media.jpeg(media.RED), headers=headers)
        first = conn.getresponse()
        first.read()
        assert first.status == 200 and first.getheader("Connection") is None  # kept alive
        (worker,) = procs.workers(srv.proc.pid)
        os.kill(worker, signal.SIGTERM)
        time.sleep(2)  # its signal handler runs when its event loop next wakes
        conn.request("POST", "/score", body=media.jpeg(media.RED), headers=headers)
        last = conn.getresponse()
        last.read()
        assert last.status == 200 and last.getheader("Connection") == "close"
        conn.close()
    finally:
        srv.stop()
