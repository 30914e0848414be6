"""The operator console: ``GET /console`` (static files) and its live tail WebSocket.

The page and its script are static files inside the package (``server/console_static``;
no build step, no CDN) and hold no admin data: everything the console shows comes from
the admin API (``/v1/streams``, ``/v1/dead-letters``, ``/v1/sinks``, ``/readyz``) with the
token the operator typed into the "Admin token" field, which the page keeps in the
tab's ``sessionStorage`` and sends only in ``Authorization`` headers, never in a URL.
With no API token configured (open mode: loopback clients only) the page is served
with ``data-auth="open"`` and says that no token is needed instead of asking for one.

``WS /v1/admin/tail``: the live tail. A browser cannot set headers on a WebSocket, and
the token must not go into the URL, so the first message the client sends is
``{"token": ..., "pattern": "orders.*"}``; a missing, unknown or scope-less token (or no
first message within 5 s) closes the socket with 1008 before anything is sent. Then
every event matching the pattern is sent as a structured-mode CloudEvent: those this
process delivers (fan-out and its own publishes) and new entries of the durable streams
(read without a group, so nothing is consumed), each id once. The ``Origin`` must be
this server's own or listed in ``api_allowed_origins``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response

from mozaiks_bus.durable.tail import tail_streams
from mozaiks_bus.errors import InvalidEvent
from mozaiks_bus.event import Event
from mozaiks_bus.patterns import compile_pattern
from mozaiks_bus.server.auth import is_loopback, origin_allowed
from mozaiks_bus.server.state import ServerState

__all__ = ["router"]

router = APIRouter()
_ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
_AUTH_TIMEOUT_S = 5.0
_SEEN = 4096  # event ids remembered to send each once
_QUEUE = 1000  # events buffered for a slow console before it is closed


def _asset(name: str) -> bytes:
    return resources.files("mozaiks_bus.server").joinpath("console_static", name).read_bytes()


@router.get("/console", include_in_schema=False)
async def console_page(request: Request) -> HTMLResponse:
    """The console (static; it fetches its data with the typed token, or none in open
    mode)."""
    page = _asset("index.html")
    state: ServerState = request.app.state.mozaiks
    if state.auth.open:
        page = page.replace(b'data-auth="tokens"', b'data-auth="open"', 1)
    return HTMLResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/console/{name}", include_in_schema=False)
async def console_asset(name: str) -> Response:
    """The console's script and style sheet."""
    if name not in _ASSETS:
        return Response(status_code=404)
    return Response(_asset(name), media_type=_ASSETS[name])


def _same_origin(websocket: WebSocket, origin: str | None) -> bool:
    if origin is None:
        return True
    host = websocket.headers.get("host", "")
    return origin.lower().rstrip("/") in (f"http://{host}".lower(), f"https://{host}".lower())


def _admin(state: ServerState, websocket: WebSocket, token: object) -> bool:
    auth = state.auth
    if auth.open:
        client = websocket.client.host if websocket.client else None
        return client is not None and is_loopback(client, unknown=True)
    principal = auth.identify(token if isinstance(token, str) else None)
    return principal is not None and "admin" in principal.scopes


async def _first_message(websocket: WebSocket) -> dict[str, Any] | None:
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), _AUTH_TIMEOUT_S)
        message = json.loads(raw)
    except (TimeoutError, ValueError, WebSocketDisconnect, KeyError):
        return None
    return message if isinstance(message, dict) else None


@router.websocket("/v1/admin/tail")
async def admin_tail(websocket: WebSocket) -> None:
    """See the module docstring."""
    state: ServerState = websocket.app.state.mozaiks
    origin = websocket.headers.get("origin")
    if not (_same_origin(websocket, origin)
            or origin_allowed(origin, state.settings.api_allowed_origins)):
        await websocket.close(code=1008)
        return
    await websocket.accept()
    hello = await _first_message(websocket)
    if hello is None or not _admin(state, websocket, hello.get("token")):
        await websocket.close(code=1008, reason="an admin token is required")
        return
    pattern = hello.get("pattern") or "*"
    try:
        compile_pattern(str(pattern))
    except InvalidEvent as exc:
        await websocket.close(code=1008, reason=f"pattern: {exc.rule}"[:120])
        return
    await _stream(state, websocket, str(pattern))


async def _stream(state: ServerState, websocket: WebSocket, pattern: str) -> None:
    queue: asyncio.Queue[Event] = asyncio.Queue(_QUEUE)
    seen: OrderedDict[str, None] = OrderedDict()
    overflow = asyncio.Event()

    def show(event: Event) -> None:
        if event.id in seen:
            return
        seen[event.id] = None
        if len(seen) > _SEEN:
            seen.popitem(last=False)
        try:
            queue.put_nowait(event)
        except asyncio.QueueFull:
            overflow.set()

    bus = state.bus
    done = asyncio.Event()
    bus.subscribe(pattern, show)
    reader = asyncio.create_task(tail_streams(bus.streams, pattern, show, done))
    closed = asyncio.create_task(_until_closed(websocket))
    try:
        await websocket.send_json({"ready": True, "pattern": pattern})
        while not closed.done() and not overflow.is_set():
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            await websocket.send_text(getter.result().to_json())
    except (WebSocketDisconnect, RuntimeError):
        pass  # the console went away
    finally:
        done.set()
        bus.unsubscribe(pattern, show)
        closed.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(reader, return_exceptions=True), 5)
        if overflow.is_set():
            with contextlib.suppress(Exception):
                await websocket.close(code=1008, reason="the console fell behind")


async def _until_closed(websocket: WebSocket) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()
