"""One load run against a server, by wrk when installed and by bench.loadgen otherwise.

Both clients run as separate processes, keep ``concurrency`` requests in flight (closed loop),
and report the same fields: completed responses, non-2xx/3xx answers, socket errors (connect,
read, write, timeout), p50 and p99 latency. wrk is preferred because on a 2-core machine a
Python client's own CPU would be taken from the server it measures.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

CLIENTS = ("auto", "wrk", "python")
_LUA_SCRIPT = Path(__file__).with_name("post.lua")
_MARKER = "BENCH_RESULT "


def resolve_client(client: str) -> str:
    """The client ``auto`` stands for here: wrk when it is on PATH, else Python."""
    if client == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if client == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("--client wrk: wrk is not installed (apt-get install wrk), or use --client python")
    return client


def run(client: str, url: str, key_file: Path, image: Path, concurrency: int, duration: int,
        header: str | None = None) -> dict:
    """Drive ``url`` for ``duration`` seconds, POSTing the file ``image`` (and ``header``,
    'Name: value', if given): the client's figures, plus ``ok`` (2xx/3xx answers) and
    ``rps``, which counts only those: a fast error is not throughput."""
    if client == "wrk":
        command = ["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "60s", "-s", str(_LUA_SCRIPT)]
        command += [url, "--", str(key_file), str(image), *([header] if header else [])]
    else:
        command = [sys.executable, "-m", "bench.loadgen", "--url", url, "--key-file", str(key_file)]
        command += ["--image", str(image), "--concurrency", str(concurrency), "--duration", str(duration)]
        command += ["--header", header] if header else []
    finished = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({finished.returncode}): {finished.stderr.strip()[-2000:]}")
    result = parse_output(client, finished.stdout)
    result["ok"] = result["requests"] - result["status_errors"]
    result["rps"] = result["ok"] / result["duration_s"]
    return result


def parse_output(client: str, stdout: str) -> dict:
    """The result object out of a client's stdout (wrk also prints its own human summary)."""
    if client == "python":
        return json.loads(stdout)
    for line in stdout.splitlines():
        if line.startswith(_MARKER):
            return json.loads(line[len(_MARKER) :])
    raise RuntimeError(f"wrk printed no {_MARKER.strip()} line:\n{stdout[-2000:]}")
