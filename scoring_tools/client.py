"""Command-line client: score images against a deployed (or local) service.

    python -m scoring_tools.client IMAGE... --uri URI --key KEY
    python -m scoring_tools.client IMAGE... --stack dev
    python -m scoring_tools.client IMAGE... --stack prod --deployment green

``--stack`` reads ``scoringUri`` and ``primaryKey`` from
``pulumi stack output --json --show-secrets --stack NAME``. Images are sent
concurrently (raw bytes, as the 2019 clients did) with a progress bar, then a
table: image, top classes, bytes sent, latency, and the deployment that answered
(its ``azureml-model-deployment`` header). ``--deployment NAME`` sends that
header, so the endpoint's routes send the request to that deployment only. 503
is retried with backoff.

``--max-side N`` (off by default) re-encodes, before the upload, each image that
is larger than N pixels on its longest side or is not upright by its EXIF
orientation: a JPEG is decoded in Pillow's draft mode (at the smallest of 1/2,
1/4 and 1/8 scale still covering the result), turned upright, shrunk to at most
N and saved as JPEG again; other formats the same way, saved as PNG. Anything
else is sent as it is.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import io
import math
import sys
import time
from pathlib import Path

import requests
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from scoring_tools.stack import StackOutputError
from scoring_tools.stack import stack_outputs as read_outputs

MESSAGES = {
    401: "401 Unauthorized: the key was refused; check --key (or the stack's primaryKey)",
    413: "413 Payload Too Large: the image is over the server's size limit",
    503: "503 Service Unavailable: the server stayed busy or not ready after retries",
}


class ClientError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclasses.dataclass
class Result:
    image: str
    status: int | None
    latency_s: float
    top: str
    deployment: str = "-"  # azureml-model-deployment of the answer
    sent: int | None = None  # bytes in the request body (None: nothing was sent)
    original: int | None = None  # the file's bytes, where --max-side re-encoded it


# JPEG cannot hold a side over 65,535 pixels: a larger --max-side could never apply.
MAX_SIDE_LIMIT = 65535
JPEG_QUALITY = 90  # close to what cameras write, so the second encoding adds little error
_EXIF_ORIENTATION = 0x0112


def parse_max_side(text: str | None) -> int | None:
    """``--max-side``'s value: None (off), or whole pixels from 1 to MAX_SIDE_LIMIT."""
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_SIDE_LIMIT:
        raise ClientError(f"--max-side must be a whole number of pixels from 1 to "
                          f"{MAX_SIDE_LIMIT}, got {text!r}")
    return value


def shrink(data: bytes, max_side: int) -> bytes:
    """``data`` no larger than ``max_side`` on its longest side and upright (its EXIF
    orientation applied); the bytes unchanged where neither is needed, so a small image
    loses nothing to a second encoding. Raises ClientError when Pillow cannot read it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            upright = image.getexif().get(_EXIF_ORIENTATION, 1) == 1
            if upright and max(image.size) <= max_side:
                return data
            fmt, scale = image.format, min(1.0, max_side / max(image.size))
            # JPEG decodes at 1/2, 1/4 or 1/8 scale, never below the size asked for: asked
            # for the final size (as stored, before the orientation turns it), it decodes
            # the fewest pixels that still cover it.
            image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
            image = ImageOps.exif_transpose(image)
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return _encode(image, fmt)
    except UnidentifiedImageError:
        raise ClientError("not an image Pillow can read, so --max-side cannot shrink it") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ClientError(f"--max-side could not re-encode it: {exc}") from None


def _encode(image: Image.Image, fmt: str | None) -> bytes:
    """JPEG stays JPEG (the EXIF orientation is gone: the pixels are upright now);
    anything else becomes PNG, which keeps every pixel and an alpha channel as they were."""
    out = io.BytesIO()
    if fmt == "JPEG" and image.mode in ("RGB", "L"):
        image.save(out, "JPEG", quality=JPEG_QUALITY, icc_profile=image.info.get("icc_profile"))
    elif fmt == "JPEG":  # CMYK: its colour profile would not fit the RGB pixels
        image.convert("RGB").save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, "PNG")
    return out.getvalue()


def stack_outputs(stack: str) -> tuple[str, str]:
    """``(scoringUri, primaryKey)`` of a Pulumi stack."""
    try:
        return read_outputs(stack, ("scoringUri", "primaryKey"), show_secrets=True,
                            instead="--uri and --key")
    except StackOutputError as exc:
        raise ClientError(str(exc)) from None


DEPLOYMENT_HEADER = "azureml-model-deployment"


def score_one(session: requests.Session, uri: str, key: str, path: Path, top_k: int,
              retries: int, backoff_s: float, deployment: str | None = None,
              max_side: int | None = None) -> Result:
    data = original = path.read_bytes()
    if max_side is not None:
        try:
            data = shrink(original, max_side)
        except ClientError as exc:
            return Result(str(path), None, 0.0, f"error: {exc}")
    result = _post(session, uri, key, path, data, top_k, retries, backoff_s, deployment)
    result.sent, result.original = len(data), None if data is original else len(original)
    return result


def _post(session: requests.Session, uri: str, key: str, path: Path, data: bytes, top_k: int,
          retries: int, backoff_s: float, deployment: str | None) -> Result:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/octet-stream"}
    if deployment:
        headers[DEPLOYMENT_HEADER] = deployment
    for attempt in range(retries + 1):
        started = time.perf_counter()
        try:
            response = session.post(uri, data=data, headers=headers,
                                    params={"top_k": top_k}, timeout=60)
        except requests.RequestException as exc:
            return Result(str(path), None, time.perf_counter() - started, f"error: {exc}")
        latency = time.perf_counter() - started
        if response.status_code != 503 or attempt == retries:
            break
        retry_after = response.headers.get("Retry-After", "")
        time.sleep(min(float(retry_after) if retry_after.isdigit() else 0, 30)
                   or backoff_s * 2 ** attempt)
    if response.status_code == 200:
        top = ", ".join(f"{p['label']} {p['score']:.3f}"
                        for p in response.json()["predictions"])
    else:
        top = MESSAGES.get(response.status_code) or _error_message(response)
    return Result(str(path), response.status_code, latency, top,
                  response.headers.get(DEPLOYMENT_HEADER, "-"))


def _error_message(response: requests.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:200]}"


def size_text(count: int | None) -> str:
    """Bytes for people: 950 B, 412 kB, 3.7 MB (decimal units, as file managers show)."""
    if count is None:
        return "-"
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}" if count < 10 * scale else f"{count / scale:.0f} {unit}"
    return f"{count} B"


def _sent(result: Result) -> str:
    if result.original is None:
        return size_text(result.sent)
    return f"{size_text(result.sent)} (of {size_text(result.original)})"


def table(results: list[Result]) -> str:
    rows = [("image", "top classes", "sent", "latency", "deployment")] + [
        (r.image, r.top, _sent(r), f"{r.latency_s * 1000:.0f} ms", r.deployment) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score images with the scoring service.")
    parser.add_argument("images", nargs="+", type=Path, help="image files")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--uri", help="the scoring URI, e.g. http://1.2.3.4/score")
    target.add_argument("--stack", help="a Pulumi stack to read scoringUri and primaryKey from")
    parser.add_argument("--key", help="the API key (with --uri)")
    parser.add_argument("--deployment", help="send azureml-model-deployment: NAME, so only "
                        "that deployment answers, whatever the traffic split")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--retries", type=int, default=4, help="retries on 503")
    parser.add_argument("--backoff", type=float, default=0.5, help="first backoff, seconds")
    parser.add_argument("--max-side", metavar="N", help="re-encode each image larger than N "
                        "pixels on its longest side (or not upright by its EXIF orientation) to "
                        "at most N before sending it; off by default: the bytes go as they are")
    args = parser.parse_args(argv)
    try:
        max_side = parse_max_side(args.max_side)
        if args.stack:
            uri, key = stack_outputs(args.stack)
        elif args.key:
            uri, key = args.uri, args.key
        else:
            raise ClientError("--uri needs --key")
        missing = [str(p) for p in args.images if not p.is_file()]
        if missing:
            raise ClientError(f"no such file: {', '.join(missing)}")
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with requests.Session() as session, \
            concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=args.concurrency)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        futures = [pool.submit(score_one, session, uri, key, path, args.top_k,
                               args.retries, args.backoff, args.deployment, max_side)
                   for path in args.images]
        for _ in tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                      desc="scoring", unit="image", file=sys.stderr):
            pass
        results = [f.result() for f in futures]
    print(table(results))
    return 0 if all(r.status == 200 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
