"""Unit tests never see the developer's MOZAIKS_* environment or config file."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(isolated_env: pytest.MonkeyPatch) -> None:
    """Every unit test runs in :func:`tests.conftest.isolated_env`."""
