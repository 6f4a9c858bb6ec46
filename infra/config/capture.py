"""Payload capture's keys (docs/capture.md), per deployment as stack-wide: a deployment's key
overrides the stack's, as precision's does."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from infra.config.errors import ConfigError

KEYS = ("capture", "captureSamplingRate", "captureImages", "captureRetentionDays")
#: Azure's lifecycle rules take whole days up to 99999 (ARM schema: DateAfterCreation).
MAX_RETENTION_DAYS = 99999


@dataclass(frozen=True)
class CaptureConfig:
    enabled: bool
    sampling_rate: float  # Azure ML's data collector's sampling_rate
    images: bool  # off keeps each input's sha256, size and format (images may be personal)
    retention_days: int


def parse(prefix: str, entry: Mapping, default: CaptureConfig | None, flag) -> CaptureConfig:
    """The four keys from ``entry`` (a deployment's map, or the stack's values), each
    defaulting to ``default``'s (None: ``entry`` has all four); ``prefix`` names them
    (``deployments.green.``); ``flag(key, value)`` is config's boolean reader. Raises
    ConfigError naming the key."""
    def value(key: str, field: str):
        return entry[key] if key in entry else getattr(default, field)
    rate = value("captureSamplingRate", "sampling_rate")
    if isinstance(rate, str):
        try:
            rate = float(rate)
        except ValueError:
            pass
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise ConfigError(f"{prefix}captureSamplingRate", f"{rate!r} must be a fraction above 0 "
                          "and at most 1 (0.05: one request in twenty)")
    days = value("captureRetentionDays", "retention_days")
    whole = int(days) if isinstance(days, str) and days.strip().isdigit() else days
    if isinstance(whole, bool) or not isinstance(whole, int) or not 1 <= whole <= MAX_RETENTION_DAYS:
        raise ConfigError(f"{prefix}captureRetentionDays", f"{days!r} must be a whole number of "
                          f"days, 1 to {MAX_RETENTION_DAYS}")
    return CaptureConfig(
        enabled=flag(f"{prefix}capture", value("capture", "enabled")),
        sampling_rate=float(rate),
        images=flag(f"{prefix}captureImages", value("captureImages", "images")),
        retention_days=whole)
