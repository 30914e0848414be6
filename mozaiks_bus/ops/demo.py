"""``mozaiks-bus demo``: a newcomer's tour in which every step really happens.

It starts the embedded Redis (in a temporary directory), local stand-ins for the email
service and a .NET API (HTTP servers on 127.0.0.1), the API (``mozaiks-bus serve``)
and the sink worker (``mozaiks-bus worker``) as child processes, then shows each scope
at work and checks the result of every step before saying it happened:

1. fan-out: a settings change reaches two "API workers";
2. durable: a usage summary is consumed by the billing group and acked;
3. crash: a consumer process dies mid-event; a live one reclaims the event;
4. HTTP: the email stand-in answers 503 (Retry-After: 1) twice, then 200; the sink
   worker retries with the same Idempotency-Key;
5. dead letter: the .NET stand-in rejects a message (400): dead letter at once; it is
   fixed, the dead letter is replayed and delivered once;
6. ui: a WebSocket client reads three frames, drops, misses three, and reconnects with
   its last id: it gets exactly the three it missed.

A step whose check fails stops the tour with exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mozaiks_bus.bus import Bus
from mozaiks_bus.connection import create_sync_client
from mozaiks_bus.errors import MozaiksBusError
from mozaiks_bus.event import Event
from mozaiks_bus.ops.redis_server import EmbeddedRedis, free_loopback_port, start_embedded_redis
from mozaiks_bus.settings import BusSettings, load_settings

__all__ = ["DemoFailed", "run_demo"]

Echo = Callable[[str], None]
STEP_TIMEOUT_S = 45.0


class DemoFailed(MozaiksBusError, RuntimeError):
    """A step did not do what it said it would."""


class StandIn:
    """A local HTTP service that answers from a script and records every request."""

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stand_in.requests.append({"headers": dict(self.headers), "body": body,
                                          "at": time.time()})
                status, headers = stand_in.script.pop(0) if stand_in.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _until(check: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)




class Tour:
    """Runs the steps against one broker and the child processes."""

    def __init__(self, url: str, workdir: Path, echo: Echo) -> None:
        self.url = url
        self.workdir = workdir
        self.echo = echo
        self.email = StandIn([(503, {"Retry-After": "1"}), (503, {"Retry-After": "1"})])
        self.dotnet = StandIn([(400, {})])
        self.sinks = [
            {"name": "email", "url": self.email.url, "patterns": ["notification.created"],
             "format": "data", "attempts": 5, "backoff_base_s": 0.2, "backoff_max_s": 2.0},
            {"name": "dotnet", "url": self.dotnet.url,
             "patterns": ["messaging.direct_message_sent"], "attempts": 3},
        ]
        self.settings = self._settings()
        self.children: list[subprocess.Popen[bytes]] = []

    def _settings(self, **extra: Any) -> BusSettings:
        return load_settings(broker_url=self.url, service="demo", sinks=self.sinks,
                             consumer_min_idle_s=1.0, consumer_claim_interval_s=0.2,
                             consumer_block_ms=100, health_check_interval_s=1.0, **extra)

    def bus(self, service: str) -> Bus:
        return Bus(config=self.settings.model_copy(update={"service": service}))

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOZAIKS_")}
        env.update(MOZAIKS_BROKER_URL=self.url, MOZAIKS_BUS_SINKS=json.dumps(self.sinks),
                   MOZAIKS_BUS_SERVICE="demo")
        log = open(self.workdir / f"{args[0]}.log", "ab")  # noqa: SIM115  # the child's
        child = subprocess.Popen([sys.executable, "-m", "mozaiks_bus.cli", *args],  # noqa: S603
                                 env=env, stdout=log, stderr=log)
        log.close()
        self.children.append(child)
        return child

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        self.email.close()
        self.dotnet.close()

    def say(self, title: str, *lines: str) -> None:
        self.echo(f"\n== {title}")
        for line in lines:
            self.echo(f"   {line}")

    # -- the steps ---------------------------------------------------------------------------

    async def fanout(self) -> None:
        worker_a, worker_b, settings_api = (self.bus(n) for n in ("api-1", "api-2", "settings"))
        seen: dict[str, list[str]] = {"api-1": [], "api-2": []}
        worker_a.subscribe("settings_updated", lambda e: seen["api-1"].append(e.data["plugin"]))
        worker_b.subscribe("settings_updated", lambda e: seen["api-2"].append(e.data["plugin"]))
        async with worker_a, worker_b, settings_api:
            await _until(lambda: worker_a.health()["listener"] == "receiving"
                         and worker_b.health()["listener"] == "receiving", "the listeners")
            await settings_api.publish("settings_updated", {"user_id": "u1", "plugin": "crm"})
            await _until(lambda: seen["api-1"] == ["crm"] and seen["api-2"] == ["crm"],
                         "both workers")
        self.say("1. fan-out: a settings change reached two API workers",
                 "settings_updated went out once on Redis pub/sub; api-1 and api-2 each got",
                 "it once (at most once, low latency: caches everywhere invalidated).")

    async def durable(self) -> None:
        consumer, runtime = self.bus("billing"), self.bus("ai-runtime")
        got: list[int] = []

        @consumer.consumer("chat.usage_summary", group="billing")
        async def bill(event: Event) -> None:
            got.append(int(event.data["total_tokens"]))

        summary = {"event_id": "u-1", "event_ts": "2026-01-01T00:00:00Z", "chat_id": "c1",
                   "app_id": "app", "user_id": "u1", "workflow_name": "wf",
                   "prompt_tokens": 100, "completion_tokens": 23, "total_tokens": 123}
        async with consumer, runtime:
            await runtime.publish("chat.usage_summary", summary, subject="c1")
            await _until(lambda: got == [123], "the billing consumer")
            for _ in range(100):  # the ack goes out with the next batch (same loop turn)
                info = await consumer.streams.stream("chat.usage_summary")
                if not info.groups[0].pending:
                    break
                await asyncio.sleep(0.02)
            else:
                raise DemoFailed("the usage summary is still pending")
        self.say("2. durable: a usage summary was consumed and acked",
                 "publish returned once Redis stored it in the chat.usage_summary stream;",
                 "the billing group read it, the handler returned, so it was acked (pending 0).")

    async def crash(self) -> None:
        script = ("import os; from mozaiks_bus import Bus\n"
                  "bus = Bus()\n"
                  "@bus.consumer('orders.created', group='fulfilment')\n"
                  "def handle(event):\n    os._exit(137)  # the process dies mid-event\n"
                  "import asyncio; asyncio.run(bus.run())\n")
        publisher = self.bus("shop")
        async with publisher:
            await publisher.publish("orders.created", {"order": 42}, durable=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("MOZAIKS_")}
            env.update(MOZAIKS_BROKER_URL=self.url, MOZAIKS_BUS_CONSUMER_BLOCK_MS="100")
            doomed = await asyncio.to_thread(
                subprocess.Popen, [sys.executable, "-c", script], env=env)
            await asyncio.to_thread(doomed.wait, STEP_TIMEOUT_S)
        survivor = self.bus("fulfilment-2")
        handled: list[int] = []

        @survivor.consumer("orders.created", group="fulfilment")
        async def fulfil(event: Event, delivery: Any) -> None:
            handled.append(delivery.deliveries)

        async with survivor:
            await _until(lambda: len(handled) == 1, "the reclaim")
        self.say("3. crash: a consumer died mid-event; a live one took over",
                 f"the first consumer exited with {doomed.returncode} before acking; after the",
                 f"min-idle time the second one claimed it (delivery {handled[0]}) and acked it.")

    async def http_retries(self) -> None:
        publisher = self.bus("notifications")
        async with publisher:
            await publisher.publish("notification.created", {
                "notification_id": "n1", "user_id": "u1", "notification_type": "welcome",
                "subject": "Welcome", "message": "Hello!", "recipient": "u1@example.test",
                "channels": ["email"]})
            await _until(lambda: len(self.email.requests) == 3, "three attempts")
        keys = {r["headers"].get("Idempotency-Key") for r in self.email.requests}
        gaps = [b["at"] - a["at"] for a, b in zip(self.email.requests, self.email.requests[1:],
                                                   strict=False)]
        if len(keys) != 1 or min(gaps) < 0.9:
            raise DemoFailed(f"retries misbehaved: keys {keys}, gaps {gaps}")
        self.say("4. HTTP: the email service failed twice, then took the message",
                 "503 + Retry-After: 1, twice: the worker waited at least 1 s each time and",
                 f"retried with the same Idempotency-Key {keys.pop()}; the third attempt got 200.")

    async def dead_letter(self) -> None:
        from mozaiks_bus.sinks import list_dead_letters, replay_dead_letter  # noqa: PLC0415

        publisher = self.bus("messaging")
        async with publisher:
            await publisher.publish("messaging.direct_message_sent", {
                "appId": "app", "conversationId": "c", "messageId": "m1",
                "senderUserId": "s", "senderName": "Sam", "recipientUserId": "r",
                "contentPreview": "hi"})
            client = create_sync_client(self.url)
            try:
                await _until(lambda: len(list_dead_letters(client, self.settings, "dotnet")) == 1,
                             "the dead letter")
                letter = list_dead_letters(client, self.settings, "dotnet")[0]
                replay_dead_letter(client, self.settings, "dotnet", letter.id)
                await _until(lambda: len(self.dotnet.requests) == 2, "the replayed delivery")
                left = list_dead_letters(client, self.settings, "dotnet")
            finally:
                client.close()
        if left:
            raise DemoFailed("the dead letter is still there after the replay")
        self.say("5. dead letter: a rejected message was replayed and delivered once",
                 "the .NET stand-in answered 400 (a client error: retrying cannot help), so",
                 "it went to the sink's dead letters at once; after the fix, a replay sent it",
                 "again with the same Idempotency-Key and it was accepted (200).")

    async def ui_resume(self) -> None:
        import websockets  # noqa: PLC0415  # a dev/demo dependency

        port = free_loopback_port()
        self.spawn("serve", "--port", str(port))
        base = f"127.0.0.1:{port}"
        await _until(lambda: _ready(base), "the API")
        sender = self.bus("ai-runtime-ui")
        async with sender:
            async with websockets.connect(f"ws://{base}/v1/ws/demo-chat") as ws:
                await asyncio.sleep(0.3)
                for n in range(3):
                    await sender.ui.send("demo-chat", {"kind": "text", "content": f"m{n}"})
                first = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
                first = [f for f in first if f.get("type") != "ping"]
            for n in range(3, 6):
                await sender.ui.send("demo-chat", {"kind": "text", "content": f"m{n}"})
            last = first[-1]["id"]
            async with websockets.connect(f"ws://{base}/v1/ws/demo-chat?last_event_id={last}"
                                          ) as ws:
                missed: list[str] = []
                while len(missed) < 3:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if frame.get("type") != "ping":
                        missed.append(frame["data"]["content"])
        if missed != ["m3", "m4", "m5"]:
            raise DemoFailed(f"resume returned {missed}")
        self.say("6. ui: a WebSocket client dropped and resumed without a gap",
                 "it read m0-m2, disconnected, missed m3-m5, reconnected with "
                 f"last_event_id={last}",
                 "and got exactly m3, m4, m5 from the chat's history, then went live.")


def _ready(base: str) -> bool:
    import httpx  # noqa: PLC0415

    try:
        return httpx.get(f"http://{base}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def run_demo(echo: Echo) -> int:
    """Run the tour; returns 0 when every step happened, 1 otherwise."""
    with tempfile.TemporaryDirectory(prefix="mozaiks-demo-") as tmp:
        workdir = Path(tmp)
        embedded: EmbeddedRedis = start_embedded_redis(workdir / "redis")
        if not embedded.persistent:
            echo("The demo needs redis-server on PATH (the tour runs several processes).")
            return 1
        echo(f"mozaiks-bus demo: embedded Redis at {embedded.url} (data in {workdir})")
        tour = Tour(embedded.url, workdir, echo)
        steps: list[Callable[[], Coroutine[Any, Any, None]]] = [
            tour.fanout, tour.durable, tour.crash, tour.http_retries, tour.dead_letter,
            tour.ui_resume,
        ]
        try:
            tour.spawn("worker", "--processes", "1")
            for step in steps:
                asyncio.run(step())
        except DemoFailed as exc:
            echo(f"\nThe demo stopped: {exc} (logs in {workdir})")
            return 1
        finally:
            tour.close()
            embedded.stop()
        echo("\nEvery step happened. Next: `mozaiks-bus up` for the real stack.")
        return 0
