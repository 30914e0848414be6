"""Inputs and UI-tool responses that reach the process that asked, from any process.

A request is registered where the run waits for it (one-shot); the transport's claim
names this process as its owner, and a submit on any process routes the message there
(:meth:`~mozaiks_bus.transports.base.UiTransport.route` takes the claim, so exactly one
submit wins). Without a broker the owner is always this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from mozaiks_bus._loop import BusLoop
from mozaiks_bus.transports.base import UiTransport

__all__ = ["InputCallback", "InputRouter"]

logger = logging.getLogger("mozaiks_bus.ui")
CLAIM_WAIT_S = 5.0  # how long a request's frame waits for its claim (Redis trouble)
InputCallback = Callable[[str], Any]
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


class InputRouter:
    """The pending input requests and tool waits of this process, and their routing."""

    def __init__(self, transport: UiTransport, loop: BusLoop, *, ttl_s: int,
                 acknowledge: Callable[[str, str], Awaitable[Any]]) -> None:
        self._transport = transport
        self._loop = loop
        self._ttl_s = ttl_s
        self._acknowledge = acknowledge  # (chat id, request id): the input_ack frame
        self._inputs: dict[str, tuple[str, InputCallback]] = {}
        self._waiters: dict[str, asyncio.Future[Any]] = {}
        self._claiming: dict[str, asyncio.Event] = {}  # input claims not yet in Redis

    def register_input_request(
        self, chat_id: str, request_id: object, callback: InputCallback
    ) -> str:
        """Register a one-shot input callback; returns the id actually used (an empty
        or "none" id becomes a new one)."""
        rid = str(request_id) if request_id not in (None, "") else ""
        if rid in ("", "none", "None"):
            rid = uuid.uuid4().hex
        self._inputs[rid] = (chat_id, callback)
        self._claiming[rid] = asyncio.Event()
        self._loop.soon(self._claim_input(rid))
        return rid

    async def claimed(self, request_id: str, timeout: float = CLAIM_WAIT_S) -> None:
        """Wait (bounded) until ``request_id``'s claim is in Redis, so a frame announcing
        the request never reaches a browser before a submit on another worker can find
        it. Returns at once for ids not being claimed."""
        pending = self._claiming.get(request_id)
        if pending is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pending.wait(), timeout)

    async def _claim_input(self, request_id: str) -> None:
        try:
            await self._claim(f"input:{request_id}")
        finally:
            done = self._claiming.pop(request_id, None)
            if done is not None:
                done.set()

    async def submit_user_input(self, request_id: str, text: str) -> bool:
        """Deliver ``text`` to the callback registered for ``request_id`` (one-shot)."""
        return await self._route(f"input:{request_id}",
                                 {"op": "input", "id": request_id, "text": text})

    async def wait_for_response(self, event_id: str, timeout: float) -> Any:
        """Wait for a UI tool's response (raises TimeoutError after ``timeout``)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[event_id] = future
        self._loop.soon(self._claim(f"tool:{event_id}"))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.pop(event_id, None)

    async def submit_response(self, event_id: str, data: Any) -> bool:
        """Deliver a UI tool's response to whoever waits for it (one-shot)."""
        return await self._route(f"tool:{event_id}", {"op": "tool", "id": event_id,
                                                      "data": data})

    async def _claim(self, name: str) -> None:
        await self._loop.ensure_started()
        await self._transport.claim(name, self._ttl_s, self._on_control)

    async def _route(self, name: str, message: dict[str, Any]) -> bool:
        await self._loop.ensure_started()
        outcome = await self._loop.run(self._transport.route(name, _ENCODER.encode(message)))
        if outcome == "here":
            return await self._loop.run(self._run_here(message))
        return outcome == "sent"

    def _on_control(self, raw: str) -> None:
        message = json.loads(raw)
        task = asyncio.get_running_loop().create_task(self._run_here(message))
        task.add_done_callback(lambda t: t.exception())  # failures are logged inside

    async def _run_here(self, message: dict[str, Any]) -> bool:
        if message["op"] == "tool":
            future = self._waiters.pop(message["id"], None)
            if future is None or future.done():
                return False
            future.set_result(message["data"])
            return True
        entry = self._inputs.pop(message["id"], None)
        if entry is None:
            return False
        chat_id, callback = entry
        try:
            result = callback(message["text"])
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("input callback for %s failed", message["id"])
            return False
        await self._acknowledge(chat_id, message["id"])
        return True
