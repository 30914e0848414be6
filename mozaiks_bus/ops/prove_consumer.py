"""One durable consumer process of ``mozaiks-bus prove`` (started and killed by it).

``python -m mozaiks_bus.ops.prove_consumer PREFIX TYPE NAME MIN_IDLE CLAIM_INTERVAL``
reads the broker URL from ``MOZAIKS_BROKER_URL`` (never from the command line, which
``ps`` shows), runs one ``@bus.consumer(TYPE, group=PREFIX)`` with the library's default
concurrency and prefetch under the key prefix ``PREFIX`` (also its service name, so every
connection it opens is named ``mozaiks-bus:PREFIX:...``), prints ``ready`` once it
reads, and runs until SIGTERM (then stops draining and exits 0) or until it is killed.

Every handler call first pushes one record onto :func:`handled_key` (outside any
transaction, so a call whose ack a SIGKILL prevents is recorded too: an at-least-once
trace): ``<event id> <stream entry id> <consumer> <deliveries> <unix time>``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

from mozaiks_bus.bus import Bus
from mozaiks_bus.connection import create_async_any_client
from mozaiks_bus.durable.consumer import Delivery
from mozaiks_bus.event import Event
from mozaiks_bus.settings import load_settings

__all__ = ["READY", "handled_key", "main"]

READY = "ready"


def handled_key(prefix: str, type_name: str) -> str:
    """The list of handler calls of ``type_name`` (under ``prefix``; the stream's hash
    tag, so on a cluster it lives with the stream)."""
    return f"{prefix}:prove:handled:{{{type_name}}}"


async def _run(prefix: str, type_name: str, name: str, min_idle: float, claim: float) -> None:
    url = os.environ["MOZAIKS_BROKER_URL"]
    bus = Bus(config=load_settings(
        broker_url=url, prefix=prefix, service=prefix, consumer_name=name,
        consumer_min_idle_s=min_idle, consumer_claim_interval_s=claim,
        routes=[], sinks=[], stream_partitions={}, amqp_url=None,
    ))
    recorder = create_async_any_client(url, client_name=f"mozaiks-bus:{prefix}:record")
    key = handled_key(prefix, type_name)

    async def handle(event: Event, delivery: Delivery) -> None:
        await recorder.rpush(key, f"{event.id} {delivery.stream_id} {name} "
                                  f"{delivery.deliveries} {time.time():.6f}")

    bus.consumer(type_name, group=prefix)(handle)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await bus.start()
        sys.stdout.write(READY + "\n")
        sys.stdout.flush()
        await stopping.wait()
    finally:
        await bus.stop()
        await recorder.aclose()


def main(argv: list[str]) -> None:
    """Run one consumer (arguments as in the module docstring)."""
    prefix, type_name, name, min_idle, claim = argv
    asyncio.run(_run(prefix, type_name, name, float(min_idle), float(claim)))


if __name__ == "__main__":
    main(sys.argv[1:])
