"""Every ``SCORING_*`` environment variable, declared once.

The app, ``gunicorn.conf.py`` and the README's table all read this list, so a
variable cannot be documented in one place and parsed differently in another.
A bad value stops the process at start with a message that names the variable
(``SettingsError``), instead of failing on the first request.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

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


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return parse


def _bool(text: str) -> bool:
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


SETTINGS: tuple[Setting, ...] = (
    Setting("SCORING_MODEL_DIR", "/opt/scoring/model", _required_text,
            "SavedModel directory; its `serving_default` signature is served."),
    Setting("SCORING_MODEL_NAME", "model", _required_text,
            "Model name returned with every prediction."),
    Setting("SCORING_MODEL_VERSION", "1", _required_text,
            "Model version returned with every prediction."),
    Setting("SCORING_LABELS_FILE", "", _text,
            "Class labels, one per line. Empty: a `labels.txt` (or the only "
            "`.txt`) among the SavedModel's assets, else class indices."),
    Setting("SCORING_PREPROCESS", "none", _choice("none", "caffe", "tf", "torch"),
            "Pixel preprocessing for image-tensor inputs: `none` (0..255), "
            "`caffe` (BGR, mean subtracted), `tf` ([-1, 1]), `torch` (ImageNet "
            "mean/std). Ignored for encoded-image (string) inputs."),
    Setting("SCORING_OUTPUT", "", _text,
            "Name of the scores output. Empty: the only `[N, K]` float output."),
    Setting("SCORING_APPLY_SOFTMAX", "false", _bool,
            "Apply softmax to the scores output (when the model returns logits)."),
    Setting("SCORING_API_KEYS_DIR", "/var/run/secrets/scoring", _text,
            "Directory holding the Bearer keys as files `primary` and "
            "`secondary` (a mounted Secret). Re-read when a file changes."),
    Setting("SCORING_AUTH", "required", _choice("required", "disabled"),
            "`disabled` runs without keys (local use only; logged loudly). "
            "With `required` and no key file, the server refuses to start."),
    Setting("SCORING_MAX_BATCH_SIZE", "16", _int_range(1, 1024),
            "Largest model call; batches are padded to powers of two up to it. "
            "Below the number of requests in flight, one batch is turned around "
            "while the next is scored (README, Performance); on a GPU, measure "
            "larger sizes with the benchmark."),
    Setting("SCORING_BATCH_TIMEOUT_MS", "100", _float_range(0, 1000),
            "Longest wait for a batch to fill while the server is busy (a lone "
            "request on a quiet server is sent at once). Within it, a wait is at "
            "most a tenth of the model's own time for that batch, timed at warm-up."),
    Setting("SCORING_MODEL_CALLS", "1", _int_range(1, 8),
            "Model calls out at once, per worker, each on a native thread of its own. "
            "Above 1, a further call starts only while a full batch waits behind those "
            "out; on a CPU it overlaps the model's one-core stretches (README, "
            "Performance). Opt-in: TensorFlow does not promise a signature may be "
            "called from several threads at once, and it is unmeasured on a GPU."),
    Setting("SCORING_MAX_QUEUE", "256", _int_range(1, 100000),
            "Images waiting for the model, per worker; past it, 503 + Retry-After."),
    Setting("SCORING_REQUEST_TIMEOUT_MS", "30000", _int_range(1, 3600000),
            "Deadline for a request's images to be scored; past it, 504."),
    Setting("SCORING_MAX_BODY_BYTES", "10485760", _int_range(1, 1 << 31),
            "Largest request body; past it, 413 (the body is not read)."),
    Setting("SCORING_MAX_IMAGE_PIXELS", "40000000", _int_range(1, 1 << 31),
            "Largest image (width x height) accepted; past it, 400."),
    Setting("SCORING_WORKERS", "1", _int_range(1, 64),
            "gunicorn worker processes (one model copy each; 1 per GPU)."),
    Setting("SCORING_THREADS", "4", _int_range(1, 1024),
            "Native threads per worker for image decodes (image-tensor models); "
            "model calls have threads of their own. Requests themselves are "
            "greenlets on gunicorn's gevent worker."),
    Setting("SCORING_WORKER_CONNECTIONS", "1000", _int_range(1, 100000),
            "Open client connections per worker (one greenlet each); past it, "
            "new connections wait in the listen backlog."),
    Setting("SCORING_HOST", "0.0.0.0", _required_text,
            "Address to listen on (the quick start uses 127.0.0.1)."),
    Setting("SCORING_PORT", "5001", _int_range(1, 65535),
            "Public HTTP port."),
    Setting("SCORING_METRICS_PORT", "9090", _int_range(1, 65535),
            "Prometheus metrics port (same address as SCORING_HOST), not routed publicly."),
    Setting("SCORING_DRAIN_SECONDS", "5", _float_range(0, 600),
            "On SIGTERM: seconds `/readyz` answers 503 while requests are still "
            "accepted, before the listener closes."),
    Setting("SCORING_GRACEFUL_TIMEOUT_S", "30", _int_range(1, 3600),
            "After the drain: seconds in-flight requests get to finish."),
    Setting("SCORING_WORKER_TIMEOUT_S", "300", _int_range(10, 3600),
            "gunicorn worker timeout; covers model load at boot."),
    Setting("SCORING_LOG_LEVEL", "info",
            _choice("debug", "info", "warning", "error", "critical"),
            "gunicorn and app log level."),
)

Config = dataclasses.make_dataclass(
    "Config", [(s.field, Any) for s in SETTINGS], frozen=True)
Config.__doc__ = "Parsed settings: one attribute per variable (lower case, no prefix)."


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Any:
    """Parse every variable from ``environ`` (default ``os.environ``).

    ``overrides`` are already-parsed values by field name (tests, quick start).
    Raises ``SettingsError`` naming the first bad variable.
    """
    environ = os.environ if environ is None else environ
    values = {}
    for setting in SETTINGS:
        if setting.field in overrides:
            values[setting.field] = overrides.pop(setting.field)
            continue
        raw = environ.get(setting.name, setting.default)
        try:
            values[setting.field] = setting.parse(raw)
        except ValueError as exc:
            raise SettingsError(
                f"{setting.name}={raw!r} is not valid: {exc}") from None
    if overrides:
        raise SettingsError(f"unknown settings: {', '.join(sorted(overrides))}")
    return Config(**values)


def markdown_table() -> str:
    """The README's table of variables."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        rows.append(f"| `{s.name}` | {default} | {s.doc} |")
    return "\n".join(rows)
