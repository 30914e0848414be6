"""An embedded Redis for ``mozaiks-bus up`` and ``demo`` when no broker is configured.

``redis-server`` from PATH is started on a free loopback port with its data in a local
directory, AOF on (``appendfsync everysec``), ``maxmemory-policy noeviction`` and
protected mode, so confirmed events survive a restart of the stack on the same data
directory. Without ``redis-server`` the fallback is ``memory://`` (fakeredis inside
this process): it works, but nothing survives a restart and other processes cannot
reach it, which the caller must say loudly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from mozaiks_bus.errors import BrokerUnavailable

__all__ = ["EmbeddedRedis", "free_loopback_port", "start_embedded_redis"]

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """A running embedded Redis (or the in-memory fallback); ``url`` is its broker URL."""

    url: str
    data_dir: Path | None
    persistent: bool
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Shut the server down (SIGTERM: Redis flushes the AOF), bounded, then SIGKILL."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


def start_embedded_redis(data_dir: str | os.PathLike[str], *, name: str = "embedded"
                         ) -> EmbeddedRedis:
    """Start ``redis-server`` in ``data_dir`` (created if missing), or fall back to memory.

    Raises :class:`BrokerUnavailable` if the binary exists but the server does not
    answer PING within ten seconds (the log tail is in the message).
    """
    binary = shutil.which("redis-server")
    if binary is None:
        return EmbeddedRedis(url=f"memory://{name}", data_dir=None, persistent=False)
    directory = Path(data_dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    port = free_loopback_port()
    log = directory / "redis.log"
    command = [
        binary, "--bind", "127.0.0.1", "--port", str(port), "--protected-mode", "yes",
        "--dir", str(directory), "--appendonly", "yes", "--appendfsync", "everysec",
        "--save", "", "--maxmemory-policy", "noeviction", "--daemonize", "no",
        "--logfile", str(log),
    ]
    process = subprocess.Popen(  # noqa: S603  # our own arguments, no shell
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    embedded = EmbeddedRedis(url=url, data_dir=directory, persistent=True, process=process)
    deadline = time.monotonic() + START_TIMEOUT_S
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            with contextlib.suppress(redis.exceptions.RedisError):
                if client.ping():
                    return embedded
            time.sleep(0.05)
    finally:
        client.close()
    embedded.stop()
    tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
    raise BrokerUnavailable("the embedded redis-server did not start:\n" + "\n".join(tail))
