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
* An open stream outlives a lost live link: when the transport's pub/sub link comes
  back (its subscriptions confirmed again), every open stream of the chat holds its
  live frames, reads the history and queues what it missed, then the held frames:
  still in order, once each; a gap history no longer covers gets
  ``chat.resync_required``, as on resume (history unreadable after three tries too).
* Inputs: ``register_input_request(chat_id, request_id, callback) -> str`` (one-shot;
  an empty or "none" id becomes a new one) and ``await submit_user_input(request_id,
  text) -> bool`` reach the callback in whichever process registered it: a claim key in
  Redis (taken with GETDEL, so exactly one submit wins) names the owner, and the text
  travels on the owner's control channel; an ``input_request`` frame is sent only once
  its claim is in Redis (waiting at most 5 s), so a browser can never answer a request
  before another worker could route the answer. The same for UI tools:
  ``await wait_for_response(event_id, timeout)`` / ``await submit_response(event_id,
  data) -> bool``. Without a broker all of this works within the process.

The hub speaks only to the transport's :class:`~mozaiks_bus.transports.base.UiTransport`
(Redis or in-process: the same code path) and to the bus's loop; the frame format is
:mod:`mozaiks_bus.frames`, a client's queue :mod:`.stream`, input routing :mod:`.inputs`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mozaiks_bus._loop import BusLoop
from mozaiks_bus.errors import InvalidEvent, MozaiksBusError
from mozaiks_bus.frames import check_frame_id, envelope_frame, frame_key, resync_notice
from mozaiks_bus.keys import Keys
from mozaiks_bus.settings.api import DEFAULT_API_WS_QUEUE_SIZE
from mozaiks_bus.transports.base import UiTransport
from mozaiks_bus.ui.inputs import InputCallback, InputRouter
from mozaiks_bus.ui.stream import ChatStream, SlowConsumer

__all__ = ["ChatStream", "InputCallback", "SlowConsumer", "UiHub"]

_SEQUENCED_KINDS = frozenset({"text", "print"})
logger = logging.getLogger("mozaiks_bus.ui")
GAP_RETRY_DELAYS_S = (0.5, 1.0, 2.0)  # reading history after a lost link, then a notice
DEFAULT_CLIENT_QUEUE = DEFAULT_API_WS_QUEUE_SIZE  # what the API gives each WebSocket


def _input_request_id(event: dict[str, Any]) -> str | None:
    """The request id of an ``input_request`` event or envelope, else None."""
    if event.get("kind") == "input_request":
        found = event.get("request_id")
    elif event.get("type") == "chat.input_request" and isinstance(event.get("data"), dict):
        found = event["data"].get("request_id")
    else:
        return None
    return None if found is None else str(found)


class UiHub:
    """``bus.ui``: send frames to chats, open chats for WebSockets, route inputs."""

    def __init__(self, transport: UiTransport, loop: BusLoop, *, keys: Keys,
                 input_ttl_s: int) -> None:
        self.keys = keys
        self._transport = transport
        self._loop = loop
        self._streams: dict[str, set[ChatStream]] = {}
        self._sequences: dict[str, int] = {}
        self._inputs = InputRouter(transport, loop, ttl_s=input_ttl_s,
                                   acknowledge=self._acknowledge)
        self.register_input_request = self._inputs.register_input_request
        self.submit_user_input = self._inputs.submit_user_input
        self.wait_for_response = self._inputs.wait_for_response
        self.submit_response = self._inputs.submit_response

    # -- sending ----------------------------------------------------------------------------

    async def send(self, chat_id: str, event: dict[str, Any]) -> str:
        """Send one frame to ``chat_id``'s sockets on every worker; returns its id."""
        frame = self.build_frame(chat_id, event)
        await self._loop.ensure_started()
        return await self._loop.run(self._append(chat_id, frame, _input_request_id(event)))

    async def _append(self, chat_id: str, frame: str, request_id: str | None) -> str:
        if request_id is not None:  # announce a request only once it can be answered
            await self._inputs.claimed(request_id)
        return await self._transport.append(chat_id, frame)

    def build_frame(self, chat_id: str, event: dict[str, Any]) -> str:
        """The platform's UI envelope as JSON (raises InvalidEvent for bad input)."""
        self.keys.ui_channel(chat_id)  # validates the chat id
        if not isinstance(event, dict):
            raise InvalidEvent("event", "must be a {type, data} envelope or a {kind} event")
        if "kind" not in event and "type" in event and "data" in event:
            return envelope_frame(event)
        if isinstance(event.get("kind"), str) and event["kind"]:
            return envelope_frame(self._from_kind(chat_id, event))
        raise InvalidEvent("event", "must be a {type, data} envelope or a {kind} event")

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

    async def _acknowledge(self, chat_id: str, request_id: str) -> None:
        await self.send(chat_id, {"kind": "input_ack", "request_id": request_id})

    # -- receiving --------------------------------------------------------------------------

    async def open(
        self, chat_id: str, *, last_event_id: str | None = None,
        queue_size: int = DEFAULT_CLIENT_QUEUE,
    ) -> ChatStream:
        """Frames of ``chat_id`` after ``last_event_id`` (see the module docstring)."""
        self.keys.ui_channel(chat_id)  # validates the chat id
        if last_event_id is not None and last_event_id != "0":
            check_frame_id(last_event_id)
        await self._loop.ensure_started()
        if self._loop.get() is not asyncio.get_running_loop():
            raise MozaiksBusError("bus.ui.open() must run on the loop the bus runs on")
        stream = ChatStream(chat_id, queue_size, self._release)
        self._streams.setdefault(chat_id, set()).add(stream)
        try:
            # every opener waits for the confirmed subscription before reading history
            await self._transport.follow(chat_id, lambda i, f: self._on_frame(chat_id, i, f),
                                         lambda: self._on_gap(chat_id))
            history = await self._transport.history(chat_id)
        except BaseException:
            await self._release(stream)
            raise
        if last_event_id is None:
            stream.replay([])
            if history:
                stream.skip_through(history[-1][0])
            return stream
        frames, notice = _after(chat_id, history, last_event_id)
        stream.replay(frames, notice=notice)
        return stream

    def _on_frame(self, chat_id: str, frame_id: str, frame: str) -> None:
        for stream in list(self._streams.get(chat_id, ())):
            stream.push(frame_id, frame)

    def _on_gap(self, chat_id: str) -> None:
        """The live link was lost and is back: hold every open stream of the chat and
        fill in what it missed from history (on the bus loop)."""
        marks = {stream: stream.open_gap() for stream in self._streams.get(chat_id, ())}
        if marks:
            asyncio.get_running_loop().create_task(self._fill_gaps(chat_id, marks))

    async def _fill_gaps(self, chat_id: str, marks: dict[ChatStream, str]) -> None:
        history: list[tuple[str, str]] | None = None
        for delay in GAP_RETRY_DELAYS_S:
            try:
                history = await self._transport.history(chat_id)
                break
            except MozaiksBusError as exc:
                logger.warning("chat %s: history after a lost link not read (%s)", chat_id, exc)
                await asyncio.sleep(delay)
        for stream, mark in marks.items():
            if history is None:  # say so rather than go on with a silent gap
                stream.fill_gap([], resync_notice(chat_id, mark, None))
                continue
            frames, notice = _after(chat_id, history, mark)
            stream.fill_gap(frames, notice)

    async def _release(self, stream: ChatStream) -> None:
        streams = self._streams.get(stream.chat_id)
        if streams is None:
            return
        streams.discard(stream)
        if not streams:
            del self._streams[stream.chat_id]
            self._transport.unfollow(stream.chat_id)


def _after(
    chat_id: str, history: list[tuple[str, str]], last_event_id: str
) -> tuple[list[tuple[str, str]], str | None]:
    """History after ``last_event_id``, and a resync notice if there is a gap."""
    if last_event_id == "0":
        return history, None
    ids = [frame_id for frame_id, _ in history]
    if last_event_id in ids:
        return history[ids.index(last_event_id) + 1:], None
    notice = resync_notice(chat_id, last_event_id, ids[0] if ids else None)
    later = [(i, f) for i, f in history if frame_key(i) > frame_key(last_event_id)]
    return later, notice
