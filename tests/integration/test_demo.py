"""`mozaiks-bus demo` runs to the end unattended, and says each step happened (the
demo checks every step itself and exits 1 if one did not)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.support import clean_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server on PATH")
def test_the_demo_runs_every_step() -> None:
    env = clean_env()
    result = subprocess.run(
        [sys.executable, "-m", "mozaiks_bus.cli", "demo"], env=env, capture_output=True,
        text=True, timeout=240, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for title in ("1. fan-out", "2. durable", "3. crash", "4. HTTP", "5. dead letter",
                  "6. ui"):
        assert f"== {title}" in result.stdout
    assert "Every step happened." in result.stdout
