"""Fan-out bench: mozaiks-bus against raw redis-py, on one private Redis, in one run.

Two measurements, each for ``raw`` (hand-written redis-py) and ``mozaiks`` (``Bus``),
with the subscriber in another process (spawn context, so no shared GIL):

* **throughput**: ``events`` CloudEvent-sized (~310 byte) ``settings_updated`` events
  as fast as the publisher can; events/s from the first publish (wall clock, publisher)
  to the last receipt (wall clock, subscriber). raw: ``json.dumps`` + PUBLISH in
  pipelines of 512, each awaited; mozaiks: ``bus.emit`` in a loop and ``await
  bus.flush()`` every 512 emits (the bus's backpressure, as raw awaits its pipeline).
* **latency**: ``rate`` events/s for ``duration_s``, paced (not a burst); the publisher
  puts ``time.time_ns()`` in the data, the subscriber subtracts it from its own
  ``time.time_ns()`` on receipt (same machine, same clock). raw: one awaited PUBLISH per
  event; mozaiks: one ``bus.emit`` per event.

Order: one warm-up of each (discarded), then ``repeats`` rounds of raw, mozaiks
alternating; the reported figure is the **median** over the rounds (every round is in
the result too). Every phase is bounded by ``phase_timeout_s`` and its subscriber
process is always terminated.

``python -m bench.bench_fanout [--profile DIR]`` prints a table; ``run()`` returns the
figures as a dict.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

import redis.asyncio as aredis

from mozaiks_bus import Bus, Event
from mozaiks_bus.settings import load_settings

from ._redis import private_redis

__all__ = ["main", "run"]

Kind = Literal["raw", "mozaiks"]
Mode = Literal["throughput", "latency"]
KINDS: tuple[Kind, ...] = ("raw", "mozaiks")  # alternated in this order
MODES: tuple[Mode, ...] = ("throughput", "latency")

EVENT_TYPE = "settings_updated"
PIPELINE = 512
YIELD_EVERY = 512
SUBSCRIBERS = 2  # issue 11's table: two subscriber processes
TARGET_THROUGHPUT_RATIO = 0.8  # mozaiks/raw, at least (issue 11)
TARGET_P99_RATIO = 1.5  # mozaiks/raw, at most, at 2,000/s (issue 11)
RAW_CHANNEL = "benchraw:fanout:" + EVENT_TYPE


def _data(seq: int, sent_ns: int = 0) -> dict[str, Any]:
    return {
        "user_id": f"user-{seq % 1000:08d}",
        "plugin": "crm",
        "changed": ["theme", "language", "timezone"],
        "seq": seq,
        "sent_ns": sent_ns,
    }


# The raw publisher sends the same CloudEvent a Bus would (same keys, same size); it
# json.dumps a fresh dict per event, as hand-written code would, with id/time fixed.
_RAW_TEMPLATE: dict[str, Any] = Event.create(EVENT_TYPE, _data(0), source="bench-pub").to_dict()


def _raw_body(seq: int, sent_ns: int = 0) -> str:
    body = dict(_RAW_TEMPLATE)
    body["data"] = _data(seq, sent_ns)
    return json.dumps(body, separators=(",", ":"))


# --------------------------------------------------------------------------- subscriber


@dataclass(frozen=True)
class _SubSpec:
    kind: Kind
    mode: Mode
    url: str
    prefix: str
    expected: int
    idle_s: float  # stop after this long without a message (events were lost)
    timeout_s: float
    profile_path: str | None = None


class _Tally:
    """What the subscriber records: count, first/last receipt, latencies (ns)."""

    def __init__(self, expected: int, keep_latency: bool) -> None:
        self.expected = expected
        self.count = 0
        self.first_ns = 0
        self.last_ns = 0
        self.keep_latency = keep_latency
        self.latencies: list[int] = []

    def hit(self, sent_ns: int) -> None:
        now = time.time_ns()
        if self.count == 0:
            self.first_ns = now
        self.last_ns = now
        self.count += 1
        if self.keep_latency:
            self.latencies.append(now - sent_ns)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "received": self.count, "first_ns": self.first_ns, "last_ns": self.last_ns,
        }
        if self.latencies:
            lat = sorted(self.latencies)
            out.update(
                p50_us=_percentile(lat, 50) / 1e3, p99_us=_percentile(lat, 99) / 1e3,
                max_us=lat[-1] / 1e3, mean_us=statistics.fmean(lat) / 1e3,
            )
        return out


def _percentile(sorted_values: list[int], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


async def _wait_done(tally: _Tally, spec: _SubSpec, poll: Callable[[], Awaitable[None]]) -> None:
    deadline = time.monotonic() + spec.timeout_s
    while tally.count < tally.expected and time.monotonic() < deadline:
        await poll()
        if tally.count and time.time_ns() - tally.last_ns > spec.idle_s * 1e9:
            return


async def _raw_subscriber(spec: _SubSpec, conn: Connection, tally: _Tally) -> None:
    client = aredis.Redis.from_url(spec.url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(RAW_CHANNEL)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation (ignored)
        conn.send("ready")

        async def poll() -> None:
            message = await pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == "message":
                event = json.loads(message["data"])
                tally.hit(event["data"]["sent_ns"])

        await _wait_done(tally, spec, poll)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()


async def _mozaiks_subscriber(spec: _SubSpec, conn: Connection, tally: _Tally) -> None:
    bus = Bus(config=load_settings(broker_url=spec.url, service="bench-sub", prefix=spec.prefix))
    done = asyncio.Event()

    def handler(event: Event) -> None:
        tally.hit(event.data["sent_ns"])
        if tally.count >= tally.expected:
            done.set()

    bus.subscribe(EVENT_TYPE, handler)
    async with bus:
        deadline = time.monotonic() + 10
        # polled: the transport exposes its listener state, not an event to wait on
        while bus.health()["listener"] != "receiving" \
                and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        conn.send("ready")

        async def poll() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.1)

        await _wait_done(tally, spec, poll)


def _subscriber_entry(spec: _SubSpec, conn: Connection) -> None:
    """Subscriber process: report "ready", then the tally as a dict."""
    tally = _Tally(spec.expected, keep_latency=spec.mode == "latency")
    coro = _raw_subscriber if spec.kind == "raw" else _mozaiks_subscriber
    profiler = cProfile.Profile() if spec.profile_path else None
    try:
        if profiler is not None:
            profiler.enable()
        asyncio.run(coro(spec, conn, tally))
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(str(spec.profile_path))
        conn.send(tally.result())
        conn.close()


# ---------------------------------------------------------------------------- publisher


async def _publish_raw(url: str, mode: Mode, n: int, rate: float) -> dict[str, Any]:
    client = aredis.Redis.from_url(url)
    try:
        await client.ping()
        t0 = time.time_ns()
        if mode == "throughput":
            for start in range(0, n, PIPELINE):
                pipe = client.pipeline(transaction=False)
                for seq in range(start, min(n, start + PIPELINE)):
                    pipe.publish(RAW_CHANNEL, _raw_body(seq))
                await pipe.execute()
        else:
            async def send(seq: int) -> None:
                await client.publish(RAW_CHANNEL, _raw_body(seq, time.time_ns()))

            await _paced(n, rate, send)
        return {"t0_ns": t0, "sent_ns": time.time_ns()}
    finally:
        await client.aclose()


async def _publish_mozaiks(
    url: str, prefix: str, mode: Mode, n: int, rate: float, yield_every: int
) -> dict[str, Any]:
    bus = Bus(config=load_settings(broker_url=url, service="bench-pub", prefix=prefix))
    async with bus:
        t0 = time.time_ns()
        if mode == "throughput":
            for seq in range(n):
                bus.emit(EVENT_TYPE, _data(seq))
                if seq % yield_every == yield_every - 1:
                    await bus.flush()
        else:
            async def send(seq: int) -> None:
                bus.emit(EVENT_TYPE, _data(seq, time.time_ns()))

            await _paced(n, rate, send)
        emitted = time.time_ns()
    stats = bus.stats.snapshot()
    return {"t0_ns": t0, "sent_ns": emitted, "dropped_remote": stats["dropped_remote"],
            "sent_remote": stats["sent_remote"]}


async def _paced(n: int, rate: float, send: Callable[[int], Awaitable[None]]) -> None:
    """Send event ``i`` at ``t0 + i / rate``: catch up when late, sleep when early."""
    t0 = time.perf_counter()
    seq = 0
    while seq < n:
        due = min(n, int((time.perf_counter() - t0) * rate) + 1)
        while seq < due:
            await send(seq)
            seq += 1
        await asyncio.sleep(max(0.0, t0 + seq / rate - time.perf_counter()))


# -------------------------------------------------------------------------------- phase


@dataclass(frozen=True)
class _PhaseConfig:
    url: str
    events: int
    rate: float
    duration_s: float
    phase_timeout_s: float
    profile_dir: str | None
    yield_every: int = YIELD_EVERY
    subscribers: int = SUBSCRIBERS


async def _wait_subscribed(url: str, kind: Kind, count: int, timeout_s: float) -> None:
    """Until Redis itself counts ``count`` subscriber connections (raw: SUBSCRIBE,
    mozaiks: PSUBSCRIBE; one phase runs at a time, so they are this phase's)."""
    client = aredis.Redis.from_url(url)
    field = "sub" if kind == "raw" else "psub"
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            clients = await client.client_list()
            if sum(1 for c in clients if int(c.get(field, 0) or 0) > 0) >= count:
                return
            await asyncio.sleep(0.01)
        raise TimeoutError(f"{count} {kind} subscriber(s) did not subscribe within "
                           f"{timeout_s}s")
    finally:
        await client.aclose()


def _start_subscribers(spec: _SubSpec, count: int) -> tuple[list[Any], list[Connection]]:
    """``count`` subscriber processes (only the first one profiled)."""
    ctx = multiprocessing.get_context("spawn")
    procs: list[Any] = []
    parents: list[Connection] = []
    for index in range(count):
        parent, child = ctx.Pipe(duplex=False)
        sub_spec = spec if index == 0 else replace(spec, profile_path=None)
        proc = ctx.Process(target=_subscriber_entry, args=(sub_spec, child), daemon=True)
        proc.start()
        child.close()
        procs.append(proc)
        parents.append(parent)
    return procs, parents


def _stop_subscribers(procs: list[Any], parents: list[Connection]) -> None:
    for parent in parents:
        parent.close()
    for proc in procs:
        proc.join(2)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def _slowest(subs: list[dict[str, Any]], t0_ns: int) -> dict[str, Any]:
    """The figure is the slowest subscriber (each must get every event): its rate, the
    fewest received and the worst latencies of any."""
    sub = dict(min(subs, key=lambda s: s["received"] / max(1, s["last_ns"] - t0_ns)))
    for key in ("p50_us", "p99_us", "max_us", "mean_us"):
        if all(key in s for s in subs):
            sub[key] = max(s[key] for s in subs)
    sub["received"] = min(s["received"] for s in subs)
    return sub


def _phase(
    cfg: _PhaseConfig, kind: Kind, mode: Mode, label: str, profile: bool = False
) -> dict[str, Any]:
    """One measurement: start the subscriber processes, publish, collect, always clean up."""
    n = cfg.events if mode == "throughput" else max(1, int(cfg.rate * cfg.duration_s))
    prefix = f"bench{os.getpid()}x{label}".replace("-", "")
    profile_base = None
    if profile and cfg.profile_dir:
        profile_base = str(Path(cfg.profile_dir) / f"{mode}-{kind}-{label}")
    spec = _SubSpec(
        kind=kind, mode=mode, url=cfg.url, prefix=prefix, expected=n,
        idle_s=1.0, timeout_s=cfg.phase_timeout_s,
        profile_path=f"{profile_base}-sub.prof" if profile_base else None,
    )
    procs, parents = _start_subscribers(spec, cfg.subscribers)
    try:
        for parent in parents:
            if not parent.poll(30) or parent.recv() != "ready":
                raise TimeoutError(f"{mode}/{kind}: a subscriber process did not get ready")
        asyncio.run(_wait_subscribed(cfg.url, kind, cfg.subscribers, 10))
        publisher = (
            _publish_raw(cfg.url, mode, n, cfg.rate) if kind == "raw"
            else _publish_mozaiks(cfg.url, prefix, mode, n, cfg.rate, cfg.yield_every)
        )
        profiler = cProfile.Profile() if profile_base else None
        if profiler is not None:
            profiler.enable()
        try:
            pub = asyncio.run(asyncio.wait_for(publisher, cfg.phase_timeout_s))
        finally:
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(f"{profile_base}-pub.prof")
        subs: list[dict[str, Any]] = []
        for parent in parents:
            if not parent.poll(cfg.phase_timeout_s + 5):
                raise TimeoutError(f"{mode}/{kind}: no result from a subscriber")
            subs.append(parent.recv())
    finally:
        _stop_subscribers(procs, parents)
    sub = _slowest(subs, pub["t0_ns"])
    elapsed_s = max(1e-9, (sub["last_ns"] - pub["t0_ns"]) / 1e9)
    out: dict[str, Any] = {
        "kind": kind, "mode": mode, "label": label, "sent": n,
        "received": sub["received"], "lost": n - sub["received"],
        "elapsed_s": round(elapsed_s, 4),
        "events_per_s": round(sub["received"] / elapsed_s, 1),
        "publish_s": round((pub["sent_ns"] - pub["t0_ns"]) / 1e9, 4),
    }
    out.update({k: round(v, 1) for k, v in sub.items() if k.endswith("_us")})
    out.update({k: pub[k] for k in ("dropped_remote", "sent_remote") if k in pub})
    return out


# ---------------------------------------------------------------------------------- run


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python version (the Redis version is added by :func:`run`)."""
    model = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model,
            "python": platform.python_version(), "platform": platform.platform()}


async def _redis_version(url: str) -> str:
    client = aredis.Redis.from_url(url)
    try:
        info = await client.info("server")
        return str(info.get("redis_version", "?"))
    finally:
        await client.aclose()


def _median(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


def run(
    url: str | None = None,
    *,
    events: int = 20000,
    rate: float = 2000.0,
    duration_s: float = 3.0,
    repeats: int = 3,
    phase_timeout_s: float = 60.0,
    profile_dir: str | None = None,
    yield_every: int = YIELD_EVERY,
    subscribers: int = SUBSCRIBERS,
) -> dict[str, Any]:
    """Run both measurements and return the figures (medians over ``repeats`` rounds).

    ``url=None`` starts a private ``redis-server`` on a free 127.0.0.1 port for the
    run. ``yield_every``: the mozaiks throughput publisher awaits ``bus.flush()``
    after this many emits (what the sender gets of the loop). With ``profile_dir``, one
    extra mozaiks round of each measurement runs under cProfile (publisher and
    subscriber; ``*.prof`` files there) and is not counted in the figures.
    """
    if url is None:
        with private_redis() as server:
            return run(server.url, events=events, rate=rate, duration_s=duration_s,
                       repeats=repeats, phase_timeout_s=phase_timeout_s,
                       profile_dir=profile_dir, yield_every=yield_every,
                       subscribers=subscribers)
    if profile_dir:
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
    cfg = _PhaseConfig(url, events, rate, duration_s, phase_timeout_s, profile_dir, yield_every,
                       subscribers)
    result: dict[str, Any] = {
        "machine": {**machine(), "redis": asyncio.run(_redis_version(url))},
        "config": {**asdict(cfg), "repeats": repeats, "statistic": "median"},
        "targets": {"throughput_ratio_min": TARGET_THROUGHPUT_RATIO,
                    "p99_ratio_max": TARGET_P99_RATIO},
    }
    for mode in MODES:
        warm_cfg = _PhaseConfig(url, min(events, 5000), rate, min(duration_s, 1.0),
                                phase_timeout_s, None, yield_every, subscribers)
        for kind in KINDS:
            _phase(warm_cfg, kind, mode, "warmup")
        rounds: dict[str, list[dict[str, Any]]] = {"raw": [], "mozaiks": []}
        for i in range(repeats):
            for kind in KINDS:
                rounds[kind].append(_phase(cfg, kind, mode, f"r{i}"))
        if profile_dir:
            result[f"{mode}_profiled"] = _phase(cfg, "mozaiks", mode, "profile", profile=True)
        result[mode] = _summarise(mode, rounds)
    return result


def _summarise(mode: str, rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rounds": rounds}
    for kind, rs in rounds.items():
        if mode == "throughput":
            out[kind] = {"events_per_s": _median(rs, "events_per_s"),
                         "lost": max(r["lost"] for r in rs)}
        else:
            out[kind] = {"p50_us": _median(rs, "p50_us"), "p99_us": _median(rs, "p99_us"),
                         "lost": max(r["lost"] for r in rs)}
    raw, moz = out["raw"], out["mozaiks"]
    if mode == "throughput":
        out["ratio"] = round(moz["events_per_s"] / raw["events_per_s"], 3)
        out["meets_target"] = out["ratio"] >= TARGET_THROUGHPUT_RATIO
    else:
        out["p50_ratio"] = round(moz["p50_us"] / raw["p50_us"], 3)
        out["p99_ratio"] = round(moz["p99_us"] / raw["p99_us"], 3)
        out["meets_target"] = out["p99_ratio"] <= TARGET_P99_RATIO
    return out


# --------------------------------------------------------------------------------- main


def format_table(result: dict[str, Any]) -> str:
    """The figures as a Markdown table (medians), with the targets and the machine."""
    t, lat = result["throughput"], result["latency"]
    cfg = result["config"]

    def ok(flag: bool) -> str:
        return "met" if flag else "MISSED"

    rows = [
        "| figure | raw redis-py | mozaiks-bus | mozaiks/raw | target |",
        "|---|---:|---:|---:|---|",
        f"| fan-out throughput, events/s ({cfg['events']} events) "
        f"| {t['raw']['events_per_s']:,.0f} | {t['mozaiks']['events_per_s']:,.0f} "
        f"| {t['ratio']:.2f}x | >= {TARGET_THROUGHPUT_RATIO}x: {ok(t['meets_target'])} |",
        f"| latency p50, us ({cfg['rate']:.0f}/s for {cfg['duration_s']:g} s) "
        f"| {lat['raw']['p50_us']:,.0f} | {lat['mozaiks']['p50_us']:,.0f} "
        f"| {lat['p50_ratio']:.2f}x | |",
        f"| latency p99, us | {lat['raw']['p99_us']:,.0f} | {lat['mozaiks']['p99_us']:,.0f} "
        f"| {lat['p99_ratio']:.2f}x | <= {TARGET_P99_RATIO}x: {ok(lat['meets_target'])} |",
        f"| events lost of {cfg['events']} / {int(cfg['rate'] * cfg['duration_s'])} "
        f"(max over rounds: throughput / latency) "
        f"| {t['raw']['lost']} / {lat['raw']['lost']} "
        f"| {t['mozaiks']['lost']} / {lat['mozaiks']['lost']} | | |",
    ]
    m = result["machine"]
    rows.append("")
    rows.append(
        f"median of {cfg['repeats']} alternating rounds after a warm-up; mozaiks publisher "
        f"yields every {cfg['yield_every']} emits; machine: "
        f"{m['nproc']} CPUs, {m['cpu']}, Redis {m['redis']}, Python {m['python']}"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--url", help="a loopback Redis to use (default: a private one)")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0, help="per phase, seconds")
    parser.add_argument("--yield-every", type=int, default=YIELD_EVERY,
                        help="mozaiks throughput publisher: flush() after this many emits")
    parser.add_argument("--subscribers", type=int, default=SUBSCRIBERS,
                        help="subscriber processes (each must get every event)")
    parser.add_argument("--profile", metavar="DIR", help="also write cProfile *.prof files")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args(argv)
    result = run(args.url, events=args.events, rate=args.rate, duration_s=args.duration,
                 repeats=args.repeats, phase_timeout_s=args.timeout, profile_dir=args.profile,
                 yield_every=args.yield_every, subscribers=args.subscribers)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result))
        for mode in ("throughput", "latency"):
            for kind, rs in result[mode]["rounds"].items():
                keys = ("events_per_s",) if mode == "throughput" else ("p50_us", "p99_us")
                figures = "; ".join(", ".join(f"{k}={r[k]}" for k in keys) for r in rs)
                print(f"  {mode} {kind} rounds: {figures}")


if __name__ == "__main__":
    main()
