"""The chat WebSocket, served in-process by uvicorn over a memory:// broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.unit.server_support import ORIGIN, TOKENS, Served, make_settings, serve_app

UI, PUB = TOKENS["TEST_TOKEN_UI"], TOKENS["TEST_TOKEN_PUB"]

pytestmark = pytest.mark.usefixtures("api_tokens")


@pytest.fixture
async def served(memory_url: str) -> AsyncIterator[Served]:
    settings = make_settings(memory_url, api_ws_heartbeat_s=0.3)
    async with serve_app(settings) as app:
        yield app


def connect(served: Served, chat: str, query: str = "", **headers: str) -> Any:
    url = f"{served.ws_url}/v1/ws/{chat}{query}"
    return websockets.connect(url, additional_headers={"Authorization": f"Bearer {UI}",
                                                       "Origin": ORIGIN, **headers},
                              open_timeout=5)


async def next_frame(ws: ClientConnection, *skip: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if frame["type"] not in ("ping", *skip):
            return frame


async def test_frames_resume_and_resync(served: Served) -> None:
    ui = served.state.bus.ui
    ids = [await ui.send("c1", {"kind": "text", "content": f"m{n}"}) for n in range(3)]
    async with connect(served, "c1", f"?last_event_id={ids[0]}") as ws:
        replayed = [await next_frame(ws) for _ in range(2)]
        assert [f["id"] for f in replayed] == ids[1:]
        assert replayed[0]["data"]["content"] == "m1"
        assert replayed[0]["agent"] == "Agent"
        live = await ui.send("c1", {"type": "chat.tool_call", "data": {"agent": "Planner"}})
        frame = await next_frame(ws)
        assert (frame["id"], frame["type"], frame["agent"]) == (live, "chat.tool_call", "Planner")
        await ws.send(json.dumps({"type": "client.resume", "lastEventId": ids[1]}))
        again = [await next_frame(ws) for _ in range(2)]
        assert [f["id"] for f in again] == [ids[2], live]
    async with connect(served, "c1", "?last_event_id=1-0") as ws:  # older than the history
        notice = await next_frame(ws)
        assert notice["type"] == "chat.resync_required"
        assert notice["data"]["last_event_id"] == "1-0"
        assert notice["data"]["oldest_available_id"] == ids[0]
    assert served.state.metrics.ws_resumes == 3


async def test_heartbeat_pings(served: Served) -> None:
    async with connect(served, "c2") as ws:
        ping = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert ping["type"] == "ping"
    assert ping["timestamp"].endswith("Z")


async def test_inputs_and_tool_responses_are_acked(served: Served) -> None:
    ui = served.state.bus.ui
    got: list[str] = []
    request_id = ui.register_input_request("c3", None, got.append)
    waiter = asyncio.create_task(ui.wait_for_response("tool-9", 5))
    await asyncio.sleep(0.2)
    async with connect(served, "c3") as ws:
        submit = {"type": "user.input.submit", "input_request_id": request_id, "text": "ok"}
        await ws.send(json.dumps(submit))
        ack = await next_frame(ws, "chat.input_ack")
        assert ack["type"] == "ack.input"
        assert ack["data"] == {"input_request_id": request_id, "status": "accepted"}
        await ws.send(json.dumps({"kind": "user.input.submit", "request_id": request_id,
                                  "text": "again"}))
        assert (await next_frame(ws, "chat.input_ack"))["data"]["status"] == "rejected"
        await ws.send(json.dumps({"type": "ui_tool_response", "ui_tool_id": "tool-9",
                                  "response": {"choice": 2}}))
        ack = await next_frame(ws, "chat.input_ack")
        assert ack["data"] == {"eventId": "tool-9", "status": "accepted"}
        await ws.send(json.dumps({"type": "user.input.submit", "input_request_id": "r" * 300,
                                  "text": "x"}))
        assert (await next_frame(ws, "chat.input_ack"))["data"]["status"] == "rejected"
        await ws.send(b"\x00binary")
        error = await next_frame(ws, "chat.input_ack")
        assert error["type"] == "chat.error"
        assert error["data"]["error_code"] == "SCHEMA_VALIDATION_FAILED"
        await ws.send(json.dumps({"type": "pong"}))
        await ws.send(json.dumps({"type": "ui_tool_response", "eventId": 5}))
        assert (await next_frame(ws, "chat.input_ack"))["type"] == "chat.error"
    assert got == ["ok"]
    assert await waiter == {"choice": 2}
    metrics = served.state.metrics
    assert metrics.inputs[("user_input", "accepted")] == 1
    assert metrics.ws_received["unknown"] == 1


async def test_a_message_over_the_limit_closes_with_1009(served: Served) -> None:
    async with connect(served, "c4") as ws:
        await ws.send(json.dumps({"type": "pong", "pad": "x" * 1_100_000}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


@pytest.mark.parametrize(("chat", "query", "headers", "status", "code"), [
    ("c5", "", {"Authorization": ""}, 401, "unauthorized"),
    ("c5", "", {"Authorization": f"Bearer {PUB}"}, 403, "forbidden"),
    ("c5", "", {"Origin": "https://evil.example"}, 403, "origin_not_allowed"),
    ("c" * 300, "", {}, 400, "invalid_chat_id"),
    ("c5", "?last_event_id=abc", {}, 400, "invalid_last_event_id"),
])
async def test_refused_handshakes(served: Served, chat: str, query: str,
                                  headers: dict[str, str], status: int, code: str) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(served, chat, query, **headers):
            pass
    assert refused.value.response.status_code == status
    assert json.loads(refused.value.response.body)["error"] == code
    assert served.state.metrics.ws_refused[code] == 1
    assert served.state.metrics.ws_total == 0
