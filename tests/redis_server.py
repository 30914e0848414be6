"""A private ``redis-server`` for integration and fault tests, on a free loopback port.

The server binds 127.0.0.1 only, keeps its data in its own directory and logs there.
Tests may stop, kill and restart it; ``restart()`` keeps the port and the directory,
so with ``appendonly=True`` (``appendfsync always``) acknowledged writes survive it.

No process is ever left behind: :meth:`RedisServer.close` stops the server and deletes
its directory, a finaliser does the same at garbage collection or interpreter exit, and
on Linux the server gets SIGKILL if the process that started it dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["RedisServer", "RedisServerError", "free_port", "redis_server_binary"]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class RedisServerError(RuntimeError):
    """The server did not start (the message ends with the tail of its log)."""


def redis_server_binary() -> str | None:
    """The ``redis-server`` on PATH, or None."""
    return shutil.which("redis-server")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(STOP_TIMEOUT)


def _cleanup(procs: list[subprocess.Popen[bytes]], directory: str | None) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_TIMEOUT)
    procs.clear()
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


class RedisServer:
    """One private ``redis-server`` process; see the module docstring."""

    def __init__(
        self,
        *,
        appendonly: bool = False,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise RedisServerError("redis-server is not on PATH")
        self.binary = found
        self.appendonly = appendonly
        self.extra_args = tuple(extra_args)  # e.g. ("--maxmemory-policy", "allkeys-lru")
        self.dir = Path(tempfile.mkdtemp(prefix="mozaiks-redis-"))
        self.log_path = self.dir / "redis.log"
        self.port: int | None = None
        self._procs: list[subprocess.Popen[bytes]] = []  # the live one, if any
        self._finalizer = weakref.finalize(self, _cleanup, self._procs, str(self.dir))

    @property
    def url(self) -> str:
        if self.port is None:
            raise RedisServerError("the server was never started")
        return f"redis://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return bool(self._procs) and self._procs[0].poll() is None

    @property
    def pid(self) -> int | None:
        return self._procs[0].pid if self.running else None

    def command(self) -> list[str]:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--protected-mode", "yes", "--daemonize", "no", "--save", ""]
        args += ["--dir", str(self.dir), "--logfile", ""]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        return [*args, *self.extra_args]

    def start(self) -> RedisServer:
        """Start the server (a new free port the first time) and wait for PING."""
        if self.running:
            return self
        fixed = self.port is not None
        for _attempt in range(3):  # a fresh port can be taken between probe and bind
            if not fixed:
                self.port = free_port()
            try:
                self._spawn()
                return self
            except RedisServerError:
                if fixed or "Address already in use" not in self.log_tail():
                    raise
        raise RedisServerError(f"no free port found\n{self.log_tail()}")

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        self._procs[:] = [proc]
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._procs.clear()
                raise RedisServerError(
                    f"redis-server exited with {proc.returncode}\n{self.log_tail()}"
                )
            if self._answers_ping():
                return
            time.sleep(0.02)
        _terminate(proc, 0.5)
        self._procs.clear()
        raise RedisServerError(
            f"redis-server did not answer PING in {START_TIMEOUT} s\n{self.log_tail()}"
        )

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", int(self.port or 0)), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        # "+PONG", or "-NOAUTH" when the extra args set a password: the server is serving.
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (the server flushes its AOF), wait up to ``timeout``, then SIGKILL."""
        for proc in self._procs:
            _terminate(proc, timeout)
        self._procs.clear()

    def kill(self) -> None:
        """SIGKILL at once, like a crash or an OOM kill."""
        for proc in self._procs:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
        self._procs.clear()

    def restart(self) -> RedisServer:
        """Stop (if running) and start again on the same port with the same directory."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server for good and delete its directory."""
        self._finalizer()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return os.linesep.join(text.splitlines()[-lines:])

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
