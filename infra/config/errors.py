"""The one error a bad config value raises."""
from __future__ import annotations

import pulumi


class ConfigError(ValueError):
    """A config value that cannot work; the message starts with the full key."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{pulumi.get_project()}:{key}: {message}")
        self.key = key
