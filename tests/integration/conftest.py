"""Fixtures of the integration tests (beside the shared ones in ``tests/conftest.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.sink_target import Target


@pytest.fixture
def target() -> Iterator[Target]:
    """A real local HTTP server that fails on cue (see :mod:`tests.integration.sink_target`)."""
    server = Target()
    yield server
    server.close()


@pytest.fixture(scope="module")
def prefix() -> str:
    """A key prefix shared by one module's tests (for module-scoped ``serve`` processes;
    function-scoped tests use ``key_prefix``)."""
    return f"m{uuid.uuid4().hex[:8]}"
