"""The app under test, served in-process by uvicorn on a free loopback port.

Unit tests use a ``memory://`` broker (fakeredis shared by name with the test's sync
client), a real HTTP client (httpx) and a real WebSocket client (websockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from mozaiks_bus import Bus
from mozaiks_bus.server import create_app
from mozaiks_bus.server.state import ServerState
from mozaiks_bus.settings import BusSettings, load_settings
from tests.integration.server_harness import ORIGIN, TOKEN_CONFIG, TOKENS
from tests.redis_server import free_port

__all__ = ["ORIGIN", "TOKENS", "Served", "make_settings", "serve_app"]


def make_settings(broker_url: str, **values: Any) -> BusSettings:
    values.setdefault("api_tokens", TOKEN_CONFIG)
    values.setdefault("api_allowed_origins", [ORIGIN])
    return load_settings(broker_url=broker_url, **values)


class Served:
    """A running app: ``url``, ``ws_url``, ``app`` and its ``state``."""

    def __init__(self, app: FastAPI, port: int) -> None:
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"

    @property
    def state(self) -> ServerState:
        state: ServerState = self.app.state.mozaiks
        return state


@contextlib.asynccontextmanager
async def serve_app(settings: BusSettings, bus: Bus | None = None) -> AsyncIterator[Served]:
    """Serve ``create_app(bus, settings)`` until the block ends (bounded start and stop)."""
    app = create_app(bus=bus, settings=settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 10 s")
        await asyncio.sleep(0.01)
    try:
        yield Served(app, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
