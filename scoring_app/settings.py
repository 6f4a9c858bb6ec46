"""Every ``SCORING_*`` environment variable, declared once.

The app, ``gunicorn.conf.py`` and docs/service.md's table all read this list, so a
variable cannot be documented in one place and parsed differently in another.
A bad value stops the process at start with a message that names the variable
(``SettingsError``), instead of failing on the first request.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from . import contract

PREFIX = "SCORING_"


class SettingsError(ValueError):
    """A variable holds a value the service cannot run with."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """One variable: its name, default (as the string a user would write),
    parser (string -> value, raising ValueError with the reason) and doc."""

    name: str
    default: str
    parse: Callable[[str], Any]
    doc: str
    type: str = "str"  # the Config field's annotation: int, float, bool or str

    @property
    def field(self) -> str:
        """The attribute name on ``Config``: ``SCORING_MAX_QUEUE`` -> ``max_queue``."""
        return self.name[len(PREFIX):].lower()


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value
    return parse


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value
    return parse


AUTO = 0  # a count of "auto" (SCORING_MODEL_CALLS): chosen at load, by the device


def _int_range_or_auto(low: int, high: int) -> Callable[[str], int]:
    number = _int_range(low, high)

    def parse(text: str) -> int:
        value = text.strip().lower()
        if value == "auto":
            return AUTO
        try:
            return number(value)
        except ValueError:
            raise ValueError(f"must be auto, or a whole number from {low} to {high}") from None
    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return parse


def parse_bool(text: str) -> bool:
    """The true/false words every boolean variable takes (the fetch's too)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _text(text: str) -> str:
    return text.strip()


def _required_text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _deployment_name(text: str) -> str:
    """Empty, or a deployment name by the contract's rule (the stack's config checks the same)."""
    value = text.strip()
    if value and not contract.is_deployment_name(value):
        raise ValueError(f"must be empty or {contract.DEPLOYMENT_NAME_RULE}")
    return value


def _container_url(text: str) -> str:
    """Empty, or ``https://<account host>/<container>`` (an IP or localhost host is the
    emulator's path style, ``https://127.0.0.1:10000/<account>/<container>``); no query:
    the pod writes with its identity, never a SAS."""
    from urllib.parse import urlsplit
    value = text.strip()
    if not value:
        return value
    parts = urlsplit(value)
    path = [s for s in parts.path.split("/") if s]
    emulator = parts.hostname in ("localhost",) or bool(re.fullmatch(r"[\d.]+|\[?[\d:a-fA-F]+\]?",
                                                                     parts.hostname or ""))
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment \
            or len(path) != (2 if emulator else 1):
        raise ValueError("must be empty or https://<account>.blob.core.windows.net/<container> "
                         "(no query: no SAS)")
    return value


def _var(default: str, parse: Callable[[str], Any], doc: str) -> Any:
    """A ``Config`` field's variable: its default (as the string a user would
    write), parser (string -> value, raising ValueError with the reason) and doc."""
    return dataclasses.field(metadata={"default": default, "parse": parse, "doc": doc})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Parsed settings: one typed attribute per variable (``SCORING_MAX_QUEUE``
    -> ``max_queue``), in docs/service.md's order. The one list of variables: a
    field here is a variable, ``SETTINGS`` is read from these fields."""

    model_dir: str = _var(
        "/opt/scoring/model", _required_text,
        "SavedModel directory; its `serving_default` signature is served.")
    model_name: str = _var(
        "model", _required_text,
        "Model name returned with every prediction.")
    model_version: str = _var(
        "1", _required_text,
        "Model version returned with every prediction.")
    deployment_name: str = _var(
        "", _deployment_name,
        "The deployment this process belongs to (the stack sets it from the "
        "pod's `aks-gpu-scoring/deployment` label); every answer then carries "
        "`azureml-model-deployment: <name>`. A DNS-1123 label of at most 24 "
        "characters. Empty: no header (a local run).")
    capture_uri: str = _var(
        "", _container_url,
        "Payload capture (docs/capture.md): the Blob container sampled requests and answers "
        "are written to, with the pod's workload identity. Empty: no capture, and no "
        "`x-request-id` answer header.")
    capture_sample_rate: float = _var(
        "1.0", _float_range(0, 1),
        "Fraction of scoring requests captured; a request's `x-request-id` picks, so live and "
        "shadow deployments capture the same requests.")
    capture_images: bool = _var(
        "false", parse_bool,
        "Keep request images in the capture (they may be personal data). `false`: their "
        "sha256, size and format only.")
    capture_buffer_bytes: int = _var(
        "67108864", _int_range(1 << 16, 1 << 34),
        "Captured records (images included) waiting for upload, per worker; past it, records "
        "are dropped and counted, never the request.")
    capture_block_bytes: int = _var(
        "4194304", _int_range(1 << 12, 1 << 28),
        "Largest capture blob (JSON Lines) before it is uploaded.")
    capture_block_seconds: float = _var(
        "60", _float_range(0.1, 3600),
        "Oldest record a capture blob holds before it is uploaded.")
    capture_flush_seconds: float = _var(
        "5", _float_range(0, 600),
        "On shutdown, the longest a worker spends uploading what it still holds, after its "
        "in-flight requests; within SCORING_GRACEFUL_TIMEOUT_S.")
    labels_file: str = _var(
        "", _text,
        "Class labels, one per line. Empty: a `labels.txt` (or the only "
        "`.txt`) among the SavedModel's assets, else class indices.")
    preprocess: str = _var(
        "", _choice("", "none", "caffe", "tf", "torch"),
        "Pixel preprocessing for image-tensor inputs, which must name one: `none` "
        "(0..255, the only one for uint8 inputs), `caffe` (BGR, mean subtracted), "
        "`tf` ([-1, 1]), `torch` (ImageNet mean/std). Empty: an image-tensor model is "
        "refused at start (a wrong guess gives wrong scores, silently). Ignored for "
        "encoded-image (string) inputs.")
    output: str = _var(
        "", _text,
        "Name of the scores output. Empty: the only `[N, K]` float output.")
    apply_softmax: bool = _var(
        "false", parse_bool,
        "Apply softmax to the scores output (when the model returns logits).")
    precision: str = _var(
        "fp32", _choice("fp32", "mixed"),
        "`mixed`: TensorFlow's mixed-precision rewrite of the unmodified model, fp16 on "
        "an NVIDIA GPU with tensor cores, bf16 through oneDNN on a CPU with AVX512_BF16 "
        "or AMX; on other devices fp32, logged. Checked against fp32 at warm-up by "
        "the guard (SCORING_GUARD_*; docs/precision.md).")
    validation_dir: str = _var(
        "", _text,
        "Images of your own that the precision guard scores both ways, beside the "
        "warm-up image. Empty: the warm-up image only. Read only when "
        "SCORING_PRECISION=mixed.")
    guard_min_top1: float = _var(
        "1.0", _float_range(0, 1),
        "Least fraction of validation images whose best class must be the same in "
        "mixed as in fp32.")
    guard_max_deviation: float = _var(
        "0.02", _float_range(0, 1e9),
        "Largest absolute change in any served score, mixed against fp32, on the "
        "validation images.")
    guard_action: str = _var(
        "fallback", _choice("fallback", "refuse"),
        "Past a guard threshold: `fallback` serves fp32 (logged, in metrics); "
        "`refuse` never goes ready.")
    api_keys_dir: str = _var(
        "/var/run/secrets/scoring", _text,
        "Directory holding the Bearer keys as files `primary` and "
        "`secondary` (a mounted Secret). Re-read when a file changes.")
    auth: str = _var(
        "required", _choice("required", "disabled"),
        "`disabled` runs without keys (local use only; logged loudly). "
        "With `required` and no key file, the server refuses to start.")
    max_batch_size: int = _var(
        "16", _int_range(1, 1024),
        "Largest model call; batches are padded to powers of two up to it. "
        "Below the number of requests in flight, one batch is turned around "
        "while the next is scored (docs/performance.md); on a GPU, measure "
        "larger sizes with the benchmark.")
    batch_timeout_ms: float = _var(
        "100", _float_range(0, 1000),
        "Longest wait for a batch to fill while the server is busy (a lone "
        "request on a quiet server is sent at once). Within it, a wait is at "
        "most a tenth of the model's own time for that batch, timed at warm-up.")
    model_calls: int = _var(
        "auto", _int_range_or_auto(1, 8),
        "Model calls out at once, per worker, each on a native thread of its own. "
        "`auto`: 2 when the model runs on a CPU, 1 on a GPU. Above 1, a further call "
        "starts only while a full batch waits behind those out; on a CPU it overlaps "
        "the model's one-core stretches (docs/performance.md). On a GPU, above 1 is "
        "unmeasured, and TensorFlow does not promise a signature may be called from "
        "several threads at once.")
    max_queue: int = _var(
        "256", _int_range(1, 100000),
        "Images waiting for the model, per worker; past it, 503 + Retry-After.")
    max_queue_wait_ms: int = _var(
        "5000", _int_range(0, 3600000),
        "Longest time from a request's start (its headers read) to its images' model "
        "call, predicted from the model's call times (timed at warm-up, kept current by "
        "every call) and held in the queue; past it, 503 + Retry-After, instead of an "
        "answer many seconds late. SCORING_MAX_QUEUE still holds. 0: no time bound. "
        "Default: docs/reliability.md.")
    request_timeout_ms: int = _var(
        "30000", _int_range(1, 3600000),
        "Deadline for a request's images to be scored; past it, 504.")
    max_body_bytes: int = _var(
        "10485760", _int_range(1, 1 << 31),
        "Largest request body; past it, 413 (the body is not read).")
    max_image_pixels: int = _var(
        "40000000", _int_range(1, 1 << 31),
        "Largest image (width x height) accepted; past it, 400.")
    workers: int = _var(
        "1", _int_range(1, 64),
        "gunicorn worker processes (one model copy each; 1 per GPU).")
    threads: int = _var(
        "4", _int_range(1, 1024),
        "Native threads per worker for image decodes (image-tensor models); "
        "model calls have threads of their own. Requests themselves are "
        "greenlets on gunicorn's gevent worker.")
    worker_connections: int = _var(
        "1000", _int_range(1, 100000),
        "Open client connections per worker (one greenlet each); past it, "
        "new connections wait in the listen backlog.")
    host: str = _var(
        "0.0.0.0", _required_text,
        "Address to listen on (the quick start uses 127.0.0.1).")
    port: int = _var(
        "5001", _int_range(1, 65535),
        "Public HTTP port.")
    metrics_port: int = _var(
        "9090", _int_range(1, 65535),
        "Prometheus metrics port (same address as SCORING_HOST), not routed publicly.")
    drain_seconds: float = _var(
        "5", _float_range(0, 600),
        "On SIGTERM: seconds `/readyz` answers 503 while requests are still "
        "accepted, before the listener closes.")
    graceful_timeout_s: int = _var(
        "30", _int_range(1, 3600),
        "After the drain: seconds in-flight requests get to finish.")
    worker_timeout_s: int = _var(
        "300", _int_range(10, 3600),
        "gunicorn worker timeout; covers model load at boot.")
    log_level: str = _var(
        "info",
        _choice("debug", "info", "warning", "error", "critical"),
        "gunicorn and app log level.")


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(PREFIX + f.name.upper(), f.metadata["default"], f.metadata["parse"],
        f.metadata["doc"], str(f.type)) for f in dataclasses.fields(Config))
_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Parse every variable from ``environ`` (default ``os.environ``).

    ``overrides`` are already-parsed values by field name (tests, quick start),
    each of its field's type. Raises ``SettingsError`` naming the first bad
    variable, an unknown name or a value of the wrong type.
    """
    environ = os.environ if environ is None else environ
    unknown = sorted(set(overrides) - {s.field for s in SETTINGS})
    if unknown:
        raise SettingsError(f"unknown settings: {', '.join(unknown)}")
    values = {}
    for setting in SETTINGS:
        if setting.field in overrides:
            value = overrides[setting.field]
            expected = _TYPES[setting.type]
            # bool is an int: True passes for a count only if the field is a bool
            if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
                if not (expected is float and type(value) is int):
                    raise SettingsError(f"{setting.field}={value!r} is not a {setting.type}")
            values[setting.field] = value
            continue
        raw = environ.get(setting.name, setting.default)
        try:
            values[setting.field] = setting.parse(raw)
        except ValueError as exc:
            raise SettingsError(
                f"{setting.name}={raw!r} is not valid: {exc}") from None
    return Config(**values)


def markdown_table() -> str:
    """docs/service.md's table of variables."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        rows.append(f"| `{s.name}` | {default} | {s.doc} |")
    return "\n".join(rows)
