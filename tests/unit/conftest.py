"""Unit tests never see the developer's MOZAIKS_* environment or config file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("MOZAIKS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
