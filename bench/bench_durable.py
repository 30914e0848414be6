"""Durable bench: mozaiks-bus against raw redis-py on Redis Streams, one private Redis, one run.

Three measurements, each for ``raw`` (hand-written redis-py asyncio) and ``mozaiks``
(``Bus``), all in this process (publishing and consuming are each one asyncio loop):

* **publish, sequential**: ``sequential_events`` durable ``chat.usage_summary`` events
  (~410 byte CloudEvent JSON, about the smallest valid payload of that catalog model),
  one awaited call at a time. raw: ``json.dumps`` of the CloudEvent dict + ``XADD
  <stream> MAXLEN ~ 1000000 * e <json>`` (the command the bus sends);
  mozaiks: ``await bus.publish(type, data, durable=True)``.
* **publish, concurrent**: mozaiks: ``concurrent_events`` split over ``publishers``
  (64) asyncio tasks, each awaiting ``bus.publish`` for its share in turn (the bus
  coalesces concurrent publishes into pipelines). raw: the same XADDs sent by one task
  in pipelines of ``raw_pipeline`` (100), the fastest a hand-written publisher gets.
* **consume**: a stream pre-filled (untimed, once) with ``consume_events`` events; each
  round reads it whole through a new consumer group created at ``0``, with a no-op
  async handler. raw: one loop of ``XREADGROUP COUNT read_count BLOCK block_ms``,
  ``json.loads`` + the handler per entry, one ``XACK`` of the batch; mozaiks:
  ``@bus.consumer(type, group=..., concurrency=...)`` with ``consumer_block_ms =
  block_ms``. Timed from before the group is created (raw ``XGROUP CREATE``; mozaiks
  ``bus.start()``) until every entry was handled *and acked* (mozaiks: the bus's
  ``consumed`` counter, incremented after the XACK reply). Afterwards (untimed) the
  group is checked: pending 0, lag 0.

Order per measurement: one warm-up of each (discarded), then ``repeats`` rounds of raw,
mozaiks alternating; the figure is the **median** (every round is in the result).
Every round is bounded by ``phase_timeout_s``; the private Redis is always stopped.

``python -m bench.bench_durable [--profile DIR]`` prints a table; ``run()`` returns the
figures as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import redis.asyncio as aredis

from mozaiks_bus import Bus, Event
from mozaiks_bus.durable.spec import DEFAULT_CONCURRENCY
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings import (
    DEFAULT_CONSUMER_BLOCK_MS,
    DEFAULT_STREAM_HARD_MAX_LEN,
    load_settings,
)

from ._redis import private_redis
from .bench_fanout import machine

__all__ = ["main", "run"]

Kind = Literal["raw", "mozaiks"]
Mode = Literal["publish_sequential", "publish_concurrent", "consume"]
KINDS: tuple[Kind, ...] = ("raw", "mozaiks")  # alternated in this order
MODES: tuple[Mode, ...] = ("publish_sequential", "publish_concurrent", "consume")

EVENT_TYPE = "chat.usage_summary"  # catalog-validated; routed local + durable (+ ui)
FIELD = "e"  # the stream field mozaiks-bus writes (streams.FIELD_EVENT)
FILL_PIPELINE = 1000
TARGETS: dict[Mode, float | None] = {  # mozaiks/raw events/s, at least
    "publish_sequential": None,
    "publish_concurrent": 0.8,
    "consume": 0.8,
}


def _data(seq: int) -> dict[str, Any]:
    return {
        "event_id": f"{seq:012x}",
        "event_ts": "2025-01-01T12:00:00Z",
        "chat_id": f"chat-{seq % 10_000:04d}",
        "app_id": "app-7",
        "user_id": f"user-{seq % 1000:04d}",
        "workflow_name": "support",
        "prompt_tokens": 1234,
        "completion_tokens": 567,
        "total_tokens": 1801,
    }


# The raw publisher sends the same CloudEvent a Bus would (same keys, same size); it
# json.dumps a fresh dict per event, as hand-written code would, with id/time fixed.
_RAW_TEMPLATE: dict[str, Any] = Event.create(EVENT_TYPE, _data(0), source="bench-pub").to_dict()


def _raw_body(seq: int) -> str:
    body = dict(_RAW_TEMPLATE)
    body["data"] = _data(seq)
    return json.dumps(body, separators=(",", ":"))


WIRE_BYTES = len(Event.create(EVENT_TYPE, _data(0), source="bench-pub").to_json())


@dataclass(frozen=True)
class _Config:
    url: str
    sequential_events: int = 5000
    concurrent_events: int = 20000
    publishers: int = 64
    consume_events: int = 20000
    concurrency: int = DEFAULT_CONCURRENCY  # what @bus.consumer gives a user
    block_ms: int = DEFAULT_CONSUMER_BLOCK_MS
    read_count: int = 100
    phase_timeout_s: float = 60.0
    raw_pipeline: int = 100


def _settings(url: str, prefix: str, block_ms: int) -> Any:
    return load_settings(broker_url=url, service="bench-durable", prefix=prefix,
                         consumer_block_ms=block_ms)


def _rate(n: int, elapsed_s: float) -> dict[str, Any]:
    elapsed_s = max(elapsed_s, 1e-9)
    return {"events": n, "elapsed_s": round(elapsed_s, 4),
            "events_per_s": round(n / elapsed_s, 1)}


# ------------------------------------------------------------------------------ publish


async def _split(n: int, tasks: int, publish: Callable[[int], Awaitable[Any]]) -> None:
    """``tasks`` tasks, task ``t`` publishing ``t, t + tasks, ...`` one at a time."""

    async def worker(first: int) -> None:
        for seq in range(first, n, tasks):
            await publish(seq)

    await asyncio.gather(*(worker(t) for t in range(min(tasks, n))))


async def _publish_raw(cfg: _Config, n: int, tasks: int, label: str) -> dict[str, Any]:
    client = aredis.Redis.from_url(cfg.url)
    key = Keys(f"benchraw{os.getpid()}{label}").stream(EVENT_TYPE)
    try:
        # a running app's pool is warm: open as many connections as there are tasks
        await asyncio.gather(*(client.ping() for _ in range(tasks)))

        async def publish(seq: int) -> None:
            await client.xadd(key, {FIELD: _raw_body(seq)},
                              maxlen=DEFAULT_STREAM_HARD_MAX_LEN, approximate=True)

        t0 = time.perf_counter()
        if tasks == 1:
            await _split(n, tasks, publish)
        else:  # the concurrent baseline: what pipelining by hand gives (issue 11)
            for start in range(0, n, cfg.raw_pipeline):
                pipe = client.pipeline(transaction=False)
                for seq in range(start, min(n, start + cfg.raw_pipeline)):
                    pipe.xadd(key, {FIELD: _raw_body(seq)},
                              maxlen=DEFAULT_STREAM_HARD_MAX_LEN, approximate=True)
                await pipe.execute()
        elapsed = time.perf_counter() - t0
        written = int(await client.xlen(key))
        await client.delete(key)
    finally:
        await client.aclose()
    return {**_rate(n, elapsed), "written": written}


async def _publish_mozaiks(cfg: _Config, n: int, tasks: int, label: str) -> dict[str, Any]:
    prefix = f"benchmoz{os.getpid()}{label}"
    bus = Bus(config=_settings(cfg.url, prefix, cfg.block_ms))
    key = Keys(prefix).stream(EVENT_TYPE)
    async with bus:
        await bus.publish(EVENT_TYPE, _data(n), durable=True)  # connects (untimed)

        async def publish(seq: int) -> None:
            await bus.publish(EVENT_TYPE, _data(seq), durable=True)

        t0 = time.perf_counter()
        await _split(n, tasks, publish)
        elapsed = time.perf_counter() - t0
    client = aredis.Redis.from_url(cfg.url)
    try:
        written = int(await client.xlen(key)) - 1
        await client.delete(key, Keys(prefix).stream_index())
    finally:
        await client.aclose()
    return {**_rate(n, elapsed), "written": written}


# ------------------------------------------------------------------------------ consume


def _consume_prefix() -> str:
    return f"benchcons{os.getpid()}"


async def _fill(cfg: _Config) -> str:
    """Write ``consume_events`` real events (fresh ids) into the consume stream."""
    key = Keys(_consume_prefix()).stream(EVENT_TYPE)
    client = aredis.Redis.from_url(cfg.url)
    try:
        await client.delete(key)
        for start in range(0, cfg.consume_events, FILL_PIPELINE):
            pipe = client.pipeline(transaction=False)
            for seq in range(start, min(cfg.consume_events, start + FILL_PIPELINE)):
                body = Event.create(EVENT_TYPE, _data(seq), source="bench-pub").to_json()
                pipe.xadd(key, {FIELD: body})
            await pipe.execute()
        assert int(await client.xlen(key)) == cfg.consume_events
    finally:
        await client.aclose()
    return key


async def _group_state(client: aredis.Redis, key: str, group: str) -> dict[str, Any]:
    for info in await client.xinfo_groups(key):
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            return {"pending": int(info["pending"]), "lag": info.get("lag")}
    return {"pending": None, "lag": None}


async def _consume_raw(cfg: _Config, key: str, label: str) -> dict[str, Any]:
    n, group = cfg.consume_events, f"raw{label}"
    client = aredis.Redis.from_url(cfg.url)
    handled = 0

    async def handler(event: dict[str, Any]) -> None:
        nonlocal handled
        handled += 1

    try:
        await client.ping()
        t0 = time.perf_counter()
        await client.xgroup_create(key, group, id="0")
        read = 0
        while read < n:
            reply: Any = await client.xreadgroup(group, "c1", {key: ">"},
                                                 count=cfg.read_count, block=cfg.block_ms)
            if not reply:
                continue
            entries = reply[0][1]
            for _entry_id, fields in entries:
                await handler(json.loads(fields[b"e"]))
            await client.xack(key, group, *(entry_id for entry_id, _ in entries))
            read += len(entries)
        elapsed = time.perf_counter() - t0
        state = await _group_state(client, key, group)
        await client.xgroup_destroy(key, group)
    finally:
        await client.aclose()
    return {**_rate(n, elapsed), "handled": handled, **state}


async def _consume_mozaiks(cfg: _Config, key: str, label: str) -> dict[str, Any]:
    n, group = cfg.consume_events, f"moz{label}"
    bus = Bus(config=_settings(cfg.url, _consume_prefix(), cfg.block_ms))
    done = asyncio.Event()
    handled = 0

    @bus.consumer(EVENT_TYPE, group=group, concurrency=cfg.concurrency)
    async def handler(event: Event) -> None:
        nonlocal handled
        handled += 1
        if handled >= n:
            done.set()

    t0 = time.perf_counter()
    async with bus:
        await done.wait()
        while bus.stats.get("acked") < n:  # noqa: ASYNC110  # counted after the XACK
            await asyncio.sleep(0.0005)
        elapsed = time.perf_counter() - t0
        info = await bus.streams.stream(EVENT_TYPE)
        mine = [g for g in info.groups if g.name == group]
        state = ({"pending": mine[0].pending, "lag": mine[0].lag} if mine
                 else {"pending": None, "lag": None})
    client = aredis.Redis.from_url(cfg.url)
    try:
        await client.xgroup_destroy(key, group)
    finally:
        await client.aclose()
    return {**_rate(n, elapsed), "handled": handled, **state}


# -------------------------------------------------------------------------------- phase


def _phase(cfg: _Config, mode: Mode, kind: Kind, label: str, key: str,
           profile_path: str | None = None) -> dict[str, Any]:
    coro: Awaitable[dict[str, Any]]
    if mode == "consume":
        coro = (_consume_raw if kind == "raw" else _consume_mozaiks)(cfg, key, label)
    else:
        n, tasks = ((cfg.sequential_events, 1) if mode == "publish_sequential"
                    else (cfg.concurrent_events, cfg.publishers))
        coro = (_publish_raw if kind == "raw" else _publish_mozaiks)(cfg, n, tasks, label)
    profiler = cProfile.Profile() if profile_path else None
    if profiler is not None:
        profiler.enable()
    try:
        out = asyncio.run(asyncio.wait_for(coro, cfg.phase_timeout_s))
    finally:
        if profiler is not None and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
    return {"kind": kind, "mode": mode, "label": label, **out}


async def _redis_version(url: str) -> str:
    client = aredis.Redis.from_url(url)
    try:
        info = await client.info("server")
        return str(info.get("redis_version", "?"))
    finally:
        await client.aclose()


def run(
    url: str | None = None,
    *,
    sequential_events: int = 5000,
    concurrent_events: int = 20000,
    publishers: int = 64,
    consume_events: int = 20000,
    concurrency: int = DEFAULT_CONCURRENCY,
    block_ms: int = DEFAULT_CONSUMER_BLOCK_MS,
    read_count: int = 100,
    repeats: int = 3,
    phase_timeout_s: float = 60.0,
    profile_dir: str | None = None,
) -> dict[str, Any]:
    """Run the three measurements; the figures are medians over ``repeats`` rounds.

    ``url=None`` starts a private ``redis-server`` on a free 127.0.0.1 port for the run.
    With ``profile_dir``, one extra mozaiks round of each measurement runs under
    cProfile (``<mode>.prof`` there) and is not counted in the figures.
    """
    if url is None:
        with private_redis() as server:
            return run(server.url, sequential_events=sequential_events,
                       concurrent_events=concurrent_events, publishers=publishers,
                       consume_events=consume_events, concurrency=concurrency,
                       block_ms=block_ms, read_count=read_count, repeats=repeats,
                       phase_timeout_s=phase_timeout_s, profile_dir=profile_dir)
    if profile_dir:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
    cfg = _Config(url, sequential_events, concurrent_events, publishers, consume_events,
                  concurrency, block_ms, read_count, phase_timeout_s)
    result: dict[str, Any] = {
        "machine": {**machine(), "redis": asyncio.run(_redis_version(url))},
        "config": {**asdict(cfg), "repeats": repeats, "statistic": "median",
                   "event_type": EVENT_TYPE, "wire_bytes": WIRE_BYTES},
        "targets": {mode: target for mode, target in TARGETS.items() if target},
    }
    key = asyncio.run(asyncio.wait_for(_fill(cfg), phase_timeout_s))
    warm = replace(cfg, sequential_events=min(sequential_events, 1000),
                   concurrent_events=min(concurrent_events, 2000))
    try:
        for mode in MODES:
            for kind in KINDS:
                _phase(warm, mode, kind, "warmup", key)
            rounds: dict[str, list[dict[str, Any]]] = {"raw": [], "mozaiks": []}
            for i in range(repeats):
                for kind in KINDS:
                    rounds[kind].append(_phase(cfg, mode, kind, f"r{i}", key))
            if profile_dir:
                path = str(Path(profile_dir) / f"{mode}.prof")
                result[f"{mode}_profiled"] = _phase(cfg, mode, "mozaiks", "profile", key, path)
            result[mode] = _summarise(mode, rounds)
    finally:
        asyncio.run(_delete(url, key))
    return result


async def _delete(url: str, key: str) -> None:
    client = aredis.Redis.from_url(url)
    try:
        await client.delete(key, Keys(_consume_prefix()).stream_index())
    finally:
        await client.aclose()


def _summarise(mode: Mode, rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds}
    for kind, rs in rounds.items():
        out[kind] = {"events_per_s": float(statistics.median(r["events_per_s"] for r in rs))}
    out["ratio"] = round(out["mozaiks"]["events_per_s"] / out["raw"]["events_per_s"], 3)
    target = TARGETS[mode]
    out["meets_target"] = None if target is None else out["ratio"] >= target
    every = [r for rs in rounds.values() for r in rs]
    if mode == "consume":  # every round read everything and left nothing pending
        out["complete"] = all(r["handled"] == r["events"] and r["pending"] == 0
                              and r["lag"] in (0, None) for r in every)
    else:
        out["complete"] = all(r["written"] == r["events"] for r in every)
    return out


# --------------------------------------------------------------------------------- main


def format_table(result: dict[str, Any]) -> str:
    """The figures as a Markdown table (medians), with the targets and the machine."""
    cfg = result["config"]
    labels: dict[Mode, str] = {
        "publish_sequential": f"durable publish, sequential, events/s "
                              f"({cfg['sequential_events']} events)",
        "publish_concurrent": f"durable publish, {cfg['publishers']} concurrent publishers "
                              f"(raw: XADD pipelined x{cfg['raw_pipeline']}), "
                              f"events/s ({cfg['concurrent_events']} events)",
        "consume": f"consume, no-op handler, events/s ({cfg['consume_events']} events; "
                   f"mozaiks concurrency={cfg['concurrency']})",
    }
    rows = [
        "| figure | raw redis-py | mozaiks-bus | mozaiks/raw | target |",
        "|---|---:|---:|---:|---|",
    ]
    for mode in MODES:
        fig = result[mode]
        target = TARGETS[mode]
        verdict = "" if target is None else \
            f">= {target}x: {'met' if fig['meets_target'] else 'MISSED'}"
        if not fig["complete"]:
            verdict += " (INCOMPLETE round!)"
        rows.append(f"| {labels[mode]} | {fig['raw']['events_per_s']:,.0f} "
                    f"| {fig['mozaiks']['events_per_s']:,.0f} | {fig['ratio']:.2f}x "
                    f"| {verdict} |")
    m = result["machine"]
    rows.append("")
    rows.append(
        f"median of {cfg['repeats']} alternating rounds after a warm-up; {cfg['event_type']} "
        f"~{cfg['wire_bytes']} B; consumer defaults (read_count 100, prefetch 200); "
        f"consumer_block_ms={cfg['block_ms']}, raw XREADGROUP "
        f"COUNT {cfg['read_count']}; machine: {m['nproc']} CPUs, {m['cpu']}, "
        f"Redis {m['redis']}, Python {m['python']}"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--url", help="a loopback Redis to use (default: a private one)")
    parser.add_argument("--sequential-events", type=int, default=5000)
    parser.add_argument("--concurrent-events", type=int, default=20000)
    parser.add_argument("--publishers", type=int, default=64)
    parser.add_argument("--consume-events", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="mozaiks consumer concurrency (default: the library's)")
    parser.add_argument("--block-ms", type=int, default=DEFAULT_CONSUMER_BLOCK_MS,
                        help="consumer_block_ms (mozaiks) and BLOCK (raw)")
    parser.add_argument("--read-count", type=int, default=100, help="raw XREADGROUP COUNT")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0, help="per round, seconds")
    parser.add_argument("--profile", metavar="DIR",
                        help="also profile one mozaiks round of each (DIR/<mode>.prof)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args(argv)
    result = run(args.url, sequential_events=args.sequential_events,
                 concurrent_events=args.concurrent_events, publishers=args.publishers,
                 consume_events=args.consume_events, concurrency=args.concurrency,
                 block_ms=args.block_ms, read_count=args.read_count, repeats=args.repeats,
                 phase_timeout_s=args.timeout, profile_dir=args.profile)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(format_table(result))
    for mode in MODES:
        for kind, rs in result[mode]["rounds"].items():
            print(f"  {mode} {kind} rounds: " + "; ".join(str(r["events_per_s"]) for r in rs))
    if args.profile:
        for mode in MODES:
            print(f"\n--- cProfile, mozaiks {mode} (tottime, top 15) ---")
            pstats.Stats(str(Path(args.profile) / f"{mode}.prof")).sort_stats(
                "tottime").print_stats(15)


if __name__ == "__main__":
    main()
