"""HTTP sink bench: deliveries/s through the whole path against raw httpx, in one run.

* **raw**: one ``httpx.Client`` (keep-alive) POSTs ``events`` CloudEvent bodies, one after
  another, to the local target: what a service calling the endpoint inline does.
* **mozaiks**: ``events`` confirmed ``bus.publish`` calls (durable, 64 concurrent) ->
  stream -> the sink dispatcher (consumer group ``sink.bench``) -> one RQ job each ->
  the worker service's RQ worker processes (``--processes``, default 2) POST the same
  CloudEvent bodies (plus ``Idempotency-Key``; signing is off in both) to the same target.
  Deliveries/s = events / (first publish -> the target's last receipt). The worker
  service is started once, before the rounds (its start-up is not measured).

The target is a uvicorn ASGI app in its own process (it counts requests and answers 200
``{}``), so neither side shares a GIL with it; Redis is a private ``redis-server``.
Order: one warm-up of each (discarded), then ``repeats`` rounds alternating raw, mozaiks;
the figure is the median. The target ratio (mozaiks/raw >= 0.6, issue 11) is printed, not asserted.

``python -m bench.bench_sinks [--events N] [--repeats N] [--processes N] [--json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from mozaiks_bus import Bus, Event
from mozaiks_bus.ops.redis_server import free_loopback_port
from mozaiks_bus.settings import load_settings

from ._redis import private_redis

__all__ = ["main", "run"]

TARGET_RATIO = 0.6  # issue 11
EVENT_TYPE = "bench.delivery"
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- target


def _serve(port: int) -> None:  # the target process (spawn)
    import uvicorn  # noqa: PLC0415

    state = {"count": 0, "last": 0.0}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        if scope["path"] == "/count":
            body = json.dumps(state).encode()
        else:
            state["count"] += 1
            state["last"] = time.time()
            body = b"{}"
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False,
                lifespan="off")




def _count(client: httpx.Client, base: str) -> tuple[int, float]:
    data = client.get(f"{base}/count").json()
    return int(data["count"]), float(data["last"])


def _wait_count(client: httpx.Client, base: str, expected: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count, last = _count(client, base)
        if count >= expected:
            return last
        time.sleep(0.05)
    raise TimeoutError(f"the target got {_count(client, base)[0]} of {expected} requests")


# --------------------------------------------------------------------------- rounds


def _bodies(events: int, seq0: int) -> list[Event]:
    return [Event.create(EVENT_TYPE, {"seq": seq0 + n, "user_id": f"u{n % 97}",
                                      "amount": 12.5, "currency": "EUR"}, source="bench")
            for n in range(events)]


def _raw_round(base: str, events: int, seq0: int) -> float:
    batch = _bodies(events, seq0)
    with httpx.Client(trust_env=False) as client:
        before, _ = _count(client, base)
        started = time.time()
        for event in batch:
            response = client.post(f"{base}/hook", content=event.to_json().encode(), headers={
                "Content-Type": "application/cloudevents+json", "Idempotency-Key": event.id})
            response.raise_for_status()
        last = _wait_count(client, base, before + events, 30)
    return events / (last - started)


async def _publish(url: str, prefix: str, events: int, seq0: int) -> float:
    async with Bus(config=load_settings(broker_url=url, prefix=prefix, env={})) as bus:
        numbers = iter(range(events))

        async def one() -> None:
            for n in numbers:
                await bus.publish(EVENT_TYPE, {"seq": seq0 + n, "user_id": f"u{n % 97}",
                                               "amount": 12.5, "currency": "EUR"},
                                  durable=True, fanout=False)

        started = time.time()
        await asyncio.gather(*(one() for _ in range(64)))
        return started


def _mozaiks_round(url: str, prefix: str, base: str, events: int, seq0: int,
                   timeout_s: float) -> float:
    with httpx.Client(trust_env=False) as client:
        before, _ = _count(client, base)
        started = asyncio.run(_publish(url, prefix, events, seq0))
        last = _wait_count(client, base, before + events, timeout_s)
    return events / (last - started)


def _start_worker(url: str, prefix: str, base: str, processes: int, tmp: Path
                  ) -> subprocess.Popen[bytes]:
    config = tmp / "bench.toml"
    config.write_text(
        f'broker_url = "{url}"\nprefix = "{prefix}"\n\n[[sinks]]\nname = "bench"\n'
        f'url = "{base}/hook"\npatterns = ["{EVENT_TYPE}"]\ntimeout_s = 10.0\n')
    log = (tmp / "worker.log").open("ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOZAIKS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mozaiks_bus.cli", "--config", str(config), "worker",
         "--processes", str(processes)], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while "worker ready" not in (tmp / "worker.log").read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((tmp / "worker.log").read_text(errors="replace"))
        time.sleep(0.1)
    return proc


def run(events: int = 2000, repeats: int = 3, processes: int = 2) -> dict[str, Any]:
    """Run the bench; returns every round and the medians."""
    port = free_loopback_port()
    base = f"http://127.0.0.1:{port}"
    target = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,),
                                                          daemon=True)
    target.start()
    worker: subprocess.Popen[bytes] | None = None
    rounds: dict[str, list[float]] = {"raw": [], "mozaiks": []}
    try:
        with private_redis() as redis_server, tempfile.TemporaryDirectory() as tmp:
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(httpx.HTTPError), httpx.Client(trust_env=False) as c:
                    _count(c, base)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the target did not start")
                time.sleep(0.1)
            worker = _start_worker(redis_server.url, "bench", base, processes, Path(tmp))
            seq = 0
            for index in range(repeats + 1):
                raw = _raw_round(base, events, seq)
                seq += events
                moz = _mozaiks_round(redis_server.url, "bench", base, events, seq,
                                     timeout_s=max(60.0, events / 20))
                seq += events
                if index > 0:  # the first pair is the warm-up
                    rounds["raw"].append(raw)
                    rounds["mozaiks"].append(moz)
            version = redis_server.version()
    finally:
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
        target.terminate()
        target.join(10)
    raw, moz = statistics.median(rounds["raw"]), statistics.median(rounds["mozaiks"])
    return {
        "machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                    "redis": version},
        "config": {"events": events, "repeats": repeats, "processes": processes},
        "rounds": rounds, "raw_per_s": raw, "mozaiks_per_s": moz, "ratio": moz / raw,
        "target_ratio": TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> None:
    """Print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.events, args.repeats, args.processes)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    verdict = "met" if result["ratio"] >= TARGET_RATIO else "MISSED"
    print(f"machine: {result['machine']}")
    print(f"{'figure':<34} {'raw httpx':>10} {'mozaiks':>10} {'ratio':>7}  target")
    print(f"{'HTTP deliveries/s (' + str(args.events) + ' events)':<34} "
          f"{result['raw_per_s']:>10,.0f} {result['mozaiks_per_s']:>10,.0f} "
          f"{result['ratio']:>6.2f}x  >= {TARGET_RATIO}x: {verdict}")
    print("rounds raw:     " + ", ".join(f"{v:,.0f}" for v in result["rounds"]["raw"]))
    print("rounds mozaiks: " + ", ".join(f"{v:,.0f}" for v in result["rounds"]["mozaiks"]))


if __name__ == "__main__":
    main()
