"""Crash recovery: how fast a live consumer takes over what a dead one left pending.

For each size (1,000 and 10,000 by default), in one run on one private Redis:

* **consume**: ``N`` events in a stream, read whole by a new ``@bus.consumer`` group
  (the library's defaults: concurrency 4, read 100, prefetch 200; a no-op handler);
  events/s from the consumer's start to the last ack.
* **reclaim**: ``N`` other events, all read (``XREADGROUP``) by a consumer named
  ``ghost`` that never acks them, as a SIGKILLed consumer leaves them; once they are
  idle past ``consumer_min_idle_s`` (1 s here, so the run is short; the walk does not
  depend on it) a live consumer of the group starts with the defaults otherwise. The
  figure is events/s from the first reclaimed entry handled to the last ack: the walk
  (``mozaiks_bus.durable.reclaim``) against the consume rate of the same run. *Found
  after* is the time from the consumer's start to the first reclaimed entry handled
  (bounded by ``consumer_claim_interval_s``, 5 s).

Target (issue 23, printed, not asserted): reclaim >= 0.8x the consume rate.

    .venv/bin/python -m bench.bench_recovery              # table (~1 min)
    .venv/bin/python -m bench.bench_recovery --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

import redis.asyncio as aredis

from bench._redis import private_redis
from mozaiks_bus import Bus, Event, load_settings
from mozaiks_bus.keys import Keys

TYPE = "bench.recovery"
FILL_PIPELINE = 1000
TARGET = 0.8


async def _fill(url: str, prefix: str, n: int) -> str:
    key = Keys(prefix).stream(TYPE)
    client = aredis.Redis.from_url(url)
    try:
        for start in range(0, n, FILL_PIPELINE):
            pipe = client.pipeline(transaction=False)
            for seq in range(start, min(n, start + FILL_PIPELINE)):
                pipe.xadd(key, {"e": Event.create(TYPE, {"seq": seq}, source="b").to_json()})
            await pipe.execute()
    finally:
        await client.aclose()
    return key


async def _abandon(url: str, key: str, group: str, n: int) -> None:
    """Every entry read by ``ghost`` and never acked: a dead consumer's pending list."""
    client = aredis.Redis.from_url(url)
    try:
        await client.xgroup_create(key, group, id="0")
        read = 0
        while read < n:
            reply: Any = await client.xreadgroup(group, "ghost", {key: ">"}, count=1000)
            read += len(reply[0][1]) if reply else 0
    finally:
        await client.aclose()


async def _consume(url: str, prefix: str, group: str, n: int, timeout_s: float
                   ) -> dict[str, float]:
    """Start a consumer of ``group``; times of its start, first handled, last ack."""
    bus = Bus(config=load_settings(broker_url=url, prefix=prefix, consumer_min_idle_s=1.0,
                                   env={}))
    first: list[float] = []
    done = asyncio.Event()
    handled = 0

    @bus.consumer(TYPE, group=group)
    async def handler(event: Event) -> None:
        nonlocal handled
        if not first:
            first.append(time.perf_counter())
        handled += 1
        if handled >= n:
            done.set()

    started = time.perf_counter()
    async with bus:
        await asyncio.wait_for(done.wait(), timeout_s)
        while bus.stats.get("acked") < n:  # noqa: ASYNC110  # counted after the XACK
            await asyncio.sleep(0.0005)
        ended = time.perf_counter()
    return {"started": started, "first": first[0], "ended": ended}


async def _measure(url: str, n: int, timeout_s: float) -> dict[str, Any]:
    prefix = f"benchrec{os.getpid()}n{n}"
    fresh = await _fill(url, prefix + "a", n)
    times = await _consume(url, prefix + "a", "fresh", n, timeout_s)
    consume = n / (times["ended"] - times["started"])
    abandoned = await _fill(url, prefix + "b", n)
    await _abandon(url, abandoned, "crashed", n)
    await asyncio.sleep(1.2)  # idle past the min idle time of 1 s
    times = await _consume(url, prefix + "b", "crashed", n, timeout_s)
    reclaim = n / (times["ended"] - times["first"])
    client = aredis.Redis.from_url(url)
    try:
        await client.delete(fresh, abandoned)
    finally:
        await client.aclose()
    return {"events": n, "consume_per_s": round(consume), "reclaim_per_s": round(reclaim),
            "ratio": round(reclaim / consume, 2),
            "found_after_s": round(times["first"] - times["started"], 2),
            "recovered_in_s": round(times["ended"] - times["started"], 2)}


def run(sizes: tuple[int, ...] = (1000, 10000), timeout_s: float = 120.0) -> dict[str, Any]:
    """Measure every size on a private ``redis-server``; returns the rows."""
    with private_redis() as server:
        rows = [asyncio.run(_measure(server.url, n, timeout_s)) for n in sizes]
    return {"target": TARGET, "rows": rows}


def format_table(result: dict[str, Any]) -> str:
    lines = ["| abandoned entries | consume, events/s | reclaim, events/s | reclaim/consume "
             "| found after | recovered in |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['events']:,} | {r['consume_per_s']:,} | {r['reclaim_per_s']:,} | "
              f"{r['ratio']}x | {r['found_after_s']} s | {r['recovered_in_s']} s |"
              for r in result["rows"]]
    lines.append(f"target: reclaim >= {result['target']}x the consume rate "
                 "(consumer defaults; min idle 1 s so the run is short)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(tuple(args.sizes))
    print(json.dumps(result, indent=2) if args.json else format_table(result))


if __name__ == "__main__":
    main()
