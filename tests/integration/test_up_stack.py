"""`mozaiks-bus up` as a newcomer meets it: a second shell's commands find the stack with
no variable set, Ctrl-C (SIGINT to up's whole process group) stops it in order, a
restart keeps the Redis port, and a broken config or a taken port prints no banner."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.redis_server import free_port, redis_server_binary
from tests.support import clean_env, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(redis_server_binary() is None, reason="needs redis-server on PATH"),
]
ROOT = Path(__file__).resolve().parents[2]
BANNER = "mozaiks-bus is up:"
STOP_BOUND_S = 30.0
SHUTDOWN_NOISE = ("waiting for Redis", "Connection refused", "lost supervisor", "Traceback")


def up_env(tmp_path: Path) -> dict[str, str]:
    """No MOZAIKS_* variable; the test app importable from any directory."""
    return clean_env({"PYTHONPATH": str(ROOT), "UP_TEST_OUT": str(tmp_path / "consumed.txt")})


def start_up(cwd: Path, log: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """up in a process group of its own, like a job in an interactive shell."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mozaiks_bus.cli", "up", *args], cwd=cwd, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def ctrl_c(proc: subprocess.Popen[bytes]) -> float:
    """SIGINT to up's whole process group (what the terminal does); seconds to exit."""
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(STOP_BOUND_S + 30)
    return time.monotonic() - started


def mozaiks(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A CLI command in another shell."""
    return subprocess.run([sys.executable, "-m", "mozaiks_bus.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=90, check=False)


def wait_for_banner(proc: subprocess.Popen[bytes], log: Path) -> str:
    wait_until(lambda: BANNER in log.read_text() or proc.poll() is not None, 150,
               "the banner of up")
    text = log.read_text()
    assert proc.poll() is None, text
    return text


def broker_port(banner: str) -> int:
    found = re.search(r"broker +redis://127\.0\.0\.1:(\d+)/0", banner)
    assert found is not None, banner
    return int(found.group(1))


def test_a_second_shell_finds_the_stack_ctrl_c_stops_it_in_order_and_the_port_stays(
    tmp_path: Path,
) -> None:
    env = up_env(tmp_path)
    api_port = free_port()
    log = tmp_path / "up.log"
    proc = start_up(tmp_path, log, env, "tests.integration.up_app:bus", "--port", str(api_port))
    try:
        banner = wait_for_banner(proc, log)
        for line in ("/docs", "/console", "/metrics", str(tmp_path / ".mozaiks-bus"),
                     "none needed"):
            assert line in banner.split(BANNER)[1], banner
        port = broker_port(banner)
        second_shell(tmp_path, env, api_port)

        assert ctrl_c(proc) < STOP_BOUND_S
        text = log.read_text()
        assert proc.returncode == 0, text
        assert not [noise for noise in SHUTDOWN_NOISE if noise in text], text
        assert "embedded Redis stopped" in text
        assert not (tmp_path / ".mozaiks-bus" / "stack.json").exists()

        again = tmp_path / "again.log"
        proc = start_up(tmp_path, again, env, "tests.integration.up_app:bus",
                        "--port", str(api_port))
        assert broker_port(wait_for_banner(proc, again)) == port
        assert ctrl_c(proc) < STOP_BOUND_S
        text = again.read_text()
        assert proc.returncode == 0, text
        assert not [noise for noise in SHUTDOWN_NOISE if noise in text], text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def second_shell(tmp_path: Path, env: dict[str, str], api_port: int) -> None:
    """status, publish, tail and dlq list with no variable set: in up's directory, with
    --data-dir and with MOZAIKS_BUS_HOME from elsewhere."""
    status = mozaiks(tmp_path, env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["broker"]

    tail = subprocess.Popen(
        [sys.executable, "-m", "mozaiks_bus.cli", "tail", "orders.*", "--count", "1",
         "--timeout", "90"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    published: list[str] = []
    try:
        for _attempt in range(12):  # until the tail has subscribed and shows one of them
            done = mozaiks(tmp_path, env, "publish", "orders.created", '{"n": 1}', "--durable")
            assert done.returncode == 0, done.stderr
            published.append(done.stdout.strip())
            with contextlib.suppress(subprocess.TimeoutExpired):
                tail.wait(5)
                break
        out, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait(10)
    assert tail.returncode == 0, err
    assert json.loads(out.splitlines()[0])["id"] in published
    event_id = published[-1]
    consumed = tmp_path / "consumed.txt"
    wait_until(lambda: consumed.exists() and event_id in consumed.read_text(), 30,
               "up's app consumer to get the event published from the second shell")

    dlq = mozaiks(tmp_path, env, "dlq", "list", "--json")
    assert dlq.returncode == 0, dlq.stderr
    assert json.loads(dlq.stdout) == []

    data_dir = str(tmp_path / ".mozaiks-bus")
    elsewhere = mozaiks(ROOT, env, "--data-dir", data_dir, "status", "--json")
    assert elsewhere.returncode == 0, elsewhere.stderr
    home = mozaiks(ROOT, {**env, "MOZAIKS_BUS_HOME": data_dir}, "publish", "orders.created",
                   '{"n": 2}', "--durable")
    assert home.returncode == 0, home.stderr
    wait_until(lambda: home.stdout.strip() in consumed.read_text(), 30,
               "the event published with MOZAIKS_BUS_HOME")
    assert f"127.0.0.1:{api_port}" in (tmp_path / ".mozaiks-bus" / "stack.json").read_text()


def test_up_with_a_sink_secret_missing_prints_no_banner_and_exits_with_the_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "mozaiks-bus.toml").write_text(
        '[[sinks]]\nname = "email"\nurl = "https://email.example/send"\n'
        'patterns = ["notification.created"]\nauth_bearer_env = "UP_TEST_UNSET_SECRET"\n',
        encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mozaiks_bus.cli", "up", "--port", str(free_port())],
        cwd=tmp_path, env=up_env(tmp_path), capture_output=True, text=True, timeout=180,
        check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert BANNER not in output
    last = result.stderr.strip().splitlines()[-3:]
    assert any("UP_TEST_UNSET_SECRET" in line for line in last), output
    assert not (tmp_path / ".mozaiks-bus" / "stack.json").exists()


def test_up_with_a_broken_config_file_exits_2_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "mozaiks-bus.toml").write_text('service = "ok"\nprefix = "has:colon"\n',
                                              encoding="utf-8")
    result = mozaiks(tmp_path, up_env(tmp_path), "up", "--port", str(free_port()))
    assert result.returncode == 2
    assert BANNER not in result.stderr
    assert "mozaiks-bus.toml:2" in result.stderr


def test_up_on_a_taken_redis_port_says_so_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = mozaiks(tmp_path, up_env(tmp_path), "up", "--port", str(free_port()),
                         "--redis-port", str(port))
    assert result.returncode == 1
    assert f"port {port} (asked for with --redis-port) is taken by another process" \
        in result.stderr
    assert BANNER not in result.stderr
