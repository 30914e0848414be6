"""A client that stops reading is closed with a policy code; others are not slowed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from mozaiks_bus import Bus, load_settings
from tests.integration.server_harness import ORIGIN, UI, serving

pytestmark = pytest.mark.integration
FRAMES = 400
PAD = "x" * 50_000  # big frames fill the socket buffers quickly


async def drain(ws: ClientConnection) -> None:
    """Read what reached the client until the connection closes (bounded)."""
    while True:
        await asyncio.wait_for(ws.recv(), 20)


async def test_a_stalled_client_is_closed_with_1008_and_the_other_gets_everything(
    redis_url: str, key_prefix: str
) -> None:
    chat = f"slow-{uuid.uuid4().hex[:6]}"
    with serving(redis_url, key_prefix, 1, api_ws_queue_size=50, api_ws_send_timeout_s=1,
                 ui_history_max_len=2000) as (server,):
        url = f"{server.ws_url}/v1/ws/{chat}?token={UI}"
        headers = {"Origin": ORIGIN}
        async with websockets.connect(url, additional_headers=headers, max_size=None,
                                      max_queue=1, compression=None) as stalled, \
                websockets.connect(url, additional_headers=headers, max_size=None,
                                   compression=None) as good:
            got: list[int] = []

            async def read_all() -> None:
                while len(got) < FRAMES:
                    frame: dict[str, Any] = json.loads(await good.recv())
                    if frame["type"] != "ping":
                        got.append(frame["data"]["n"])

            reader = asyncio.create_task(read_all())
            bus = Bus(config=load_settings(broker_url=redis_url, prefix=key_prefix))
            async with bus:
                started = time.monotonic()
                for n in range(FRAMES):  # a steady producer a reading client keeps up with
                    await bus.ui.send(chat, {"type": "chat.text", "data": {"n": n, "pad": PAD}})
                    await asyncio.sleep(0.002)
                await asyncio.wait_for(reader, 20)
                took = time.monotonic() - started
            assert got == list(range(FRAMES))
            deadline = time.monotonic() + 20
            while server.metric("mozaiks_bus_ws_slow_consumer_closes_total") < 1:
                assert time.monotonic() < deadline, "the stalled client was never closed"
                await asyncio.sleep(0.1)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await drain(stalled)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
            assert "slow consumer" in closed.value.rcvd.reason
            assert server.metric("mozaiks_bus_ws_connections") == 1  # only the good one
    assert took < 20
