"""Names Azure wants unique across all of Azure (storage accounts, registries)."""
from __future__ import annotations

import re

import pulumi
import pulumi_random as random


def globally_unique(name: str, stem_length: int, opts: pulumi.ResourceOptions) -> pulumi.Output[str]:
    """Lowercase alphanumerics: the project and stack (cut to ``stem_length``) plus a random
    suffix of 8 kept in state (the RandomString ``<name>-suffix``), so the name is stable
    across updates and distinct between stacks and users."""
    stem = re.sub(r"[^a-z0-9]", "", f"{pulumi.get_project()}{pulumi.get_stack()}".lower())
    suffix = random.RandomString(f"{name}-suffix", length=8, special=False, upper=False, opts=opts)
    return pulumi.Output.concat(stem[:stem_length], suffix.result)
