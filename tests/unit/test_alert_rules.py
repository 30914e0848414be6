"""The shipped Prometheus alerts: promtool accepts them, their unit tests pass, and every
metric they read is one ``/metrics`` really exposes (a renamed metric fails here)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mozaiks_bus.durable.streams import GroupInfo, StreamInfo
from mozaiks_bus.server.metrics import ServerMetrics, render

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "mozaiks-bus.rules.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="promtool (Debian package prometheus) not installed")


def exposed_names() -> set[str]:
    group = GroupInfo("billing", 1, 2, "1-0", 3, "1-0", 12.0)
    stream = StreamInfo("chat.usage_summary", "k", 5, "1-0", "5-0", 5, (group,), 1)
    sink = {"name": "email", "circuit": {"state": "open"}, "queued": 2, "dead_letters": 1}
    body = render(ServerMetrics(), {"published": 1}, [stream],
                  {"receiving": True, "last_message_age_s": 0.5}, [sink]).decode()
    return {line.split("{")[0].split(" ")[0] for line in body.splitlines()
            if line and not line.startswith("#")}


def test_every_metric_the_alerts_read_is_exposed() -> None:
    used = set(re.findall(r"mozaiks_bus_[a-z_]+", RULES.read_text()))
    assert len(used) >= 6  # the regex found the rules' metrics, not nothing
    missing = sorted(used - exposed_names())
    assert not missing, f"the alerts read metrics /metrics does not expose: {missing}"


@needs_promtool
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    checked = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "6 rules found" in checked.stdout
    tested = subprocess.run([str(PROMTOOL), "test", "rules", "mozaiks-bus.rules.test.yml"],
                            cwd=RULES_DIR, capture_output=True, text=True, timeout=60,
                            check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
