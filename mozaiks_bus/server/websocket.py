"""``WS /v1/ws/{chat_id}``: one chat's frames to a browser, on whichever worker it hits.

Handshake (refused before any frame, with an HTTP answer and a JSON body when the
server supports it, else close code 1008): a token with the ``ui`` scope in
``Authorization: Bearer`` or ``?token=`` (401 / 403), an ``Origin`` in
``api_allowed_origins`` when the client sends one (403), a valid chat id and
``last_event_id`` (400).

Server frames: the platform's UI envelope ``{"type": "chat.<kind>", "data",
"timestamp", "agent"}`` plus ``id`` (from ``bus.ui``), in order; with
``?last_event_id=`` (or a ``{"type": "client.resume", "lastEventId"}`` message) what
the chat's history holds after that id comes first, then live frames, no gap, no
duplicate; ``chat.resync_required`` first when the id is older than the history. Also
``{"type": "ping", "timestamp"}`` every ``api_ws_heartbeat_s``, and the answers below.

Client messages (``type``, or ``kind``): ``user.input.submit`` {``input_request_id``
(or ``request_id``), ``text``} -> ``bus.ui.submit_user_input`` -> ``{"type":
"ack.input", "data": {"input_request_id", "status": "accepted"|"rejected"}}``;
``ui_tool_response`` {``eventId`` (or ``ui_tool_id``), ``response``} ->
``bus.ui.submit_response`` -> ``ack.ui_tool_response`` {``eventId``, ``status``};
``client.resume`` {``lastEventId``}; ``pong`` (ignored). Anything else, or a message
that is not a JSON object, -> ``chat.error`` {``message``, ``error_code``:
``SCHEMA_VALIDATION_FAILED``}; a message over ``api_max_body_bytes`` closes with 1009.

Slow clients: frames wait in a bounded queue (``api_ws_queue_size``); a client whose
queue overflows, or whose socket does not take a frame within
``api_ws_send_timeout_s``, is closed with 1008 (policy). Other sockets never wait for
it. (If its TCP buffer is full the close frame may never reach it; the connection then
ends when the client goes away.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from mozaiks_bus.errors import InvalidEvent, TransportError
from mozaiks_bus.event import format_time, is_json_safe
from mozaiks_bus.frames import is_frame_id
from mozaiks_bus.server.auth import mark_denied, origin_allowed
from mozaiks_bus.server.errors import HttpError
from mozaiks_bus.server.limits import parse_json
from mozaiks_bus.server.state import ServerState, get_state
from mozaiks_bus.ui import ChatStream, SlowConsumer

__all__ = ["CLOSE_TIMEOUT_S", "router"]

logger = logging.getLogger("mozaiks_bus.server.ws")
router = APIRouter()
CLOSE_TIMEOUT_S = 5.0
_SCHEMA = "SCHEMA_VALIDATION_FAILED"
_KNOWN = ("user.input.submit", "ui_tool_response", "client.resume", "pong")


def _envelope(type_name: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": type_name, "data": data,
                       "timestamp": format_time(datetime.now(UTC))}, separators=(",", ":"))


def _handshake(state: ServerState, websocket: WebSocket, chat_id: str) -> HttpError | None:
    try:
        state.auth.require(websocket, "ui", allow_query=True)
    except HttpError as exc:
        return exc
    origin = websocket.headers.get("origin")
    if not origin_allowed(origin, state.settings.api_allowed_origins):
        return HttpError(403, "origin_not_allowed", f"origin {(origin or '')[:100]!r} is not in "
                        "api_allowed_origins")
    try:
        state.bus.ui.keys.ui_channel(chat_id)
    except InvalidEvent as exc:
        return HttpError(400, "invalid_chat_id", f"chat_id: {exc.rule}", field="chat_id")
    last = websocket.query_params.get("last_event_id")
    if last is not None and not is_frame_id(last):
        return HttpError(400, "invalid_last_event_id", "last_event_id: must be a frame id "
                        "like 1700000000000-0 (or 0 for the whole history)",
                        field="last_event_id")
    return None


async def _refuse(websocket: WebSocket, error: HttpError) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        mark_denied()
        await websocket.send_denial_response(error.response())
    else:
        await websocket.close(code=1008, reason=error.message[:120])


@router.websocket("/v1/ws/{chat_id}")
async def chat_socket(websocket: WebSocket, chat_id: str) -> None:
    """See the module docstring."""
    state = get_state(websocket)
    refusal = _handshake(state, websocket, chat_id)
    if refusal is not None:
        state.metrics.ws_refused[refusal.code] += 1
        await _refuse(websocket, refusal)
        return
    await websocket.accept()
    await ChatSocket(state, websocket, chat_id).run(websocket.query_params.get("last_event_id"))


class ChatSocket:
    """One accepted socket: a frame pump, a receiver and a heartbeat, ended together."""

    def __init__(self, state: ServerState, websocket: WebSocket, chat_id: str) -> None:
        self.state = state
        self.ws = websocket
        self.chat_id = chat_id
        self._lock = asyncio.Lock()
        self._stream: ChatStream | None = None
        self._pump: asyncio.Task[None] | None = None
        self._done: asyncio.Future[tuple[int, str] | None] | None = None

    async def run(self, last_event_id: str | None) -> None:
        """Serve until the client leaves or is closed; always releases everything."""
        metrics = self.state.metrics
        metrics.ws_open += 1
        metrics.ws_total += 1
        self._done = asyncio.get_running_loop().create_future()
        tasks: list[asyncio.Task[None]] = []
        try:
            if last_event_id is not None:
                metrics.ws_resumes += 1
            await self._guard(self._open(last_event_id))
            if not self._done.done():
                tasks = [asyncio.create_task(self._guard(self._receive())),
                         asyncio.create_task(self._guard(self._heartbeat()))]
            outcome = await self._done
        finally:
            await self._stop_pump()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            metrics.ws_open -= 1
        if outcome is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(*outcome), CLOSE_TIMEOUT_S)

    def _finish(self, outcome: tuple[int, str] | None) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(outcome)

    async def _guard(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a part of the connection; whatever ends it ends the connection."""
        try:
            await coro
        except SlowConsumer:
            self.state.metrics.ws_slow_closes += 1
            self._finish((1008, "slow consumer: the client stopped reading"))
        except TransportError as exc:
            logger.warning("chat %s: the bus is unavailable: %s", self.chat_id, exc)
            self._finish((1013, "the event bus is unavailable; reconnect later"))
        except (WebSocketDisconnect, OSError, RuntimeError):  # the client went away
            self._finish(None)
        except Exception:
            logger.exception("chat %s: socket handler failed", self.chat_id)
            self._finish((1011, "internal error"))

    async def _open(self, last_event_id: str | None) -> None:
        self._stream = await self.state.bus.ui.open(
            self.chat_id, last_event_id=last_event_id,
            queue_size=self.state.settings.api_ws_queue_size,
        )
        self._pump = asyncio.create_task(self._guard(self._pump_frames(self._stream)))

    async def _stop_pump(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()

    async def _pump_frames(self, stream: ChatStream) -> None:
        metrics = self.state.metrics
        async for frame in stream:
            await self._send(frame)
            metrics.ws_frames_sent += 1
        self._finish(None)  # pragma: no cover - a ChatStream never ends by itself

    async def _send(self, text: str) -> None:
        async def locked() -> None:
            async with self._lock:
                await self.ws.send_text(text)

        try:
            await asyncio.wait_for(locked(), self.state.settings.api_ws_send_timeout_s)
        except TimeoutError:
            raise SlowConsumer(f"a send to chat {self.chat_id} did not complete within "
                               f"{self.state.settings.api_ws_send_timeout_s}s") from None

    async def _heartbeat(self) -> None:
        interval = self.state.settings.api_ws_heartbeat_s
        while True:
            await asyncio.sleep(interval)
            await self._send(json.dumps({"type": "ping", "timestamp": format_time(
                datetime.now(UTC))}, separators=(",", ":")))

    async def _receive(self) -> None:
        limit = self.state.settings.api_max_body_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                self._finish(None)
                return
            text = message.get("text")
            if text is None:
                self.state.metrics.ws_received["unknown"] += 1
                await self._error("send JSON text frames, not binary")
                continue
            if len(text) > limit:
                self._finish((1009, f"message over {limit} bytes"))
                return
            await self._handle(text)

    async def _handle(self, text: str) -> None:
        try:
            message = parse_json(text.encode("utf-8", "surrogatepass"),
                                 max_depth=self.state.settings.api_max_json_depth)
        except HttpError as exc:
            await self._error(exc.message)
            return
        kind = message.get("type") or message.get("kind") if isinstance(message, dict) else None
        self.state.metrics.ws_received[kind if kind in _KNOWN else "unknown"] += 1
        handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "user.input.submit": self._on_input, "ui_tool_response": self._on_tool,
            "client.resume": self._on_resume,
        }
        if kind == "pong":
            return
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self._error(f"unknown message type {str(kind)[:64]!r}; send one of "
                              "user.input.submit, ui_tool_response, client.resume")
            return
        assert isinstance(message, dict)
        await handler(message)

    async def _on_input(self, message: dict[str, Any]) -> None:
        request_id = message.get("input_request_id") or message.get("request_id")
        text = message.get("text")
        if not isinstance(request_id, str) or not isinstance(text, str):
            await self._error("user.input.submit needs input_request_id and text (strings)")
            return
        status = await self._submit(self.state.bus.ui.submit_user_input(request_id, text))
        self.state.metrics.inputs[("user_input", status)] += 1
        await self._send(_envelope("ack.input", {"input_request_id": request_id,
                                                 "status": status}))

    async def _on_tool(self, message: dict[str, Any]) -> None:
        event_id = message.get("eventId") or message.get("ui_tool_id")
        response = message.get("response")
        if not isinstance(event_id, str) or not is_json_safe(response):
            await self._error("ui_tool_response needs eventId (a string) and a JSON response")
            return
        status = await self._submit(self.state.bus.ui.submit_response(event_id, response))
        self.state.metrics.inputs[("ui_tool_response", status)] += 1
        await self._send(_envelope("ack.ui_tool_response", {"eventId": event_id,
                                                            "status": status}))

    async def _submit(self, call: Coroutine[Any, Any, bool]) -> str:
        try:
            return "accepted" if await call else "rejected"
        except InvalidEvent:
            return "rejected"

    async def _on_resume(self, message: dict[str, Any]) -> None:
        last = message.get("lastEventId")
        if not is_frame_id(last):
            await self._error("client.resume needs lastEventId, a frame id like "
                              "1700000000000-0")
            return
        self.state.metrics.ws_resumes += 1
        await self._stop_pump()
        await self._open(last)

    async def _error(self, message: str) -> None:
        await self._send(_envelope("chat.error", {"message": message, "error_code": _SCHEMA,
                                                  "chat_id": self.chat_id}))
