"""Fixtures of the integration tests (beside the shared ones in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.sink_target import Target


@pytest.fixture
def target() -> Iterator[Target]:
    """A real local HTTP server that fails on cue (see :mod:`tests.integration.sink_target`)."""
    server = Target()
    yield server
    server.close()
