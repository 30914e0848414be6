"""Cluster bench: durable publish and consume on 3 shards vs 1, in one run.

Three brokers, all started here on loopback, no persistence, no replicas (so the
shards are the only difference): ``redis`` (one plain Redis, ``redis://``), ``shard1``
(a one-primary Redis Cluster, ``redis+cluster://``) and ``shard3`` (three primaries).
On each, with the bus's defaults:

* **publish**: ``events`` durable events of one type split into ``partitions`` (12)
  partition streams by subject (``stream_partitions``; 64 subjects), published by 64
  concurrent tasks each awaiting ``bus.publish``. A type that is not partitioned lives
  in one slot, so on one shard whatever the cluster's size: partitions are what spread
  a hot type.
* **consume**: those events read back by one ``@bus.consumer`` (defaults) in a new
  group, timed from ``bus.start()`` until every event was handled and acked.

The figures are events/s (median of ``repeats`` rounds, after one warm-up round) and
the ratios ``shard3/shard1`` (what the issue asks) and ``shard3/redis``. On a machine
with fewer cores than shards the shards share the CPU with the bench itself, so a ratio
above 1 needs cores to spread onto; the machine is printed with the figures.

``python -m bench.bench_cluster [--events N] [--repeats K] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

from mozaiks_bus import Bus, Event, load_settings
from tests.integration.cluster import LoopbackCluster

from ._redis import private_redis
from .bench_fanout import machine

__all__ = ["main", "run"]

EVENT_TYPE = "bench.cluster_usage"
BROKERS = ("redis", "shard1", "shard3")
PUBLISHERS = 64
SUBJECTS = 64


@contextlib.contextmanager
def _brokers() -> Iterator[dict[str, str]]:
    with private_redis() as one, \
            LoopbackCluster(primaries=1, replicas=False, appendonly=False) as shard1, \
            LoopbackCluster(primaries=3, replicas=False, appendonly=False) as shard3:
        yield {"redis": one.url, "shard1": shard1.cluster_url, "shard3": shard3.cluster_url}


def _bus(url: str, prefix: str, partitions: int) -> Bus:
    return Bus(config=load_settings(broker_url=url, prefix=prefix, service="bench-cluster",
                                    stream_partitions={EVENT_TYPE: partitions}))


async def _publish(url: str, prefix: str, events: int, partitions: int) -> float:
    bus = _bus(url, prefix, partitions)
    async with bus:
        await bus.publish(EVENT_TYPE, {"n": -1}, subject="warm", durable=True, fanout=False)

        async def worker(first: int) -> None:
            for n in range(first, events, PUBLISHERS):
                await bus.publish(EVENT_TYPE, {"n": n}, subject=f"s{n % SUBJECTS}",
                                  durable=True, fanout=False)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(t) for t in range(PUBLISHERS)))
        return events / (time.perf_counter() - t0)


async def _consume(url: str, prefix: str, events: int, partitions: int, group: str) -> float:
    bus = _bus(url, prefix, partitions)
    done = asyncio.Event()
    handled = 0

    @bus.consumer(EVENT_TYPE, group=group)
    async def handle(event: Event) -> None:
        nonlocal handled
        handled += 1
        if handled >= events + 1:  # + the warm-up event
            done.set()

    t0 = time.perf_counter()
    async with bus:
        await asyncio.wait_for(done.wait(), 300)
        while bus.stats.get("acked") < events + 1:  # noqa: ASYNC110  # counted after XACK
            await asyncio.sleep(0.001)
        return (events + 1) / (time.perf_counter() - t0)


def run(events: int = 20_000, repeats: int = 3, partitions: int = 12) -> dict[str, Any]:
    """Every round's figures, the medians and the ratios (see the module docstring)."""
    rounds: dict[str, dict[str, list[float]]] = {
        b: {"publish": [], "consume": []} for b in BROKERS}
    with _brokers() as urls:
        for round_no in range(repeats + 1):  # round 0 warms up
            for broker in BROKERS:
                prefix = f"bc{round_no}{broker}"
                published = asyncio.run(_publish(urls[broker], prefix, events, partitions))
                consumed = asyncio.run(_consume(urls[broker], prefix, events, partitions,
                                                f"g{round_no}"))
                if round_no:
                    rounds[broker]["publish"].append(round(published, 1))
                    rounds[broker]["consume"].append(round(consumed, 1))
    medians = {b: {m: statistics.median(v) for m, v in r.items()} for b, r in rounds.items()}
    ratios = {m: {"shard3/shard1": round(medians["shard3"][m] / medians["shard1"][m], 2),
                  "shard3/redis": round(medians["shard3"][m] / medians["redis"][m], 2)}
              for m in ("publish", "consume")}
    return {"machine": machine(), "config": {"events": events, "repeats": repeats,
                                              "partitions": partitions,
                                              "publishers": PUBLISHERS},
            "rounds": rounds, "medians": medians, "ratios": ratios}


def format_table(result: dict[str, Any]) -> str:
    lines = ["| events/s | redis | 1 shard | 3 shards | 3 shards / 1 | 3 shards / redis |",
             "|---|---:|---:|---:|---:|---:|"]
    for mode in ("publish", "consume"):
        m, r = result["medians"], result["ratios"][mode]
        lines.append(f"| {mode} | {m['redis'][mode]:,.0f} | {m['shard1'][mode]:,.0f} | "
                     f"{m['shard3'][mode]:,.0f} | {r['shard3/shard1']:.2f}x | "
                     f"{r['shard3/redis']:.2f}x |")
    mach = result["machine"]
    lines.append(f"\n{mach['nproc']} cores, {mach['cpu']}, Python {mach['python']}; "
                 f"{result['config']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.events, args.repeats, args.partitions)
    print(json.dumps(result, indent=2) if args.json else format_table(result))


if __name__ == "__main__":
    main()
