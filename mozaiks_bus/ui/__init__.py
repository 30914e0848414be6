"""The ui scope: the browser WebSocket of a chat, on whichever API worker holds it.

Contract:

* ``await bus.ui.send(chat_id, event)`` appends one frame to the chat's short history
  stream (``ui_history_max_len`` entries, ``ui_history_ttl_s`` after the last frame) and
  publishes it on the chat's channel, atomically: every worker holding a socket of
  that chat forwards it. ``event`` is a pre-built ``{"type", "data"}`` envelope
  (forwarded as is) or a ``{"kind": ...}`` event that becomes ``chat.<kind>`` (the
  platform's rules: ``data.run_id``/``data.chat_id`` default to the chat id, text and
  print frames get ``data.sequence``). Frames carry ``id`` (the history id) for resume.
* ``bus.ui.open(chat_id, last_event_id=...)`` is what a WebSocket handler iterates:
  frames after ``last_event_id`` from history, then live ones, in order, with no gap
  and no duplicate (the live subscription is confirmed before history is read, and live
  frames at or below the last history id are skipped). ``last_event_id="0"`` replays
  the whole history; ``None`` starts live. If ``last_event_id`` is no longer in the
  history the first frame is ``chat.resync_required``: the client must reload the chat
  instead of silently missing frames. The queue is bounded: a client that stops
  reading gets :class:`SlowConsumer` and is to be closed (other clients are unaffected).
* Inputs: ``register_input_request(chat_id, request_id, callback) -> str`` (one-shot;
  an empty or "none" id becomes a new one) and ``await submit_user_input(request_id,
  text) -> bool`` reach the callback in whichever process registered it: a claim key in
  Redis (taken with GETDEL, so exactly one submit wins) names the owner, and the text
  travels on the owner's control channel. The same for UI tools:
  ``await wait_for_response(event_id, timeout)`` / ``await submit_response(event_id,
  data) -> bool``. Without a broker all of this works within the process.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mozaiks_bus.errors import BrokerUnavailable, InvalidEvent, MozaiksBusError
from mozaiks_bus.event import format_time, is_json_safe
from mozaiks_bus.keys import Keys

if TYPE_CHECKING:
    from mozaiks_bus.bus import Bus
    from mozaiks_bus.transports.redis import RedisTransport

__all__ = ["ChatStream", "SlowConsumer", "UiHub"]

logger = logging.getLogger("mozaiks_bus.ui")
InputCallback = Callable[[str], Any]
_SEQUENCED_KINDS = frozenset({"text", "print"})
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
SUBSCRIBE_TIMEOUT_S = 5.0


class SlowConsumer(MozaiksBusError):
    """A WebSocket client stopped reading and its bounded queue overflowed."""


def _with_id(frame: str, frame_id: str) -> str:
    return f'{frame[:-1]},"id":"{frame_id}"}}'


def _id_key(frame_id: str) -> tuple[int, int]:
    millis, _, seq = frame_id.partition("-")
    return int(millis), int(seq or 0)


class ChatStream:
    """One client's frames of one chat: history since its last id, then live."""

    def __init__(self, hub: UiHub, chat_id: str, maxsize: int) -> None:
        self.hub = hub
        self.chat_id = chat_id
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize)
        self._floor: tuple[int, int] = (0, 0)  # live frames at or below were replayed
        self.overflowed = False

    def push(self, frame_id: str, frame: str) -> None:
        """A live frame (called by the hub on the loop)."""
        if _id_key(frame_id) <= self._floor or self.overflowed:
            return
        try:
            self._queue.put_nowait(_with_id(frame, frame_id))
        except asyncio.QueueFull:
            self.overflowed = True
            self._queue = asyncio.Queue(1)
            self._queue.put_nowait(None)  # wakes the reader, which raises SlowConsumer

    def replay(self, frames: list[tuple[str, str]], *, notice: str | None = None) -> None:
        """History frames (after an optional notice of the bus's own, such as
        ``chat.resync_required``), before any live frame is read."""
        buffered: list[str | None] = []
        while not self._queue.empty():
            buffered.append(self._queue.get_nowait())
        # room for the history on top of the live bound
        self._queue = asyncio.Queue(self._queue.maxsize + len(frames) + 1)
        if notice is not None:
            self._queue.put_nowait(notice)
        for frame_id, frame in frames:
            self._queue.put_nowait(_with_id(frame, frame_id))
        if frames:
            self._floor = _id_key(frames[-1][0])
        for item in buffered:  # live frames that arrived while history was read
            if item is not None and _id_key(_frame_id(item)) > self._floor:
                self._queue.put_nowait(item)

    def __aiter__(self) -> AsyncIterator[str]:
        return self

    async def __anext__(self) -> str:
        item = await self._queue.get()
        if item is None or self.overflowed:
            raise SlowConsumer(f"client of chat {self.chat_id} stopped reading")
        return item

    async def close(self) -> None:
        """Stop receiving (releases the chat's subscription when it was the last)."""
        await self.hub._release(self)

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _frame_id(frame: str) -> str:
    start = frame.rfind(',"id":"') + 7
    return frame[start:frame.index('"', start)]


class UiHub:
    """``bus.ui``: send frames to chats, open chats for WebSockets, route inputs."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self.keys = Keys(bus.config.prefix)
        self._streams: dict[str, set[ChatStream]] = {}
        self._local_history: dict[str, deque[tuple[str, str]]] = {}
        self._local_ids = itertools.count(1)
        self._sequences: dict[str, int] = {}
        self._inputs: dict[str, tuple[str, InputCallback]] = {}
        self._waiters: dict[str, asyncio.Future[Any]] = {}
        self._control_ready: asyncio.Task[None] | None = None

    @property
    def _transport(self) -> RedisTransport | None:
        transport = self._bus.transport
        return transport if transport.remote else None  # type: ignore[return-value]

    # -- sending ----------------------------------------------------------------------------

    async def send(self, chat_id: str, event: dict[str, Any]) -> str:
        """Send one frame to ``chat_id``'s sockets on every worker; returns its id."""
        frame = self.build_frame(chat_id, event)
        transport = self._transport
        if transport is None:
            return self._send_local(chat_id, frame)
        await self._bus.start()
        return await self._bus._on_bus_loop(transport.send_ui(chat_id, frame))

    def build_frame(self, chat_id: str, event: dict[str, Any]) -> str:
        """The platform's UI envelope as JSON (raises InvalidEvent for bad input)."""
        self.keys.ui_channel(chat_id)  # validates the chat id
        if not isinstance(event, dict):
            raise InvalidEvent("event", "must be a {type, data} envelope or a {kind} event")
        if "kind" not in event and "type" in event and "data" in event:
            envelope = dict(event)
        elif isinstance(event.get("kind"), str) and event["kind"]:
            envelope = self._from_kind(chat_id, event)
        else:
            raise InvalidEvent("event", "must be a {type, data} envelope or a {kind} event")
        if not isinstance(envelope.get("type"), str) or not isinstance(envelope["data"], dict):
            raise InvalidEvent("event.type", "must be a string, with data a JSON object")
        envelope.setdefault("timestamp", format_time(_now()))
        data = envelope["data"]
        envelope.setdefault("agent", data.get("agent") or data.get("sender") or "Agent")
        envelope.pop("id", None)
        if not is_json_safe(envelope):
            raise InvalidEvent("event", "must be JSON-serialisable")
        return _ENCODER.encode(envelope)

    def _from_kind(self, chat_id: str, event: dict[str, Any]) -> dict[str, Any]:
        kind: str = event["kind"]
        type_name = kind if kind.startswith("chat.") else f"chat.{kind}"
        data = dict(event)
        data.setdefault("run_id", chat_id)
        data.setdefault("chat_id", chat_id)
        if kind in _SEQUENCED_KINDS and "sequence" not in data:
            self._sequences[chat_id] = self._sequences.get(chat_id, 0) + 1
            data["sequence"] = self._sequences[chat_id]
        return {"type": type_name, "data": data}

    def _send_local(self, chat_id: str, frame: str) -> str:
        frame_id = f"{int(time.time() * 1000)}-{next(self._local_ids)}"
        history = self._local_history.setdefault(
            chat_id, deque(maxlen=self._bus.config.ui_history_max_len)
        )
        history.append((frame_id, frame))
        for stream in list(self._streams.get(chat_id, ())):
            stream.push(frame_id, frame)
        return frame_id

    # -- receiving --------------------------------------------------------------------------

    async def open(
        self, chat_id: str, *, last_event_id: str | None = None, queue_size: int = 1000
    ) -> ChatStream:
        """Frames of ``chat_id`` after ``last_event_id`` (see the module docstring)."""
        channel = self.keys.ui_channel(chat_id)
        if last_event_id is not None and last_event_id != "0":
            _check_id(last_event_id)
        stream = ChatStream(self, chat_id, queue_size)
        first = not self._streams.get(chat_id)
        self._streams.setdefault(chat_id, set()).add(stream)
        transport = self._transport
        if transport is None:
            history = list(self._local_history.get(chat_id, ()))
        else:
            await self._bus.start()
            if self._bus._loop() is not asyncio.get_running_loop():
                await self._release(stream)
                raise MozaiksBusError("bus.ui.open() must run on the loop the bus runs on")
            if first:
                transport.subscribe_channel(channel, lambda raw: self._on_frame(chat_id, raw))
            if not await transport.listener.wait_subscribed(channel, SUBSCRIBE_TIMEOUT_S):
                await self._release(stream)
                raise BrokerUnavailable(f"could not subscribe to chat {chat_id}")
            history = await self._read_history(transport, chat_id)
        if last_event_id is None:
            stream.replay([])
            if history:
                stream._floor = _id_key(history[-1][0])
            return stream
        frames, notice = self._after(chat_id, history, last_event_id)
        stream.replay(frames, notice=notice)
        return stream

    def _after(
        self, chat_id: str, history: list[tuple[str, str]], last_event_id: str
    ) -> tuple[list[tuple[str, str]], str | None]:
        """History after ``last_event_id``, and a resync notice if there is a gap."""
        if last_event_id == "0":
            return history, None
        ids = [frame_id for frame_id, _ in history]
        if last_event_id in ids:
            return history[ids.index(last_event_id) + 1:], None
        notice = _ENCODER.encode({
            "type": "chat.resync_required", "timestamp": format_time(_now()),
            "data": {"chat_id": chat_id, "last_event_id": last_event_id,
                     "oldest_available_id": ids[0] if ids else None,
                     "reason": "frames after last_event_id are no longer in the history"},
        })
        later = [(i, f) for i, f in history if _id_key(i) > _id_key(last_event_id)]
        return later, notice

    async def _read_history(
        self, transport: RedisTransport, chat_id: str
    ) -> list[tuple[str, str]]:
        rows: Any = await transport.client.xrange(self.keys.ui_history(chat_id))
        return [(_text(row_id), _text(fields[b"f"])) for row_id, fields in rows]

    def _on_frame(self, chat_id: str, raw: bytes) -> None:
        sep = raw.find(b"|")
        frame_id, frame = raw[:sep].decode(), raw[sep + 1:].decode()
        for stream in list(self._streams.get(chat_id, ())):
            stream.push(frame_id, frame)

    async def _release(self, stream: ChatStream) -> None:
        streams = self._streams.get(stream.chat_id)
        if streams is None:
            return
        streams.discard(stream)
        if not streams:
            del self._streams[stream.chat_id]
            transport = self._transport
            if transport is not None:
                transport.unsubscribe_channel(self.keys.ui_channel(stream.chat_id))

    # -- inputs across processes ----------------------------------------------------------------

    def register_input_request(
        self, chat_id: str, request_id: object, callback: InputCallback
    ) -> str:
        """Register a one-shot input callback; returns the id actually used."""
        rid = str(request_id) if request_id not in (None, "") else ""
        if rid in ("", "none", "None"):
            rid = uuid.uuid4().hex
        self._inputs[rid] = (chat_id, callback)
        self._claim_soon(f"input:{rid}")
        return rid

    async def submit_user_input(self, request_id: str, text: str) -> bool:
        """Deliver ``text`` to the callback registered for ``request_id`` (one-shot)."""
        return await self._route(f"input:{request_id}", {"op": "input", "id": request_id,
                                                         "text": text})

    async def wait_for_response(self, event_id: str, timeout: float) -> Any:
        """Wait for a UI tool's response (raises TimeoutError after ``timeout``)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[event_id] = future
        self._claim_soon(f"tool:{event_id}")
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.pop(event_id, None)

    async def submit_response(self, event_id: str, data: Any) -> bool:
        """Deliver a UI tool's response to whoever waits for it (one-shot)."""
        return await self._route(f"tool:{event_id}", {"op": "tool", "id": event_id,
                                                      "data": data})

    def _claim_soon(self, name: str) -> None:
        transport = self._transport
        if transport is None:
            return
        self._bus._soon(self._claim(transport, name))

    async def _claim(self, transport: RedisTransport, name: str) -> None:
        await self._bus.start()
        control = self.keys.control_channel(transport.origin)
        if control not in transport.listener.channels:
            transport.subscribe_channel(control, self._on_control)
        await transport.listener.wait_subscribed(control, SUBSCRIBE_TIMEOUT_S)
        await transport.client.set(self.keys.input_request(name), transport.origin,
                                    ex=int(self._bus.config.input_request_ttl_s))

    async def _route(self, name: str, message: dict[str, Any]) -> bool:
        transport = self._transport
        if transport is None:
            return await self._run_local(message)
        await self._bus.start()
        return await self._bus._on_bus_loop(self._route_remote(transport, name, message))

    async def _route_remote(
        self, transport: RedisTransport, name: str, message: dict[str, Any]
    ) -> bool:
        owner: Any = await transport.client.getdel(self.keys.input_request(name))
        if owner is None:
            return False
        owner = _text(owner)
        if owner == transport.origin:
            return await self._run_local(message)
        receivers = await transport.client.publish(self.keys.control_channel(owner),
                                                   _ENCODER.encode(message))
        return int(receivers) > 0

    def _on_control(self, raw: bytes) -> None:
        message = json.loads(raw)
        task = asyncio.get_running_loop().create_task(self._run_local(message))
        task.add_done_callback(lambda t: t.exception())  # failures are logged inside

    async def _run_local(self, message: dict[str, Any]) -> bool:
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
        await self.send(chat_id, {"kind": "input_ack", "request_id": message["id"]})
        return True


def _check_id(frame_id: str) -> None:
    try:
        _id_key(frame_id)
    except ValueError:
        raise InvalidEvent("last_event_id", "must be a frame id like 1700000000000-0",
                           value=frame_id) from None


def _now() -> datetime:
    return datetime.now(UTC)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
