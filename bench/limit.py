"""The model's in-process limit: what no server in front of it can beat on this machine.

Run as a child process (``python -m bench.limit ...``, which prints one JSON object) so that
TensorFlow, its thread pools and its memory live and die there, and ``getrusage`` counts the
CPU of the measurement and nothing else. The signature is called directly with real JPEG
bytes, at each batch size in turn; the best images/s is the limit. CPU is user+system time
of every thread of the process, divided by the images scored.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

from bench import models


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_batch(infer, input_name: str, image: bytes, batch: int, min_seconds: float) -> dict:
    """Images/s, CPU-seconds per image and per-call latencies of one batch size."""
    import tensorflow as tf

    inputs = {input_name: tf.constant([image] * batch)}
    infer(**inputs)  # warm-up: the first call at a shape builds the kernels' primitives
    latencies = []
    cpu_start, wall_start = _cpu_seconds(), time.perf_counter()
    while len(latencies) < 3 or time.perf_counter() - wall_start < min_seconds:
        call_start = time.perf_counter()
        infer(**inputs)
        latencies.append(time.perf_counter() - call_start)
    wall, cpu = time.perf_counter() - wall_start, _cpu_seconds() - cpu_start
    images = batch * len(latencies)
    return {
        "batch": batch,
        "calls": len(latencies),
        "images_per_s": images / wall,
        "cpu_s_per_image": cpu / images,
        "p50_ms": statistics.median(latencies) * 1000,
    }


def measure(model_dir: Path, image: bytes, batch_sizes: list[int], min_seconds: float) -> dict:
    """The limit over ``batch_sizes``: the best batch, its images/s and CPU, batch-1 latency."""
    import tensorflow as tf

    infer = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    (input_name,) = infer.structured_input_signature[1]
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
    limit = measure(model_dir, args.image.read_bytes(), args.batch_sizes, args.min_seconds)
    json.dump({"model_dir": str(model_dir), "limit": limit}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
