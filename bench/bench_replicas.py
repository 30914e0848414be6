"""What ``min_replicas`` costs: confirmed durable publishes with and without ``WAIT``.

One private primary and one replica on loopback (no persistence, so the figure is the
replication round trip, not a disk). ``publishers`` tasks (64) each await
``bus.publish(..., durable=True)`` in a loop, ``events`` (5,000) in all, alternating
rounds of ``min_replicas=0`` and ``min_replicas=1`` (a new bus each round); the table
shows the median of ``repeats`` rounds and the ratio. Concurrent publishes share a
pipeline, so one ``WAIT`` covers a whole pipeline of them.

    .venv/bin/python -m bench.bench_replicas            # table (~20 s)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

import redis

from mozaiks_bus import Bus, load_settings
from mozaiks_bus.ops.redis_server import RedisServerProcess

TYPE = "bench.replicas"


def _start_pair() -> tuple[RedisServerProcess, RedisServerProcess]:
    primary = RedisServerProcess().start()
    replica = RedisServerProcess(
        extra_args=("--replicaof", "127.0.0.1", str(primary.port))).start()
    client = redis.Redis(port=replica.port)
    try:
        deadline = time.monotonic() + 20
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not sync")
            time.sleep(0.05)
    finally:
        client.close()
    return primary, replica


async def _round(url: str, prefix: str, replicas: int, events: int, publishers: int) -> float:
    bus = Bus(config=load_settings(broker_url=url, prefix=prefix, env={}))
    async with bus:
        await bus.publish(TYPE, {"warm": True}, durable=True, min_replicas=replicas)

        async def worker(first: int) -> None:
            for seq in range(first, events, publishers):
                await bus.publish(TYPE, {"seq": seq}, durable=True, fanout=False,
                                  min_replicas=replicas)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(publishers)))
        return events / (time.perf_counter() - started)


def run(events: int = 5000, publishers: int = 64, repeats: int = 3) -> dict[str, Any]:
    """Median events/s with ``min_replicas`` 0 and 1, and their ratio."""
    primary, replica = _start_pair()
    rates: dict[int, list[float]] = {0: [], 1: []}
    try:
        for n in range(repeats):
            for replicas in (0, 1):
                prefix = f"benchrep{os.getpid()}r{n}m{replicas}"
                rates[replicas].append(asyncio.run(
                    _round(primary.url, prefix, replicas, events, publishers)))
    finally:
        replica.close()
        primary.close()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    return {"events": events, "publishers": publishers, "repeats": repeats,
            "per_s": {str(k): round(v) for k, v in medians.items()},
            "rounds": {str(k): [round(r) for r in v] for k, v in rates.items()},
            "ratio": round(medians[1] / medians[0], 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--publishers", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.events, args.publishers, args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| confirmed durable publish, 64 tasks | events/s |\n|---|---:|")
    print(f"| min_replicas=0 | {result['per_s']['0']:,} |")
    print(f"| min_replicas=1 (WAIT per pipeline) | {result['per_s']['1']:,} |")
    print(f"ratio: {result['ratio']}x (medians of {result['repeats']} rounds)")


if __name__ == "__main__":
    main()
