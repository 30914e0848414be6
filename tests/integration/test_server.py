"""The HTTP and WebSocket service, as real ``mozaiks-bus serve`` processes on one Redis.

Two servers, A and B, share a private redis-server and a key prefix for the module.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis as sync_redis
import websockets
from websockets.asyncio.client import ClientConnection

from mozaiks_bus.keys import Keys
from tests.integration.server_harness import (
    ALL,
    ORIGIN,
    PUB,
    UI,
    ServeProcess,
    auth,
    helper,
    serving,
)

pytestmark = pytest.mark.integration
WAIT_S = 20.0



@pytest.fixture(scope="module")
def servers(redis_url: str, prefix: str) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    with serving(redis_url, prefix, 2) as (a, b):
        yield a, b


def chat_event(chat: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": f"{chat}-{n}", "type": "chat.text",
            "source": "test", "subject": chat, "data": {"content": f"frame {n}", "n": n},
            **extra}


def connect(server: ServeProcess, chat: str, *, query: str = "",
            token: str | None = UI) -> Any:
    headers = {"Origin": ORIGIN, **(auth(token) if token else {})}
    return websockets.connect(f"{server.ws_url}/v1/ws/{chat}{query}",
                              additional_headers=headers, open_timeout=10,
                              max_size=4 * 1024 * 1024)


async def frames(ws: ClientConnection, count: int, timeout: float = WAIT_S
                 ) -> list[dict[str, Any]]:
    """The next ``count`` chat frames (pings skipped), bounded by ``timeout``."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(out)} of {count} frames within {timeout}s")
        frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        if frame["type"] != "ping":
            out.append(frame)
    return out


async def reply(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send a client message; the next non-chat frame is its answer."""
    await ws.send(json.dumps(message))
    deadline = time.monotonic() + WAIT_S
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        if frame["type"].startswith(("ack.", "chat.error")):
            return frame


def post(server: ServeProcess, body: Any, token: str = PUB) -> httpx.Response:
    return httpx.post(server.url + "/v1/events", json=body, headers=auth(token), timeout=10)


async def test_b_gets_events_from_a_http_and_a_third_process_in_order(
    servers: tuple[ServeProcess, ServeProcess], redis_url: str, prefix: str
) -> None:
    a, b = servers
    chat = f"order-{uuid.uuid4().hex[:6]}"
    async with connect(b, chat) as ws:
        first = await asyncio.to_thread(post, a, [chat_event(chat, n) for n in range(5)])
        assert first.status_code == 202, first.text
        assert first.json() == {"accepted": [f"{chat}-{n}" for n in range(5)], "duplicates": []}
        proc = helper("send", chat, "5", "5", redis_url=redis_url, prefix=prefix)
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
        assert proc.returncode == 0, err
        assert out.strip() == "sent"
        last = await asyncio.to_thread(post, a, chat_event(chat, 10))
        assert last.status_code == 202, last.text
        got = await frames(ws, 11)
    assert [frame["data"]["n"] for frame in got] == list(range(11))
    ids = [frame["id"] for frame in got]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert len(set(ids)) == 11
    for frame in got:
        assert frame["type"] == "chat.text"
        assert set(frame) >= {"type", "data", "timestamp", "agent", "id"}
    assert got[0]["event_id"] == f"{chat}-0"  # the CloudEvent id travels with the frame


async def _burst(server: ServeProcess, chat: str, total: int, batch: int) -> None:
    async with httpx.AsyncClient(headers=auth(PUB), timeout=10) as client:
        for start in range(0, total, batch):
            body = [chat_event(chat, n) for n in range(start, start + batch)]
            response = await client.post(server.url + "/v1/events", json=body)
            assert response.status_code == 202, response.text
            await asyncio.sleep(0.01)


async def test_a_client_dropped_mid_burst_resumes_with_every_frame_once_in_order(
    servers: tuple[ServeProcess, ServeProcess],
) -> None:
    await resume_mid_burst_on_the_other_worker(*servers, total=1000)


async def resume_mid_burst_on_the_other_worker(a: ServeProcess, b: ServeProcess, *,
                                               total: int) -> None:
    """A client on B drops halfway through a burst POSTed to A and resumes on A with its
    last id: every frame once, in order, no resync notice (shared with the cluster)."""
    chat = f"burst-{uuid.uuid4().hex[:6]}"
    async with connect(b, chat) as ws:
        burst = asyncio.create_task(_burst(a, chat, total, 50))
        first = await frames(ws, total // 2)
    last_id = first[-1]["id"]
    async with connect(a, chat, query=f"?last_event_id={last_id}") as ws:  # the other worker
        rest = await frames(ws, total - len(first))
        await asyncio.wait_for(burst, WAIT_S)
        with pytest.raises(TimeoutError):  # and nothing more: no duplicate after the end
            await frames(ws, 1, timeout=0.5)
    seen = [frame["data"]["n"] for frame in first + rest]
    assert seen == list(range(total))
    assert all(frame["type"] == "chat.text" for frame in rest)  # no resync notice


async def test_input_registered_elsewhere_is_answered_once_through_either_worker(
    servers: tuple[ServeProcess, ServeProcess], redis_url: str, prefix: str
) -> None:
    a, b = servers
    chat = f"input-{uuid.uuid4().hex[:6]}"
    request_id, tool_id = f"req-{uuid.uuid4().hex[:6]}", f"tool-{uuid.uuid4().hex[:6]}"
    proc = helper("inputs", chat, request_id, tool_id, redis_url=redis_url, prefix=prefix)
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        async with connect(b, chat) as ws:
            submit = {"type": "user.input.submit", "input_request_id": request_id,
                      "text": "yes please", "chat_id": chat}
            ack = await reply(ws, submit)
            assert ack["type"] == "ack.input"
            assert ack["data"] == {"input_request_id": request_id, "status": "accepted"}
            again = await reply(ws, submit)
            assert again["data"]["status"] == "rejected"
        async with connect(a, chat) as ws:
            tool = {"type": "ui_tool_response", "eventId": tool_id, "response": {"ok": 1}}
            ack = await reply(ws, tool)
            assert ack == {**ack, "type": "ack.ui_tool_response",
                           "data": {"eventId": tool_id, "status": "accepted"}}
            assert (await reply(ws, tool))["data"]["status"] == "rejected"
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert out.splitlines() == ['input yes please', 'tool {"ok": 1}', "calls 1"]


async def test_rest_input_reaches_a_waiter_in_another_process(
    servers: tuple[ServeProcess, ServeProcess], redis_url: str, prefix: str
) -> None:
    _, b = servers
    chat = f"rest-{uuid.uuid4().hex[:6]}"
    request_id, tool_id = f"req-{uuid.uuid4().hex[:6]}", f"tool-{uuid.uuid4().hex[:6]}"
    proc = helper("inputs", chat, request_id, tool_id, redis_url=redis_url, prefix=prefix)
    try:
        assert proc.stdout is not None
        assert (await asyncio.to_thread(proc.stdout.readline)).strip() == "ready"
        async with httpx.AsyncClient(base_url=b.url, headers=auth(UI), timeout=10) as client:
            body = {"input_request_id": request_id, "text": "via rest"}
            first = await client.post("/v1/input", json=body)
            assert first.status_code == 200, first.text
            assert first.json() == {"kind": "user_input", "id": request_id, "status": "accepted"}
            second = await client.post("/v1/input", json=body)
            assert second.status_code == 404
            assert second.json()["error"] == "not_pending"
            tool = await client.post("/v1/input", json={"event_id": tool_id, "response": [1]})
            assert tool.status_code == 200, tool.text
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert out.splitlines() == ["input via rest", "tool [1]", "calls 1"]


def test_health_ready_metrics_and_admin(servers: tuple[ServeProcess, ServeProcess]) -> None:
    a, _ = servers
    assert httpx.get(a.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(a.url + "/readyz").json()
    assert ready["status"] == "ready"
    assert ready["checks"]["listener"]["status"] == "receiving"
    event = {"id": str(uuid.uuid4()), "type": "notification.created", "source": "test",
             "data": {"notification_id": "n1", "user_id": "u1", "notification_type": "t",
                      "subject": "s", "message": "m"}}
    assert post(a, event).status_code == 202
    streams = httpx.get(a.url + "/v1/streams", headers=auth(ALL)).json()["streams"]
    assert any(s["type"] == "notification.created" and s["length"] >= 1 for s in streams)
    assert httpx.get(a.url + "/v1/dead-letters", headers=auth(ALL)).json() == {"dead_letters": []}
    # no sinks configured, no bridge (amqp_url unset)
    assert httpx.get(a.url + "/v1/sinks", headers=auth(ALL)).json() == {"sinks": [], "bridge": None}
    assert a.metric("mozaiks_bus_stream_length") >= 1
    assert a.metric("mozaiks_bus_http_events_total") >= 1
    assert a.metric("mozaiks_bus_published_total") >= 1
    docs = httpx.get(a.url + "/openapi.json").json()
    body = docs["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {"one", "batch"}
    assert httpx.get(a.url + "/docs").status_code == 200


def test_a_store_that_fails_inside_exec_leaves_no_dedupe_mark_and_a_retry_stores_once(
    servers: tuple[ServeProcess, ServeProcess], redis_url: str, prefix: str,
) -> None:
    """MULTI does not roll back: an XADD refused inside EXEC (WRONGTYPE) must not leave
    the id marked "done", or the client's retry would be answered "duplicate" for an
    event that was never stored. Stored events carry the mark for the whole window."""
    a, _ = servers
    keys = Keys(prefix)
    client = sync_redis.Redis.from_url(redis_url)
    event_type = f"messaging.wrongtype_{uuid.uuid4().hex[:6]}"  # routed durable
    stream = keys.stream(event_type)
    event = {"id": f"wt-{uuid.uuid4().hex[:8]}", "type": event_type, "source": "test",
             "data": {"n": 1}}
    try:
        client.set(stream, "not a stream")  # XADD inside the MULTI will fail
        refused = post(a, event, ALL)
        assert refused.status_code == 503, refused.text
        assert client.exists(keys.dedupe(event["id"])) == 0
        client.delete(stream)
        stored = post(a, event, ALL)
        assert stored.json() == {"accepted": [event["id"]], "duplicates": []}
        again = post(a, event, ALL)
        assert again.json() == {"accepted": [], "duplicates": [event["id"]]}
        assert client.xlen(stream) == 1
        mark = client.get(keys.dedupe(event["id"]))
        assert mark is not None
        assert mark.startswith(b"d:")
        assert 0 < client.ttl(keys.dedupe(event["id"])) <= 24 * 3600
    finally:
        client.delete(stream, keys.dedupe(event["id"]))
        client.close()
