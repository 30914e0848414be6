"""Helpers for the sink integration tests: config files, worker processes, publishing.

:class:`WorkerProcess` runs the real worker service (``tests.integration.sink_worker_proc``
or the ``mozaiks-bus worker`` CLI) in its own session, so :meth:`WorkerProcess.kill` can
SIGKILL the supervisor and its RQ worker processes at once; its whole output goes to a
log file the tests read (ready line, and the no-secrets check). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from mozaiks_bus import Bus, Event, load_settings
from mozaiks_bus.settings import BusSettings
from tests.support import clean_env

ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "mozaiks-bus worker ready"
FAST_OPTIONS = {"processes": 2, "heartbeat_s": 0.5, "dead_after_s": 3.0,
                "sweep_interval_s": 0.5}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}"
                                for k, v in value.items()) + " }"
    raise TypeError(value)


def write_config(path: Path, *, url: str, prefix: str, sinks: list[dict[str, Any]],
                 **top: Any) -> Path:
    """A TOML config with ``broker_url``, ``prefix``, extra top-level keys, ``[[sinks]]``."""
    lines = [f"broker_url = {_toml_value(url)}", f"prefix = {_toml_value(prefix)}"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in top.items()]
    for sink in sinks:
        lines.append("\n[[sinks]]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in sink.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class WorkerProcess:
    """One worker service process (see the module docstring)."""

    def __init__(self, config: Path, log_path: Path, *, env: Mapping[str, str] | None = None,
                 options: Mapping[str, Any] | None = None, cli: bool = False) -> None:
        self.config = config
        self.log_path = log_path
        self.env = clean_env()
        self.env.update(env or {})
        self.env["PYTHONUNBUFFERED"] = "1"
        if cli:
            processes = str((options or {}).get("processes", 2))
            self.argv = [sys.executable, "-m", "mozaiks_bus.cli", "--config", str(config),
                         "worker", "--processes", processes]
        else:
            self.argv = [sys.executable, "-m", "tests.integration.sink_worker_proc",
                         str(config), json.dumps(dict(FAST_OPTIONS, **(options or {})))]
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self) -> WorkerProcess:
        """Start the process without waiting for it to be ready."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        return self

    def start(self, timeout: float = 30.0) -> WorkerProcess:
        """Start the process and wait (bounded) for its ready line."""
        self.launch()
        return self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        """Wait (bounded) until the log has the ready line."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"worker not ready in {timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (bounded); SIGKILL the whole session if it did not exit."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.kill()  # leftovers of the session, if any
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the supervisor and every process of its session."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def settings_for(url: str, prefix: str, config: Path | None = None) -> BusSettings:
    """The settings a test (publisher, admin API) uses: the same file as the worker."""
    if config is not None:
        return load_settings(config_path=config, env={})
    return load_settings(broker_url=url, prefix=prefix, env={})


def publish(settings: BusSettings, type_name: str, datas: list[dict[str, Any]],
            **attrs: Any) -> list[Event]:
    """Publish durable events (confirmed) and return them."""

    async def go() -> list[Event]:
        async with Bus(config=settings) as bus:
            return [await bus.publish(type_name, data, durable=True, fanout=False, **attrs)
                    for data in datas]

    return asyncio.run(go())


def sync_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)

