"""``mozaiks-bus worker --check`` (the compose health check) against a real Redis: it
passes only while a worker runs on this host, and fails once it stopped or died."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from mozaiks_bus.ops.worker_check import check_worker
from mozaiks_bus.settings import BusSettings, load_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(redis_url: str, key_prefix: str) -> BusSettings:
    return load_settings(broker_url=redis_url, prefix=key_prefix)


def beat(settings: BusSettings, *, host: str | None = None, pid: int | None = None,
         role: str = "supervisor") -> str:
    """Write a liveness key as the worker's supervisor does (Reconciler.heartbeat)."""
    name = f"{settings.keys.sink_worker_prefix()}{host or socket.gethostname()}." \
           f"{pid or os.getpid()}"
    with redis.Redis.from_url(str(settings.broker_url)) as client:
        client.set(settings.keys.sink_process(name),
                   json.dumps({"pid": pid or os.getpid(), "role": role}), px=10_000)
    return name


def test_no_worker_fails(settings: BusSettings) -> None:
    result = check_worker(settings)
    assert not result.alive
    assert "no sink worker is running" in result.message


@pytest.mark.parametrize("proc", ["/proc", "/nonexistent-proc"])  # /proc, else SCAN
def test_a_fresh_supervisor_key_of_a_live_local_pid_passes(settings: BusSettings,
                                                           proc: str) -> None:
    name = beat(settings)
    result = check_worker(settings, proc=proc)
    assert result.alive, result.message
    assert name in result.message


def test_keys_that_prove_nothing_here_fail(settings: BusSettings) -> None:
    beat(settings, host="another-host")  # a worker elsewhere
    beat(settings, role="worker")  # an RQ worker process, not the supervisor
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    beat(settings, pid=dead.pid)  # the supervisor died (SIGKILL: its key outlives it)
    assert not check_worker(settings).alive
    assert not check_worker(settings, proc="/nonexistent-proc").alive


def test_an_unreachable_redis_fails_with_the_reason(key_prefix: str) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = load_settings(broker_url=f"redis://127.0.0.1:{port}/0", prefix=key_prefix)
    result = check_worker(settings)
    assert not result.alive
    assert "cannot read the worker's liveness" in result.message


def _check(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mozaiks_bus.cli", "worker", "--check"],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)


def test_the_cli_check_follows_a_real_worker(redis_url: str, key_prefix: str,
                                             tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOZAIKS_")}
    env.update(MOZAIKS_BROKER_URL=redis_url, MOZAIKS_BUS_PREFIX=key_prefix)
    assert _check(env, tmp_path).returncode == 1
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen([sys.executable, "-m", "mozaiks_bus.cli", "worker", "-p", "1"],
                              env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while (result := _check(env, tmp_path)).returncode != 0:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker never became healthy"
            time.sleep(0.5)
        assert f"pid {worker.pid}" in result.stdout
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
        stopped = _check(env, tmp_path)
        assert stopped.returncode == 1
        assert "no sink worker is running" in stopped.stderr
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        log.close()
