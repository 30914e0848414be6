"""The ui scope on Redis: per-chat history stream + channel, and claim-based routing.

* A frame is appended to the chat's bounded history stream (with a TTL) and published
  on its channel as ``<history id>|<frame>`` by one Lua script, atomically, so the ids a
  browser sees are in history order and resume splices history and live with no gap.
  The history stream and the channel share the chat's hash tag (one Cluster slot).
* Following a chat is one SUBSCRIBE on the process's shared listener, confirmed before
  :meth:`RedisUi.follow` returns.
* A claim is a key naming this transport's ``origin`` (``SET EX``); a route takes it
  with GETDEL, so exactly one submit wins, and publishes the message on the owner's
  control channel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.connection.redis_errors import redis_errors
from mozaiks_bus.errors import BrokerUnavailable
from mozaiks_bus.keys import UI_FRAME_FIELD, Keys
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.transports.base import ControlHandler, FrameHandler, GapHandler, RouteResult
from mozaiks_bus.transports.redis.listener import PubSubListener

__all__ = ["UI_APPEND_SCRIPT", "RedisUi", "ui_append_command"]

SUBSCRIBE_TIMEOUT_S = 5.0
UI_APPEND_SCRIPT = f"""
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', '{UI_FRAME_FIELD}', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], id .. '|' .. ARGV[3])
return id
"""


def ui_append_command(keys: Keys, settings: BusSettings, chat_id: str,
                      frame: str) -> tuple[Any, ...]:
    """The one command that appends ``frame`` to ``chat_id``'s history and publishes it."""
    return (
        "EVAL", UI_APPEND_SCRIPT, 2, keys.ui_history(chat_id), keys.ui_channel(chat_id),
        settings.ui_history_max_len, int(settings.ui_history_ttl_s), frame,
    )


class RedisUi:
    """:class:`~mozaiks_bus.transports.base.UiTransport` over one Redis transport's
    sender (``send_frame``: confirmed script call), listener and command client."""

    def __init__(self, *, keys: Keys, origin: str, url: str,
                 send_frame: Callable[[str, str], Awaitable[Any]],
                 listener: PubSubListener, client: Callable[[], AsyncClient],
                 subscribers: Callable[[str], Awaitable[int]] | None = None) -> None:
        self.keys = keys
        self.origin = origin
        self._url = url
        self._send_frame = send_frame
        self._listener = listener
        self._client = client
        self._subscribers = subscribers
        self._handlers: dict[str, Callable[[bytes], None]] = {}
        self._gap_handlers: dict[str, GapHandler] = {}

    async def append(self, chat_id: str, frame: str) -> str:
        """History + publish in one script; returns the history id."""
        reply = await self._send_frame(chat_id, frame)
        return text(reply) if isinstance(reply, bytes | str) else str(reply)

    async def follow(self, chat_id: str, on_frame: FrameHandler,
                     on_gap: GapHandler | None = None) -> None:
        """SUBSCRIBE the chat's channel; returns once Redis confirmed it. ``on_gap``
        is called by :meth:`relinked`."""
        channel = self.keys.ui_channel(chat_id)
        if on_gap is not None:
            self._gap_handlers[channel] = on_gap

        def deliver(raw: bytes) -> None:
            sep = raw.find(b"|")
            on_frame(raw[:sep].decode(), raw[sep + 1:].decode())

        await self._subscribe(channel, deliver, what=f"chat {chat_id}")

    def unfollow(self, chat_id: str) -> None:
        """UNSUBSCRIBE the chat's channel."""
        channel = self.keys.ui_channel(chat_id)
        self._gap_handlers.pop(channel, None)
        if self._handlers.pop(channel, None) is not None:
            self._listener.remove(channel, pattern=False)

    def relinked(self) -> None:
        """The listener's link was lost and its subscriptions are confirmed again:
        every followed chat may have missed frames meanwhile."""
        for on_gap in list(self._gap_handlers.values()):
            on_gap()

    async def history(self, chat_id: str) -> list[tuple[str, str]]:
        """XRANGE of the chat's history stream."""
        async with redis_errors("read chat history", self._url):
            rows: Any = await self._client().xrange(self.keys.ui_history(chat_id))
        field = UI_FRAME_FIELD.encode()
        return [(text(row_id), text(fields[field])) for row_id, fields in rows]

    async def claim(self, name: str, ttl_s: int, on_message: ControlHandler) -> None:
        """Own ``name``: listen on this origin's control channel, then SET the claim."""
        control = self.keys.control_channel(self.origin)
        if control not in self._handlers:
            await self._subscribe(control, lambda raw: on_message(raw.decode()),
                                  what="the control channel")
        async with redis_errors("claim an input request", self._url):
            await self._client().set(self.keys.input_request(name), self.origin, ex=ttl_s)

    async def route(self, name: str, message: str) -> RouteResult:
        """GETDEL the claim; publish to its owner unless that is this process."""
        async with redis_errors("route an input", self._url):
            owner: Any = await self._client().getdel(self.keys.input_request(name))
            if owner is None:
                return "unclaimed"
            owner = text(owner)
            if owner == self.origin:
                return "here"
            channel = self.keys.control_channel(owner)
            receivers = await self._client().publish(channel, message)
            if not receivers and self._subscribers is not None:
                receivers = await self._subscribers(channel)
        return "sent" if int(receivers) > 0 else "unclaimed"

    def on_message(self, channel: bytes, data: bytes) -> None:
        """A message on an exact channel (the listener's ``message`` kind)."""
        handler = self._handlers.get(channel.decode())
        if handler is not None:
            handler(data)

    async def _subscribe(self, channel: str, handler: Callable[[bytes], None], *,
                         what: str) -> None:
        first = channel not in self._handlers
        self._handlers[channel] = handler
        if first:
            self._listener.add(channel, pattern=False)
        if not await self._listener.wait_subscribed(channel, SUBSCRIBE_TIMEOUT_S):
            if first:
                self._handlers.pop(channel, None)
                self._listener.remove(channel, pattern=False)
            raise BrokerUnavailable(f"could not subscribe to {what}")

