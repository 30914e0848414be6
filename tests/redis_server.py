"""The tests' private ``redis-server``: the package's one launcher with test defaults.

``RedisServer(appendonly=True)`` means AOF with ``appendfsync always``, on the server
:func:`redis_server_binary` names (Redis, or Valkey in CI's second pass), so acknowledged
writes survive a SIGKILL; the server gets SIGKILL if the test process dies, and its
directory is deleted on close (see :mod:`mozaiks_bus.ops.redis_server`).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from mozaiks_bus.ops.redis_server import (
    RedisServerError,
    RedisServerProcess,
    free_loopback_port,
)

__all__ = ["RedisServer", "RedisServerError", "free_port", "redis_server_binary"]

free_port = free_loopback_port
SERVER_ENV = "MOZAIKS_TEST_REDIS_SERVER"


def redis_server_binary() -> str | None:
    """The server the tests start: ``$MOZAIKS_TEST_REDIS_SERVER`` (a path or a name on
    PATH, e.g. Valkey's ``valkey-server``) when set, else ``redis-server`` on PATH."""
    return shutil.which(os.environ.get(SERVER_ENV) or "redis-server")


class RedisServer(RedisServerProcess):
    """A private server in its own temporary directory, loopback only."""

    def __init__(self, *, appendonly: bool = False, extra_args: Sequence[str] = (),
                 binary: str | None = None) -> None:
        super().__init__(appendfsync="always" if appendonly else None, extra_args=extra_args,
                         binary=binary or redis_server_binary())
