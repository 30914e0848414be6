"""HTTP and WebSocket service bench: mozaiks-bus against raw redis-py and a bare FastAPI app.

Everything runs on one private Redis (``bench/_redis.py``), with each server, the
WebSocket receiver and the raw subscriber in its own process:

* **WebSocket latency**: ``rate`` events/s for ``duration_s``, paced (event *i* goes at
  *t0 + i/rate*). Two mozaiks paths end at a WebSocket client on worker **B**:
  ``http``: ``POST /v1/events`` (one ``chat.bench`` CloudEvent, ``subject`` = the chat) on
  worker **A**, and ``ui.send``: ``bus.ui.send`` from a plain ``Bus`` process. The raw
  figure is redis-py ``PUBLISH`` -> a redis-py subscriber in another process, same rate,
  same machine. The sender puts ``time.time_ns()`` in the data; the receiver subtracts
  it from its own clock on receipt (same host, same clock).
* **HTTP publish**: ``POST /v1/events`` with one durable event (a route sends
  ``bench.*`` to the durable scope: one XADD) by ``concurrency`` keep-alive clients for
  ``http_seconds``, against a bare FastAPI endpoint under the same uvicorn that parses
  the JSON and does the same XADD (no auth, no validation, no dedupe). requests/s and
  the ratio; every accepted event is checked to be in its stream.

``python -m bench.bench_server`` prints a table (``--json`` for every figure); nothing
is asserted. Every phase is bounded; every process is always terminated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import redis
import redis.asyncio as aredis
from fastapi import FastAPI, Request

from mozaiks_bus import Bus, load_settings
from mozaiks_bus._process import die_with_parent
from mozaiks_bus.ops.redis_server import free_loopback_port

from ._redis import private_redis

__all__ = ["create_bare_app", "main", "run"]

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"
PREFIX = "benchsrv"
RAW_CHANNEL = "benchraw:ui"
BARE_STREAM = "benchbare:stream:{bench.http}"
READY_TIMEOUT_S = 30.0
PHASE_TIMEOUT_S = 60.0





def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(1, round(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# --------------------------------------------------------------------------- servers


def create_bare_app() -> FastAPI:
    """The baseline: FastAPI + one XADD of the raw body (``BENCH_REDIS_URL``)."""
    client = aredis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    app = FastAPI()

    @app.post("/events", status_code=202)
    async def publish(request: Request) -> dict[str, list[str]]:
        body = await request.body()
        event = json.loads(body)
        await client.xadd(BARE_STREAM, {"e": body})
        return {"accepted": [event["id"]]}

    return app


class _Server:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.port = free_loopback_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, *args, "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )

    def wait(self, path: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + path, timeout=1).status_code in (200, 405):
                    return
            time.sleep(0.05)
        raise RuntimeError("server not ready in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@contextlib.contextmanager
def _servers(url: str) -> Iterator[tuple[_Server, _Server, _Server]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MOZAIKS_")}
    env = {**base, "MOZAIKS_BROKER_URL": url, "MOZAIKS_BUS_PREFIX": PREFIX,
           "BENCH_TOKEN": TOKEN,
           "MOZAIKS_BUS_API_TOKENS": json.dumps([{"name": "bench", "token_env": "BENCH_TOKEN",
                                                  "scopes": ["publish", "ui", "admin"]}]),
           "MOZAIKS_BUS_ROUTES": json.dumps([{"pattern": "bench.*", "scopes": ["durable"]}]),
           "MOZAIKS_BUS_UI_HISTORY_MAX_LEN": "100000"}
    serve = ["-m", "mozaiks_bus.cli", "serve"]
    bare = ["-m", "uvicorn", "bench.bench_server:create_bare_app", "--factory"]
    started: list[_Server] = []
    try:
        a = _Server(serve, env)
        started.append(a)
        b = _Server(serve, env)
        started.append(b)
        baseline = _Server(bare, {**base, "BENCH_REDIS_URL": url})
        started.append(baseline)
        a.wait("/readyz")
        b.wait("/readyz")
        baseline.wait("/events")
        yield a, b, baseline
    finally:
        for server in started:
            server.stop()


# --------------------------------------------------------------------------- HTTP client


class _Http:
    """A minimal keep-alive HTTP/1.1 client (httpx would be the bottleneck here)."""

    def __init__(self, port: int, token: str | None) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> _Http:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await self.writer.wait_closed()

    async def post(self, path: str, body: bytes) -> int:
        if self.reader is None or self.writer is None:
            raise RuntimeError("not connected")
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            .encode() + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return int(head.split(b" ", 2)[1])


# --------------------------------------------------------------------------- receivers


async def _receive(kind: str, target: str, expected: int, conn: Connection) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    if kind == "raw":
        client = aredis.Redis.from_url(target)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(RAW_CHANNEL)
        await pubsub.get_message(timeout=1.0)
        conn.send("ready")
        while len(latencies) < expected and time.monotonic() < deadline:
            message = await pubsub.get_message(timeout=0.5)
            if message is not None and message["type"] == "message":
                sent = json.loads(message["data"])["data"]["sent_ns"]
                latencies.append((time.time_ns() - sent) / 1e3)
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
        return latencies
    import websockets  # noqa: PLC0415

    async with websockets.connect(target, additional_headers={
            "Authorization": f"Bearer {TOKEN}"}, max_size=None) as ws:
        conn.send("ready")
        while len(latencies) < expected and time.monotonic() < deadline:
            try:
                raw = await asyncio.wait_for(ws.recv(), 2.0)
            except TimeoutError:
                break
            now = time.time_ns()
            frame = json.loads(raw)
            if frame["type"] != "ping":
                latencies.append((now - frame["data"]["sent_ns"]) / 1e3)
    return latencies


def _receiver_entry(kind: str, target: str, expected: int, conn: Connection) -> None:
    try:
        conn.send(asyncio.run(_receive(kind, target, expected, conn)))
    finally:
        conn.close()


# --------------------------------------------------------------------------- senders


async def _pace(rate: float, count: int, send: Any) -> None:
    started = time.perf_counter()
    for seq in range(count):
        delay = started + seq / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await send(seq)


async def _send(path: str, url: str, server: _Server, chat: str, rate: float,
                count: int) -> None:
    if path == "raw":
        client = aredis.Redis.from_url(url)

        async def raw(seq: int) -> None:
            body = {"type": "chat.bench", "data": {"seq": seq, "sent_ns": time.time_ns()}}
            await client.publish(RAW_CHANNEL, json.dumps(body))

        await _pace(rate, count, raw)
        await client.aclose()
    elif path == "http":
        async with _Http(server.port, TOKEN) as http:

            async def post(seq: int) -> None:
                event = {"id": str(uuid.uuid4()), "type": "chat.bench", "source": "bench",
                         "subject": chat, "data": {"seq": seq, "sent_ns": time.time_ns()}}
                status = await http.post("/v1/events", json.dumps(event).encode())
                if status != 202:
                    raise RuntimeError(f"POST /v1/events answered {status}")

            await _pace(rate, count, post)
    else:
        bus = Bus(config=load_settings(broker_url=url, prefix=PREFIX, service="bench"))
        async with bus:

            async def ui_send(seq: int) -> None:
                await bus.ui.send(chat, {"type": "chat.bench",
                                         "data": {"seq": seq, "sent_ns": time.time_ns()}})

            await _pace(rate, count, ui_send)


def _latency(path: str, url: str, a: _Server, b: _Server, rate: float,
             duration_s: float) -> dict[str, Any]:
    count = int(rate * duration_s)
    chat = f"bench-{uuid.uuid4().hex[:8]}"
    target = url if path == "raw" else \
        f"ws://127.0.0.1:{b.port}/v1/ws/{chat}"
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_receiver_entry, args=("raw" if path == "raw" else "ws", target,
                                                     count, child))
    proc.start()
    try:
        if not parent.poll(READY_TIMEOUT_S) or parent.recv() != "ready":
            raise RuntimeError("the receiver did not start")
        asyncio.run(_send(path, url, a, chat, rate, count))
        if not parent.poll(PHASE_TIMEOUT_S):
            raise RuntimeError("the receiver did not report")
        latencies: list[float] = parent.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    return {"path": path, "sent": count, "received": len(latencies),
            "p50_us": _percentile(latencies, 50) if latencies else None,
            "p99_us": _percentile(latencies, 99) if latencies else None,
            "mean_us": statistics.fmean(latencies) if latencies else None}


# --------------------------------------------------------------------------- HTTP load


async def _load(server: _Server, path: str, seconds: float, concurrency: int,
                mozaiks: bool) -> dict[str, Any]:
    done = 0
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done, errors
        async with _Http(server.port, TOKEN if mozaiks else None) as http:
            while time.perf_counter() < stop_at:
                event = {"specversion": "1.0", "id": str(uuid.uuid4()), "type": "bench.http",
                         "source": "bench", "data": {"user_id": "u-1", "amount": 12.5,
                                                     "tags": ["a", "b"]}}
                if await http.post(path, json.dumps(event).encode()) == 202:
                    done += 1
                else:
                    errors += 1

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))),
                           seconds + PHASE_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    return {"requests": done, "errors": errors, "seconds": elapsed, "rps": done / elapsed}


def _http(url: str, a: _Server, baseline: _Server, seconds: float,
          concurrency: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    stream = f"{PREFIX}:stream:{{bench.http}}"
    try:
        rounds: dict[str, list[dict[str, Any]]] = {"bare": [], "mozaiks": []}
        for kind, server, path in (("bare", baseline, "/events"), ("mozaiks", a, "/v1/events"),
                                   ("bare", baseline, "/events"), ("mozaiks", a, "/v1/events")):
            key = BARE_STREAM if kind == "bare" else stream
            before = client.xlen(key)
            result = asyncio.run(_load(server, path, seconds, concurrency, kind == "mozaiks"))
            result["stored"] = client.xlen(key) - before
            rounds[kind].append(result)
    finally:
        client.close()
    best = {kind: max(r["rps"] for r in results) for kind, results in rounds.items()}
    return {"rounds": rounds, "bare_rps": best["bare"], "mozaiks_rps": best["mozaiks"],
            "ratio": best["mozaiks"] / best["bare"]}


# --------------------------------------------------------------------------- run


def run(*, rate: float = 500.0, duration_s: float = 5.0, http_seconds: float = 5.0,
        concurrency: int = 16) -> dict[str, Any]:
    """Every figure as a dict (see the module docstring)."""
    with private_redis() as server, _servers(server.url) as (a, b, baseline):
        for warm in ("raw", "http"):  # warm-up, discarded
            _latency(warm, server.url, a, b, rate, 1.0)
        latency = [_latency(path, server.url, a, b, rate, duration_s)
                   for path in ("raw", "http", "ui.send")]
        asyncio.run(_load(a, "/v1/events", 1.0, concurrency, True))  # warm-up
        http = _http(server.url, a, baseline, http_seconds, concurrency)
        redis_version = server.version()
    return {"machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                        "redis": redis_version},
            "config": {"rate": rate, "duration_s": duration_s, "http_seconds": http_seconds,
                       "concurrency": concurrency},
            "latency": latency, "http": http}


def _table(figures: dict[str, Any]) -> str:
    raw = figures["latency"][0]
    lines = [f"machine: {figures['machine']}", f"config: {figures['config']}", "",
             "| path | sent | received | p50 us | p99 us | p50 / raw | p99 / raw |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for row in figures["latency"]:
        ratio50 = row["p50_us"] / raw["p50_us"] if row["p50_us"] else float("nan")
        ratio99 = row["p99_us"] / raw["p99_us"] if row["p99_us"] else float("nan")
        lines.append(f"| {row['path']} | {row['sent']} | {row['received']} | "
                     f"{row['p50_us'] or 0:,.0f} | {row['p99_us'] or 0:,.0f} | "
                     f"{ratio50:.2f}x | {ratio99:.2f}x |")
    http = figures["http"]
    stored = {kind: sum(r["stored"] for r in rounds) for kind, rounds in http["rounds"].items()}
    done = {kind: sum(r["requests"] for r in rounds) for kind, rounds in http["rounds"].items()}
    lines += ["", "| HTTP publish (one event per request) | requests/s | stored / accepted |",
              "|---|---:|---:|",
              f"| bare FastAPI + XADD | {http['bare_rps']:,.0f} | {stored['bare']} / "
              f"{done['bare']} |",
              f"| mozaiks-bus POST /v1/events | {http['mozaiks_rps']:,.0f} | "
              f"{stored['mozaiks']} / {done['mozaiks']} |",
              f"| mozaiks / bare | {http['ratio']:.2f}x | |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.bench_server``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="events/s for latency")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per latency run")
    parser.add_argument("--http-seconds", type=float, default=5.0, help="seconds per load run")
    parser.add_argument("--concurrency", type=int, default=16, help="HTTP clients")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON")
    args = parser.parse_args(argv)
    figures = run(rate=args.rate, duration_s=args.duration, http_seconds=args.http_seconds,
                  concurrency=args.concurrency)
    print(json.dumps(figures, indent=2) if args.json else _table(figures))


if __name__ == "__main__":
    main()
