"""A private, throw-away ``redis-server`` for benches, on a free 127.0.0.1 port.

The package's one launcher (:mod:`mozaiks_bus.ops.redis_server`): loopback only, no
persistence, its own temp directory (deleted on close), SIGKILLed if the bench dies. The
pub/sub output buffer limit is raised so a subscriber that lags during a burst is
measured, not disconnected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mozaiks_bus.ops.redis_server import RedisServerProcess

__all__ = ["BenchRedis", "private_redis"]

BENCH_ARGS = ("--client-output-buffer-limit", "pubsub 512mb 256mb 60")


class BenchRedis(RedisServerProcess):
    """One private ``redis-server``: ``start()``, ``url`` (db 0), ``close()``."""

    def __init__(self) -> None:
        super().__init__(extra_args=BENCH_ARGS)

    @property
    def url(self) -> str:
        return f"{super().url}/0"


@contextlib.contextmanager
def private_redis() -> Iterator[BenchRedis]:
    """Start a private server for the ``with`` block; always stopped and removed."""
    server = BenchRedis()
    try:
        yield server.start()  # type: ignore[misc]
    finally:
        server.close()
