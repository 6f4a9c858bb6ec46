"""Stand-ins for the capture's in-process tests: a model, and uploaders that keep blobs in
memory, fail, or hold every upload until released."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
from prometheus_client import REGISTRY

from scoring_app.app import create_app

URL = "https://account.blob.core.windows.net/captures"


class Model:
    sizes = [1, 2, 4]
    device = None  # not said: one model call at a time
    precision = None
    call_seconds: dict = {}
    num_classes = 2

    def load(self):
        return 0.01

    def warm_up(self):
        return 0.01

    def preprocess(self, data):
        return data

    def predict(self, items):
        return np.tile([0.25, 0.75], (len(items), 1))

    def postprocess(self, row, top_k):
        return [{"label": "blue", "index": 1, "score": float(row[1])},
                {"label": "red", "index": 0, "score": float(row[0])}][:top_k]


class MemoryUploader:
    def __init__(self):
        self.blobs: dict[str, bytes] = {}
        self.closed = False
        self.gate = threading.Event()
        self.gate.set()
        self.failing = False
        self.waiting = threading.Semaphore(0)

    def put(self, name, data):
        self.waiting.release()
        self.gate.wait()
        if self.failing:
            raise ConnectionError("blob storage is down")
        assert name not in self.blobs
        self.blobs[name] = data

    def close(self):
        self.closed = True

    def records(self) -> list[dict]:
        return [json.loads(line) for data in self.blobs.values() for line in data.splitlines()]


def app_with_capture(tmp_path, uploader, **overrides):
    config = {"model_dir": str(tmp_path), "auth": "disabled", "capture_uri": URL,
              "deployment_name": "green", "capture_block_seconds": 3600.0, **overrides}
    app = create_app(config, model=Model(), uploader=uploader)
    service = app.extensions["scoring"]
    if not service.batcher.ready.wait(30):
        raise AssertionError("the stand-in model did not warm up")
    return app, service


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_until(predicate, what: str, timeout: float = 30):
    """Poll until ``predicate()`` holds (a condition, not a duration, is what is tested)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"never happened: {what}")
