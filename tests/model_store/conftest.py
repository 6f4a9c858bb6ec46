"""A container per test in the session's Azurite (tests/conftest.py), and a token."""
from __future__ import annotations

import itertools

import pytest

from tests.model_store.azurite import Token

_names = itertools.count()


@pytest.fixture()
def container(azurite):
    """A fresh private container (Azurite's OAuth level checks no permission, so the
    test's own token may create it and upload, as the stack's identity would)."""
    client = azurite.container(f"models{next(_names)}")
    client.create_container()
    yield client
    client.close()


@pytest.fixture()
def token():
    return Token()
