"""One Azurite per session (HTTPS + OAuth), a container per test, the demo SavedModel."""
from __future__ import annotations

import itertools

import pytest

from tests.model_store.azurite import Azurite, Token

_names = itertools.count()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    emulator = Azurite(tmp_path_factory.mktemp("azurite")).start()
    try:
        yield emulator
    finally:
        emulator.stop()


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
