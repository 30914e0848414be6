"""The tests' private ``redis-server``: the package's one launcher with test defaults.

``RedisServer(appendonly=True)`` means AOF with ``appendfsync always``, so acknowledged
writes survive a SIGKILL; the server gets SIGKILL if the test process dies, and its
directory is deleted on close (see :mod:`mozaiks_bus.ops.redis_server`).
"""

from __future__ import annotations

from collections.abc import Sequence

from mozaiks_bus.ops.redis_server import (
    RedisServerError,
    RedisServerProcess,
    free_loopback_port,
    redis_server_binary,
)

__all__ = ["RedisServer", "RedisServerError", "free_port", "redis_server_binary"]

free_port = free_loopback_port


class RedisServer(RedisServerProcess):
    """A private server in its own temporary directory, loopback only."""

    def __init__(self, *, appendonly: bool = False, extra_args: Sequence[str] = (),
                 binary: str | None = None) -> None:
        super().__init__(appendfsync="always" if appendonly else None, extra_args=extra_args,
                         binary=binary)
