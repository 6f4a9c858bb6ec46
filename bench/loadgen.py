"""Closed-loop HTTP load in Python, for machines without wrk.

``concurrency`` asyncio tasks share one aiohttp session capped at as many connections; each
POSTs the image, waits for the full answer, and posts again until the time is up. Run as a
separate process (``python -m bench.loadgen ...``, which prints one JSON object, the same
fields as bench/post.lua) so its CPU is never charged to the server. It costs more CPU per
request than wrk, which matters only when the server is the tiny model's.
"""
import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp


async def _drive(url: str, headers: dict, body: bytes, concurrency: int, duration: float) -> dict:
    latencies, counts = [], {"status_errors": 0, "socket_errors": 0}
    deadline = time.perf_counter() + duration
    timeout = aiohttp.ClientTimeout(total=60)

    async def user(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
            except (aiohttp.ClientError, asyncio.TimeoutError):
                counts["socket_errors"] += 1
                continue
            latencies.append(time.perf_counter() - start)
            counts["status_errors"] += not 200 <= response.status < 400  # as wrk counts them

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(user(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "duration_s": elapsed, **counts, **_percentiles_ms(latencies)}


def _percentiles_ms(latencies: list[float]) -> dict:
    if len(latencies) < 2:  # quantiles need two points; one answer is its own percentiles
        only = latencies[0] * 1000 if latencies else None
        return {"p50_ms": only, "p99_ms": only}
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--header", help="one more request header, 'Name: value'")
    args = parser.parse_args(argv)
    headers = {
        "Authorization": f"Bearer {args.key_file.read_text().strip()}",
        "Content-Type": "application/octet-stream",
    }
    if args.header:
        name, _, value = args.header.partition(":")
        headers[name.strip()] = value.strip()
    result = asyncio.run(_drive(args.url, headers, args.image.read_bytes(), args.concurrency, args.duration))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
