"""Where the CLI finds a running `up` (mozaiks_bus.ops.stack), and the one-line refusal
of a command that would talk to no broker."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from mozaiks_bus import Bus, load_settings
from mozaiks_bus.cli import cli
from mozaiks_bus.ops import up
from mozaiks_bus.ops.doctor import run_checks
from mozaiks_bus.ops.stack import (
    Stack,
    find_stack,
    read_port,
    remove_stack,
    resolve_data_dir,
    write_port,
    write_stack,
)

ROOT = Path(__file__).resolve().parents[2]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


def record(data_dir: Path, broker_url: str, pid: int | None = None) -> None:
    write_stack(Stack(broker_url=broker_url, api_url="http://127.0.0.1:9", data_dir=str(data_dir),
                      pid=os.getpid() if pid is None else pid))


def test_the_data_directory_is_the_option_else_the_home_variable_else_dot_mozaiks_bus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir(None, {}) == tmp_path / ".mozaiks-bus"
    assert resolve_data_dir(None, {"MOZAIKS_BUS_HOME": "/srv/bus"}) == Path("/srv/bus")
    assert resolve_data_dir("here", {"MOZAIKS_BUS_HOME": "/srv/bus"}) == tmp_path / "here"


def test_a_record_is_found_while_its_pid_lives_and_ignored_once_it_is_gone(
    tmp_path: Path,
) -> None:
    assert find_stack(tmp_path) is None
    record(tmp_path, "redis://127.0.0.1:7000/0")
    found = find_stack(tmp_path)
    assert found is not None
    assert found.broker_url == "redis://127.0.0.1:7000/0"
    assert (tmp_path / "stack.json").stat().st_mode & 0o077 == 0  # may hold a password

    record(tmp_path, "redis://127.0.0.1:7000/0", pid=dead_pid())
    assert find_stack(tmp_path) is None


def test_only_the_up_that_wrote_the_record_removes_it(tmp_path: Path) -> None:
    record(tmp_path, "redis://127.0.0.1:7000/0", pid=os.getpid())
    remove_stack(tmp_path, os.getpid() + 1)
    assert find_stack(tmp_path) is not None
    remove_stack(tmp_path, os.getpid())
    assert not (tmp_path / "stack.json").exists()


def test_the_redis_port_is_remembered(tmp_path: Path) -> None:
    assert read_port(tmp_path) is None
    write_port(tmp_path, 6390)
    assert read_port(tmp_path) == 6390
    (tmp_path / "redis-port").write_text("not a port\n")
    assert read_port(tmp_path) is None


def test_up_waits_for_the_line_the_worker_writes_when_it_is_ready() -> None:
    """up's readiness marker must be what the worker logs (they live in two modules)."""
    source = (ROOT / "mozaiks_bus" / "sinks" / "worker.py").read_text(encoding="utf-8")
    assert up.WORKER_READY.decode() in source


@pytest.mark.parametrize("command", [
    ["publish", "x.y", "{}"],
    ["tail", "*", "--timeout", "1"],
    ["status"],
    ["dlq", "list"],
    ["dlq", "purge", "x.y"],
    ["replay", "x.y", "group", "--from-id", "0"],
])
def test_a_command_with_no_broker_and_no_stack_exits_2_in_one_line(
    isolated_env: pytest.MonkeyPatch, command: list[str],
) -> None:
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("mozaiks-bus: no broker: ")
    assert "MOZAIKS_BROKER_URL" in lines[0]
    assert "mozaiks-bus up" in lines[0]
    if command[0] == "publish":
        assert "would reach no one" in lines[0]


def test_a_stale_record_is_named_in_the_refusal(isolated_env: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    record(tmp_path / ".mozaiks-bus", "redis://127.0.0.1:7000/0", pid=dead_pid())
    result = CliRunner().invoke(cli, ["publish", "x.y", "{}"])
    assert result.exit_code == 2
    assert "is gone" in result.output


def stored(url: str, type_name: str) -> int:
    async def count() -> int:
        async with Bus(config=load_settings(broker_url=url)) as bus:
            return sum(info.length for info in await bus.streams.streams()
                       if info.type == type_name)

    return asyncio.run(count())


@pytest.mark.parametrize("how", ["cwd", "--data-dir", "MOZAIKS_BUS_HOME"])
def test_commands_use_the_broker_of_the_stack_of_their_data_directory(
    isolated_env: pytest.MonkeyPatch, tmp_path: Path, memory_url: str, how: str,
) -> None:
    data_dir = tmp_path / ".mozaiks-bus"
    record(data_dir, memory_url)
    args = ["publish", "orders.created", '{"n": 1}', "--durable"]
    if how != "cwd":
        isolated_env.chdir("/")
    if how == "--data-dir":
        args = ["--data-dir", str(data_dir), *args]
    if how == "MOZAIKS_BUS_HOME":
        isolated_env.setenv("MOZAIKS_BUS_HOME", str(data_dir))
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert stored(memory_url, "orders.created") == 1
    config = CliRunner().invoke(cli, ["config"] if how != "--data-dir"
                                else ["--data-dir", str(data_dir), "config"])
    assert json.loads(config.stdout)["broker_url"] == memory_url


def test_a_configured_broker_wins_over_the_stack(
    isolated_env: pytest.MonkeyPatch, tmp_path: Path, memory_url: str,
) -> None:
    record(tmp_path / ".mozaiks-bus", "redis://127.0.0.1:1/0")
    isolated_env.setenv("MOZAIKS_BROKER_URL", memory_url)
    result = CliRunner().invoke(cli, ["publish", "orders.created", "{}", "--durable"])
    assert result.exit_code == 0, result.output
    assert stored(memory_url, "orders.created") == 1


def test_doctor_without_a_broker_points_at_up_and_the_data_directory(
    isolated_env: pytest.MonkeyPatch,
) -> None:
    assert CliRunner().invoke(cli, ["doctor"]).exit_code == 1
    (check,) = run_checks(load_settings())
    assert check.status == "fail"
    assert "no `mozaiks-bus up` runs in this data directory" in check.found
    assert "--data-dir" in check.hint
