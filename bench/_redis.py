"""A private, throw-away ``redis-server`` for benches, on a free 127.0.0.1 port.

Binds loopback only, no persistence, its own temp directory (deleted on close). On
Linux the server gets SIGKILL if the process that started it dies, so no bench leaves
a server behind. The pub/sub output buffer limit is raised so a subscriber that lags
during a burst is measured, not disconnected.
"""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from mozaiks_bus.ops.redis_server import free_loopback_port

__all__ = ["BenchRedis", "private_redis"]

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0




def _die_with_parent() -> None:  # in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class BenchRedis:
    """One private ``redis-server``: ``start()``, ``url``, ``close()``."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH; pass a loopback url instead")
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="mozaiks-bench-redis-"))
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        out = subprocess.run(  # noqa: PLW1510
            [self.binary, "--version"], capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()

    def start(self) -> BenchRedis:
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_loopback_port()
            args = [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--protected-mode", "yes", "--daemonize", "no", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--logfile", "",
                "--client-output-buffer-limit", "pubsub 512mb 256mb 60",
            ]
            log = (self.dir / "redis.log").open("ab")
            with log:
                self.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
                )
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _answers_ping(self.port):
                    return self
                time.sleep(0.02)
            self._stop_proc()
        raise RuntimeError(f"redis-server did not start; log in {self.dir}/redis.log")

    def _stop_proc(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)

    def close(self) -> None:
        self._stop_proc()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def private_redis() -> Iterator[BenchRedis]:
    """Start a private server for the ``with`` block; always stopped and removed."""
    server = BenchRedis()
    try:
        yield server.start()
    finally:
        server.close()
