"""Fixtures of the integration tests (beside the shared ones in ``tests/conftest.py``)."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(scope="module")
def prefix() -> str:
    """A key prefix shared by one module's tests (for module-scoped ``serve`` processes;
    function-scoped tests use ``key_prefix``)."""
    return f"m{uuid.uuid4().hex[:8]}"
