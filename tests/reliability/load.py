"""Load for the overload and fault tests: closed loops (N clients, each
sending as soon as its last answer came) and an open loop (a fixed arrival
rate, whatever the answers), each answer recorded with what it said."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time

import requests

from tests.app import media

COLOURS = {"red": media.RED, "green": media.GREEN, "blue": media.BLUE}
BODIES = [(name, media.jpeg(rgb)) for name, rgb in COLOURS.items()]
STALL = b"reliability-stall="  # + "<seconds>;" inside an image: see slow_wsgi


def stall_jpeg(seconds: float) -> bytes:
    """A valid red JPEG that holds the slowed model for ``seconds``."""
    return media.jpeg(media.RED, comment=STALL + f"{seconds};".encode())


@dataclasses.dataclass
class Answer:
    status: int                 # 0: no HTTP answer (connection error)
    seconds: float
    retry_after: str | None = None
    code: str | None = None     # the error code, or "ok" for a correct 200, "wrong" if not
    error: str | None = None    # the exception's class, for status 0
    message: str | None = None  # the error's message


def post(url: str, key: str, i: int, timeout: float = 60, body: bytes | None = None) -> Answer:
    """One POST of image ``i % 3`` (or ``body``) on a fresh connection."""
    name, image = BODIES[i % len(BODIES)]
    started = time.monotonic()
    try:
        r = requests.post(url + "/score", data=body or image, timeout=timeout,
                          headers={"Authorization": f"Bearer {key}", "Connection": "close"})
    except requests.RequestException as exc:
        return Answer(0, time.monotonic() - started, error=type(exc).__name__)
    seconds = time.monotonic() - started
    doc = r.json()
    if r.status_code == 200:
        code = "ok" if body or doc["predictions"][0]["label"] == name else "wrong"
        message = None
    else:
        code, message = doc["error"]["code"], doc["error"]["message"]
    return Answer(r.status_code, seconds, r.headers.get("Retry-After"), code, message=message)


def closed_loop(url: str, key: str, clients: int, seconds: float) -> tuple[list[Answer], float]:
    """``clients`` clients, back to back, for ``seconds``: (answers, answers per second)."""
    end = time.monotonic() + seconds

    def client(c: int) -> list[Answer]:
        out = []
        while time.monotonic() < end:
            out.append(post(url, key, c + len(out)))
        return out

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        answers = [a for f in [pool.submit(client, c) for c in range(clients)] for a in f.result()]
    return answers, len(answers) / (time.monotonic() - started)


def open_loop(url: str, key: str, rate: float, seconds: float, threads: int = 64) -> list[Answer]:
    """Requests arriving at ``rate`` per second for ``seconds``, each on its own thread."""
    start = time.monotonic()
    futures = []
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        for i in range(int(rate * seconds)):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            futures.append(pool.submit(post, url, key, i))
    return [f.result() for f in futures]


def count(answers: list[Answer]) -> dict[int, int]:
    out: dict[int, int] = {}
    for a in answers:
        out[a.status] = out.get(a.status, 0) + 1
    return out
