"""The ui scope's wire format: the platform's UI envelope, frame ids, the resync notice.

A frame is the JSON of ``{"type": "chat.<kind>", "data": {...}, "timestamp": ISO,
"agent": ...}``; a browser receives it with ``"id"`` (its history id, ``<ms>-<seq>`` as
Redis stream ids are) added last, which is what it sends back to resume. This module is
the one place that builds, parses and orders those; :mod:`mozaiks_bus.ui` and the
transports both use it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from mozaiks_bus.errors import InvalidEvent
from mozaiks_bus.event import Event, format_time, is_json_safe

__all__ = [
    "RESYNC_TYPE",
    "FrameId",
    "check_frame_id",
    "envelope_frame",
    "event_frame",
    "frame_id_of",
    "frame_key",
    "is_frame_id",
    "resync_notice",
    "with_id",
]

RESYNC_TYPE = "chat.resync_required"
FrameId = tuple[int, int]
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_DEFAULT_AGENT = "Agent"
_FRAME_ID_RE = re.compile(r"0|[0-9]{1,20}-[0-9]{1,20}")  # "0": the whole history


def _agent(data: dict[str, Any]) -> str:
    agent = data.get("agent") or data.get("sender") or _DEFAULT_AGENT
    return agent if isinstance(agent, str) else _DEFAULT_AGENT


def event_frame(event: Event) -> str:
    """The UI envelope for a CloudEvent of the ui scope (JSON).

    ``agent`` comes from ``data.agent`` or ``data.sender`` (else "Agent"), as the
    platform's transport adds it at flush; ``event_id`` is the CloudEvent's id."""
    return _ENCODER.encode({
        "type": event.type, "data": event.data, "timestamp": format_time(event.time),
        "agent": _agent(event.data), "event_id": event.id,
    })


def envelope_frame(envelope: dict[str, Any]) -> str:
    """A ``{"type", "data", ...}`` envelope as a frame: timestamp and agent defaulted,
    any ``id`` dropped (the history assigns it). Raises :class:`InvalidEvent`."""
    if not isinstance(envelope.get("type"), str) or not isinstance(envelope.get("data"), dict):
        raise InvalidEvent("event.type", "must be a string, with data a JSON object")
    envelope = dict(envelope)
    envelope.setdefault("timestamp", format_time(datetime.now(UTC)))
    envelope.setdefault("agent", _agent(envelope["data"]))
    envelope.pop("id", None)
    if not is_json_safe(envelope):
        raise InvalidEvent("event", "must be JSON-serialisable")
    return _ENCODER.encode(envelope)


def resync_notice(chat_id: str, last_event_id: str, oldest_available_id: str | None) -> str:
    """The frame that tells a client its ``last_event_id`` is older than the history."""
    return _ENCODER.encode({
        "type": RESYNC_TYPE, "timestamp": format_time(datetime.now(UTC)),
        "data": {"chat_id": chat_id, "last_event_id": last_event_id,
                 "oldest_available_id": oldest_available_id,
                 "reason": "frames after last_event_id are no longer in the history"},
    })


def with_id(frame: str, frame_id: str) -> str:
    """``frame`` as a client receives it: with ``"id"`` appended."""
    return f'{frame[:-1]},"id":"{frame_id}"}}'


def frame_id_of(sent: str) -> str:
    """The id of a frame made by :func:`with_id`."""
    start = sent.rfind(',"id":"') + 7
    return sent[start:sent.index('"', start)]


def frame_key(frame_id: str) -> FrameId:
    """A frame id as a sortable pair (raises ValueError for a malformed one)."""
    millis, _, seq = frame_id.partition("-")
    return int(millis), int(seq or 0)


def is_frame_id(value: object) -> bool:
    """Whether ``value`` is a frame id a client may resume from (``<ms>-<seq>``, or ``0``
    for the whole history)."""
    return isinstance(value, str) and _FRAME_ID_RE.fullmatch(value) is not None


def check_frame_id(frame_id: str, *, field: str = "last_event_id") -> None:
    """Raise :class:`InvalidEvent` naming ``field`` unless :func:`is_frame_id`."""
    if not is_frame_id(frame_id):
        raise InvalidEvent(field, "must be a frame id like 1700000000000-0",
                           value=frame_id)
