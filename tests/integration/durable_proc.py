"""A real consumer process on the durable scope, driven by tests/integration/test_durable_faults.

``python -m tests.integration.durable_proc URL PREFIX TYPE [options]`` runs one
``@bus.consumer(TYPE, group=...)`` and prints ``ready`` once its group exists and it
reads; it runs until SIGTERM (then stops the bus, draining, prints ``stopped``, exits 0)
or until it is killed. Every handler call first appends the event id to the Redis list
``calls_key(PREFIX, TYPE)`` (outside any transaction: an at-least-once record of every
call); then:

* ``--mode tx``: the effect ``HINCRBY effects_key(PREFIX, TYPE) <id> 1`` goes through
  ``delivery.tx``, so it commits atomically with the ack (exactly once with ``--guard``);
* ``--mode list``: a one-parameter handler whose only effect is that RPUSH (at least once).

``--sleep S`` makes the handler sleep S seconds; ``--print`` prints ``start <id>`` and
``done <id>`` per call (keep the event count small: the test reads stdout at the end);
``--wait-go`` reads one line from stdin after the imports, before starting (so that many
processes can be started at the same moment).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from mozaiks_bus import Bus, Event, load_settings
from mozaiks_bus.connection import create_async_any_client


def calls_key(prefix: str, type_name: str) -> str:
    """Every handler call (event id), pushed before the handler's effect."""
    return f"{prefix}:calls:{{{type_name}}}"


def effects_key(prefix: str, type_name: str) -> str:
    """Effect count per event id, written through ``delivery.tx`` (same hash tag as the
    stream)."""
    return f"{prefix}:effects:{{{type_name}}}"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run(args: argparse.Namespace) -> None:
    bus = Bus(config=load_settings(
        broker_url=args.url, prefix=args.prefix, service="durable-proc",
        consumer_name=args.name, consumer_min_idle_s=args.min_idle,
        consumer_claim_interval_s=args.claim, consumer_block_ms=args.block,
        health_check_interval_s=0.5,
    ))
    client = create_async_any_client(args.url)
    calls, effects = calls_key(args.prefix, args.type), effects_key(args.prefix, args.type)

    async def begin(event: Event) -> None:
        await client.rpush(calls, event.id)
        if args.print:
            _say(f"start {event.id}")
        if args.sleep:
            await asyncio.sleep(args.sleep)

    async def with_tx(event: Event, delivery: Any) -> None:
        await begin(event)
        delivery.tx.hincrby(effects, event.id, 1)
        if args.print:
            _say(f"done {event.id}")

    async def at_least_once(event: Event) -> None:
        await begin(event)
        if args.print:
            _say(f"done {event.id}")

    handler = with_tx if args.mode == "tx" else at_least_once
    bus.consumer(args.type, group=args.group, concurrency=args.concurrency,
                 guard=args.guard, max_deliveries=args.max_deliveries)(handler)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        await bus.start()
        _say("ready")
        await stopping.wait()
    finally:
        await bus.stop()
        await client.aclose()
    _say("stopped")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("type")
    parser.add_argument("--group", default="billing")
    parser.add_argument("--name", default=None)
    parser.add_argument("--mode", choices=("tx", "list"), default="tx")
    parser.add_argument("--guard", action="store_true")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-deliveries", type=int, default=5)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--print", action="store_true")
    parser.add_argument("--wait-go", action="store_true")
    parser.add_argument("--min-idle", type=float, default=1.0)
    parser.add_argument("--claim", type=float, default=0.2)
    parser.add_argument("--block", type=int, default=100)
    args = parser.parse_args(argv)
    if args.wait_go:
        _say("loaded")
        sys.stdin.readline()
    asyncio.run(run(args))


if __name__ == "__main__":
    main(sys.argv[1:])
