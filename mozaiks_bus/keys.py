"""Every Redis key, channel, stream and consumer-group name mozaiks-bus uses.

Nothing else in the package builds a Redis name by hand: operators audit the keyspace
here, tests isolate by prefix, and a Redis ACL can fence one install with ``~<prefix>:*``
and ``&<prefix>:*``. ``P`` is the prefix (``MOZAIKS_BUS_PREFIX``, default ``mozaiks``).

=============================  =================================  =================
method                         name                               cluster slot of
=============================  =================================  =================
``stream(t)``                  ``P:stream:{t}``                   type ``t``
``dead_letter_stream(t)``      ``P:dlq:{t}``                      type ``t``
``processed_ids(g, t)``        ``P:processed:g:{t}``              type ``t``
``fanout_channel(t)``          ``P:fanout:t``                     whole name
``fanout_pattern()``           ``P:fanout:*``                     (PSUBSCRIBE)
``fanout_subscription(p)``     ``P:fanout:p``                     (PSUBSCRIBE)
``stream_index()``             ``P:streams`` (set of types)       whole name
``ui_channel(c)``              ``P:ui:{c'}``                      chat ``c``
``ui_history(c)``              ``P:ui-history:{c'}``              chat ``c``
``dedupe(i)``                  ``P:dedupe:{i'}``                  event id ``i``
``input_request(r)``           ``P:input:{r'}``                   request ``r``
``control_channel(o)``         ``P:ctl:o'``                       whole name
``meta()``                     ``P:meta``                         whole name
``group(g)``                   ``g`` (not a key; validated only)  -
=============================  =================================  =================

Why these slots (Redis Cluster hashes only the text inside the first ``{...}``):

* A type's stream, its dead-letter stream and each group's processed-id set share the
  tag ``{t}``: dead-lettering (XADD to the DLQ + XACK on the stream) and ack-and-record
  run as one MULTI or script. Different types hash to different slots, so load spreads
  and no command ever touches two types' streams at once.
* A chat's pub/sub channel and its history stream share ``{c'}``: a script appends to
  the history and publishes in one step (and SPUBLISH inside a script needs the channel
  in the script's slot). Every chat lands on its own slot.
* ``dedupe`` and ``input_request`` are single-key operations (``SET NX EX``, ``GET``/
  ``DEL``), tagged by their own id so they spread. A dedupe claim is therefore never in
  the same script as a stream write; the caller claims first and releases on failure.
* Fan-out channels carry no tag: classic PUBLISH is cluster-wide, and a move to SPUBLISH
  spreads channels by their full name.

Nothing user-controlled sits unescaped inside braces. Type names are validated by
:func:`mozaiks_bus.event.validate_type` (``[a-z0-9_.]``); group names must match
``[A-Za-z0-9_.-]{1,64}``; chat, event and request ids (``c'``, ``i'``, ``r'``) are
percent-encoded (UTF-8; only ``A-Z a-z 0-9 _ . - ~`` kept), which is injective and leaves
no ``{``, ``}``, ``*``, ``?``, ``[`` or ``:`` in the name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from .errors import ConfigError, InvalidEvent
from .event import validate_type
from .patterns import validate_pattern

__all__ = ["MAX_ID_LENGTH", "Keys"]

MAX_ID_LENGTH = 256
_PREFIX_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_GROUP_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _escape(field: str, value: object) -> str:
    """Percent-encode a user-controlled id so it is safe inside a hash tag."""
    if not isinstance(value, str) or not value:
        raise InvalidEvent(field, "must be a non-empty string", value=value)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(field, f"must be at most {MAX_ID_LENGTH} characters", value=value)
    try:
        return quote(value, safe="", errors="strict")
    except UnicodeEncodeError:
        raise InvalidEvent(field, "must be valid Unicode text", value=value) from None


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis names of one mozaiks-bus install, all under ``prefix``."""

    prefix: str = "mozaiks"

    def __post_init__(self) -> None:
        if not isinstance(self.prefix, str) or _PREFIX_RE.fullmatch(self.prefix) is None:
            raise ConfigError(
                "prefix", f"must be 1-64 characters of A-Z a-z 0-9 _ - (got {self.prefix!r})"
            )

    def stream(self, type_name: str) -> str:
        """The durable stream of one event type."""
        return f"{self.prefix}:stream:{{{validate_type(type_name)}}}"

    def dead_letter_stream(self, type_name: str) -> str:
        """Dead letters of one event type; same slot as :meth:`stream`."""
        return f"{self.prefix}:dlq:{{{validate_type(type_name)}}}"

    def processed_ids(self, group: str, type_name: str) -> str:
        """Ids a group has finished for one type; same slot as :meth:`stream`."""
        return f"{self.prefix}:processed:{self.group(group)}:{{{validate_type(type_name)}}}"

    @staticmethod
    def group(name: str) -> str:
        """A consumer-group name (not a key), returned once validated."""
        if not isinstance(name, str) or _GROUP_RE.fullmatch(name) is None:
            raise ConfigError(
                "group", f"must be 1-64 characters of A-Z a-z 0-9 _ . - (got {name!r})"
            )
        return name

    def fanout_channel(self, type_name: str) -> str:
        """The pub/sub channel of one event type (one channel per type)."""
        return f"{self.prefix}:fanout:{validate_type(type_name)}"

    def fanout_subscription(self, pattern: str) -> str:
        """The PSUBSCRIBE pattern for a subscription pattern (see mozaiks_bus.patterns)."""
        return f"{self.prefix}:fanout:{validate_pattern(pattern)}"

    def stream_index(self) -> str:
        """A set of the event types that have a durable stream (no KEYS/SCAN needed)."""
        return f"{self.prefix}:streams"

    def fanout_pattern(self) -> str:
        """A PSUBSCRIBE pattern matching every fan-out channel of this prefix."""
        return f"{self.prefix}:fanout:*"

    def ui_channel(self, chat_id: str) -> str:
        """The pub/sub channel of one chat's WebSockets."""
        return f"{self.prefix}:ui:{{{_escape('chat_id', chat_id)}}}"

    def ui_history(self, chat_id: str) -> str:
        """One chat's short history stream; same slot as :meth:`ui_channel`."""
        return f"{self.prefix}:ui-history:{{{_escape('chat_id', chat_id)}}}"

    def dedupe(self, event_id: str) -> str:
        """The dedupe claim of one event id (``SET NX EX``)."""
        return f"{self.prefix}:dedupe:{{{_escape('id', event_id)}}}"

    def input_request(self, request_id: str) -> str:
        """A pending user-input (or UI-tool) request."""
        return f"{self.prefix}:input:{{{_escape('request_id', request_id)}}}"

    def control_channel(self, origin: str) -> str:
        """The private channel of one transport instance (cross-process input routing)."""
        return f"{self.prefix}:ctl:{_escape('origin', origin)}"

    def meta(self) -> str:
        """Install-wide metadata (a hash: schema version and the like)."""
        return f"{self.prefix}:meta"
