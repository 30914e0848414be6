"""Unit tests never see the developer's MOZAIKS_* environment or config file."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from mozaiks_bus.connection import create_sync_client


@pytest.fixture(autouse=True)
def _clean_environment(isolated_env: pytest.MonkeyPatch) -> None:
    """Every unit test runs in :func:`tests.conftest.isolated_env`."""


@pytest.fixture
def api_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test tokens (``server_support.TOKENS``) in the environment, as the API reads them."""
    from tests.unit.server_support import TOKENS  # noqa: PLC0415

    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def sync_redis(memory_url: str) -> Iterator[redis.Redis]:
    """A sync client on the test's ``memory://`` server."""
    client = create_sync_client(memory_url)
    yield client
    client.close()
