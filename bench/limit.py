"""The model's in-process limit: what no server in front of it can beat on this machine.

Run as a child process (``python -m bench.limit ...``) so that TensorFlow, its thread pools
and its memory live and die there, and ``getrusage`` counts the CPU of the measurement and
nothing else. The signature is called directly with real JPEG bytes, at each batch size in
turn; the best images/s is the limit. CPU is user+system time of every thread of the
process, divided by the images scored.

The child prints the sweep as one JSON line, then stays up: each ``{"batch": B, "seconds":
S}`` line on its stdin is measured again and answered with one JSON line, until stdin
closes. The benchmark uses that to measure the limit again in every round, taking turns
with the servers (``running``): this VM's speed drifts by a fifth over minutes, and a limit
measured only at the start would put that drift into every served/limit ratio.

The full-decode limit: where the prepared graph decodes the request's JPEG at a DCT scale
(``ratio`` above 1: an image at least twice the input on both sides), the child also loads
the model's full-decode twin (``models.full_decode_dir``: the same network and weights, the
JPEG decoded at every pixel) and sweeps it the same way; a line with ``"full_decode": true``
measures the twin. At ratio 1 the two graphs do the same work, and the twin is not measured.
"""
import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import models


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_batch(infer, input_name: str, image: bytes, batch: int, min_seconds: float) -> dict:
    """Images/s, CPU-seconds per image and per-call latencies of one batch size.

    ``images_per_s`` counts whole calls over their wall time. ``window_images_per_s`` counts
    what a load client would over a run of ``min_seconds``: the images of the calls that
    ended within it, over its length. A server's turn is measured that way, and ends with a
    batch still in the model (for ResNet50 at batch 32, two seconds of a turn): comparing
    it with whole calls would charge the server for where the window falls.
    """
    import tensorflow as tf

    inputs = {input_name: tf.constant([image] * batch)}
    infer(**inputs)  # warm-up: the first call at a shape builds the kernels' primitives; later, caches
    latencies, ends = [], []
    cpu_start, wall_start = _cpu_seconds(), time.perf_counter()
    while len(latencies) < 3 or time.perf_counter() - wall_start < min_seconds:
        call_start = time.perf_counter()
        infer(**inputs)
        ends.append(time.perf_counter())
        latencies.append(ends[-1] - call_start)
    wall, cpu = time.perf_counter() - wall_start, _cpu_seconds() - cpu_start
    images = batch * len(latencies)
    window_images = batch * sum(1 for end in ends if end - wall_start <= min_seconds)
    return {
        "batch": batch,
        "calls": len(latencies),
        "images": images,
        "wall_s": wall,
        "cpu_s": cpu,
        "images_per_s": images / wall,
        "window_images": window_images,
        "window_s": min_seconds,
        "window_images_per_s": window_images / min_seconds,
        "cpu_s_per_image": cpu / images,
        "p50_ms": statistics.median(latencies) * 1000,
    }


def load(model_dir: Path):
    """The model's serving signature and the name of its one input."""
    import tensorflow as tf

    infer = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    (input_name,) = infer.structured_input_signature[1]
    return infer, input_name


def sweep(infer, input_name: str, image: bytes, batch_sizes: list[int], min_seconds: float) -> dict:
    """The limit over ``batch_sizes``: the best batch, its images/s and CPU, batch-1 latency."""
    by_batch = [measure_batch(infer, input_name, image, batch, min_seconds) for batch in batch_sizes]
    best = max(by_batch, key=lambda row: row["images_per_s"])
    smallest = min(by_batch, key=lambda row: row["batch"])
    return {
        "best_batch": best["batch"],
        "images_per_s": best["images_per_s"],
        "cpu_s_per_image": best["cpu_s_per_image"],
        "latency_batch": smallest["batch"],
        "latency_ms": smallest["p50_ms"],
        "by_batch": by_batch,
    }


def request_ratio(image: bytes) -> int:
    """The DCT ratio the prepared graph decodes ``image`` at (1 for anything not a JPEG)."""
    import tensorflow as tf

    from scoring_tools import prepare_model

    if not bool(tf.io.is_jpeg(image)):
        return 1
    height, width, _ = (int(side) for side in tf.image.extract_jpeg_shape(image))
    return int(prepare_model.dct_ratio(height, width, (models.IMAGE_SIZE, models.IMAGE_SIZE)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=models.MODEL_NAMES, required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--batch-sizes", type=lambda text: [int(part) for part in text.split(",")], required=True)
    parser.add_argument("--min-seconds", type=float, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    model_dir = models.ensure(args.model, args.cache_dir)
    image = args.image.read_bytes()
    graphs = {False: load(model_dir)}
    limit = sweep(*graphs[False], image, args.batch_sizes, args.min_seconds)
    ratio = request_ratio(image)
    full_decode = {"ratio": ratio, "model_dir": None, "limit": None}
    if ratio > 1:
        twin = models.full_decode_dir(args.model, args.cache_dir)
        graphs[True] = load(twin)
        full_decode.update(model_dir=str(twin), limit=sweep(*graphs[True], image, args.batch_sizes,
                                                               args.min_seconds))
    print(json.dumps({"model_dir": str(model_dir), "limit": limit, "full_decode": full_decode}), flush=True)
    for line in sys.stdin:  # one more measurement per line, until the benchmark closes stdin
        asked = json.loads(line)
        infer, input_name = graphs[asked.get("full_decode", False)]
        print(json.dumps(measure_batch(infer, input_name, image, asked["batch"], asked["seconds"])), flush=True)
    return 0


class Probe:
    """The running child: its sweep, and ``measure`` for one more turn at one batch size."""

    def __init__(self, process: subprocess.Popen, name: str, log_file: Path):
        self._process, self._name, self._log_file = process, name, log_file
        answer = self._read()
        self.model_dir, self.limit = Path(answer["model_dir"]), answer["limit"]
        # {"ratio", "model_dir", "limit"}: the limit (a sweep) only where ratio > 1
        self.full_decode = answer["full_decode"]

    def _read(self) -> dict:
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            raise RuntimeError(f"bench.limit failed for {self._name}; log {self._log_file}:\n"
                               + self._log_file.read_text(errors="replace")[-3000:])
        return json.loads(line)

    def measure(self, batch: int, seconds: float, full_decode: bool = False) -> dict:
        """One more turn at ``batch``, of the prepared graph or (``full_decode``) its twin."""
        if full_decode and self.full_decode["limit"] is None:
            raise ValueError(f"{self._name}: the request decodes at ratio 1; no full-decode twin was loaded")
        self._process.stdin.write(json.dumps({"batch": batch, "seconds": seconds,
                                              "full_decode": full_decode}) + "\n")
        self._process.stdin.flush()
        return self._read()


@contextlib.contextmanager
def running(name: str, cache_dir: Path, image_file: Path, batch_sizes: list[int], min_seconds: float,
            cwd: Path, log_file: Path):
    """Build (or reuse) model ``name`` and sweep its limit in a child process; yield a Probe
    that can measure again, and stop the child on the way out."""
    command = [sys.executable, "-m", "bench.limit", "--model", name, "--cache-dir", str(cache_dir),
               "--image", str(image_file), "--batch-sizes", ",".join(map(str, batch_sizes)),
               "--min-seconds", str(min_seconds)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    with log_file.open("w") as log, subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            text=True) as process:
        try:
            yield Probe(process, name, log_file)
        finally:
            process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


if __name__ == "__main__":
    sys.exit(main())
