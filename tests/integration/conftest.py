"""Fixtures of the integration tests (beside the shared ones in ``tests/conftest.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.integration.sink_support import WorkerProcess


@pytest.fixture(scope="module")
def prefix() -> str:
    """A key prefix shared by one module's tests (for module-scoped ``serve`` processes;
    function-scoped tests use ``key_prefix``)."""
    return f"m{uuid.uuid4().hex[:8]}"


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Sink worker services a test started (append them); each is stopped after it."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()
