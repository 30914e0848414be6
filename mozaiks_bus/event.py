"""The event envelope: CloudEvents 1.0 attributes, JSON in structured mode.

An :class:`Event` is immutable. Its ``id`` is a UUIDv7 (RFC 9562) string: unique,
and sortable by creation time (monotonic within one process). ``time`` is always an
aware UTC datetime and is written as RFC 3339 with a ``Z`` suffix.

Type names (:data:`TYPE_PATTERN`) are CloudEvents-style: dot-separated, non-empty
segments of ASCII letters in either case, digits, ``_`` and ``-``, the name starting
with a letter, at most 128 characters (``order.created``, ``com.example.order-created``,
``Order.Created``). Names are case-sensitive, as CloudEvents ``type`` is:
``Order.Created`` and ``order.created`` are two types, with two streams. Spaces, ``*``,
``{``/``}`` (Redis hash tags), ``:`` (the partition separator in stream names), control
characters and anything else raise :class:`InvalidEvent` naming the rule, before any
transport sees them. Subscription patterns may also use ``*`` inside a segment (see
:mod:`mozaiks_bus.patterns`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

import msgspec
import uuid_utils

from mozaiks_bus.errors import InvalidEvent
from mozaiks_bus.wire import DECODER, decode_json, format_time, is_json_safe, parse_time

__all__ = [
    "DEFAULT_SOURCE",
    "EXTENSION_ATTRIBUTES",
    "JSON_RULE",
    "MAX_TYPE_LENGTH",
    "SPECVERSION",
    "TYPE_PATTERN",
    "TYPE_RULE",
    "Event",
    "format_time",
    "is_json_safe",
    "new_event_id",
    "parse_time",
    "validate_type",
]

SPECVERSION = "1.0"
DEFAULT_SOURCE = "mozaiks"  # the default service name (settings.DEFAULT_SERVICE)
MAX_TYPE_LENGTH = 128
TYPE_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$"
"""The type-name rule as a regular expression (also the HTTP API's JSON Schema)."""
TYPE_RULE = (
    f"must match {TYPE_PATTERN} (dot-separated non-empty segments of ASCII letters, "
    "digits, '_' and '-', starting with a letter; no spaces, '*', '{}', ':' or control "
    f"characters) and be at most {MAX_TYPE_LENGTH} characters"
)
EXTENSION_ATTRIBUTES = ("correlationid", "causationid", "traceparent")

_TYPE_RE = re.compile(TYPE_PATTERN)  # used with fullmatch: no trailing newline slips by
_EXTENSION_NAME_RE = re.compile(r"[a-z0-9]{1,20}")
_WIRE_OPTIONAL = ("subject", *EXTENSION_ATTRIBUTES)
_MAX_ID_LENGTH = 256
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)
_FAST_ENCODE = msgspec.json.Encoder().encode
JSON_RULE = (
    "must be JSON-serialisable for a remote scope: only objects with string keys, "
    "arrays, strings, finite numbers, booleans and null (no datetimes or other objects)"
)
_MAX_ATTRIBUTE_LENGTH = 1024


def validate_type(type_name: object) -> str:
    """Return ``type_name`` if it is a valid event type name, else raise InvalidEvent."""
    if type(type_name) is str and type_name in _KNOWN_TYPES:  # seen: skip the regex
        return type_name
    if not isinstance(type_name, str):
        raise InvalidEvent("type", "must be a string", value=type_name)
    if not _remember_type(type_name):
        raise InvalidEvent("type", TYPE_RULE, value=type_name)
    return type_name


def new_event_id() -> str:
    """A new UUIDv7 string: unique, and ordered by creation time within a process."""
    return str(uuid_utils.uuid7())


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _check_text(name: str, value: object, *, required: bool, limit: int) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value:
        raise InvalidEvent(name, "must be a non-empty string", value=value)
    if len(value) > limit:
        raise InvalidEvent(name, f"must be at most {limit} characters", value=value)
    if _CONTROL_RE.search(value) is not None:
        raise InvalidEvent(name, "must not contain control characters", value=value)


@dataclass(frozen=True, slots=True)
class Event:
    """One event: the CloudEvents 1.0 envelope around a JSON-object ``data``.

    Build one with :meth:`create` (validates and fills ``id``/``time``), or decode one
    with :meth:`from_json` / :meth:`from_dict`. ``data`` is kept by reference: the
    in-process scope hands the very same dict to local subscribers.
    """

    type: str
    source: str
    id: str = field(default_factory=new_event_id)
    time: datetime = field(default_factory=_utcnow)
    data: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    datacontenttype: str = "application/json"
    specversion: str = SPECVERSION
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None
    extensions: Mapping[str, str | int | bool] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        source: str = DEFAULT_SOURCE,
        id: str | None = None,
        time: datetime | None = None,
        subject: str | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
        traceparent: str | None = None,
        extensions: Mapping[str, str | int | bool] | None = None,
    ) -> Event:
        """Validate the attributes and build an event (``data`` kept by reference)."""
        validate_type(type)
        _check_text("source", source, required=True, limit=_MAX_ATTRIBUTE_LENGTH)
        _check_text("id", id, required=False, limit=_MAX_ID_LENGTH)
        _check_text("subject", subject, required=False, limit=_MAX_ATTRIBUTE_LENGTH)
        for name, value in (
            ("correlationid", correlationid),
            ("causationid", causationid),
            ("traceparent", traceparent),
        ):
            _check_text(name, value, required=False, limit=_MAX_ATTRIBUTE_LENGTH)
        if data is None:
            payload: dict[str, Any] = {}
        elif isinstance(data, dict):
            payload = data
        elif isinstance(data, Mapping):
            payload = dict(data)
        else:
            raise InvalidEvent("data", "must be a JSON object (a dict)", value=data)
        if time is None:
            stamp = _utcnow()
        elif time.tzinfo is None:
            raise InvalidEvent("time", "must be timezone-aware (UTC)", value=time)
        else:
            stamp = time.astimezone(UTC)
        ext = dict(extensions) if extensions else {}
        for ext_name, ext_value in ext.items():
            _check_extension(ext_name, ext_value)
        if cls is not Event:  # a subclass gets its own __init__ (and __post_init__)
            return cls(type=type, source=source, id=id or new_event_id(), time=stamp,
                       data=payload, subject=subject, correlationid=correlationid,
                       causationid=causationid, traceparent=traceparent, extensions=ext)
        return _build(type, source, id or new_event_id(), stamp, payload, subject,
                      correlationid, causationid, traceparent, ext)

    def with_data(self, data: dict[str, Any]) -> Event:
        """A copy of this event carrying ``data`` instead."""
        return replace(self, data=data)

    # -- wire format ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The structured-mode CloudEvent as a dict (``time`` as RFC 3339 UTC)."""
        out: dict[str, Any] = {
            "specversion": self.specversion,
            "id": self.id,
            "type": self.type,
            "source": self.source,
            "time": format_time(self.time),
            "datacontenttype": self.datacontenttype,
        }
        if self.subject is not None:
            out["subject"] = self.subject
        for name in EXTENSION_ATTRIBUTES:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update(self.extensions)
        out["data"] = self.data
        return out

    def to_json(self) -> str:
        """Compact JSON (UTF-8 text, not ASCII-escaped); raises InvalidEvent if ``data``
        is not JSON-serialisable.

        Strict: keys must be strings and floats finite, so what is decoded on the other
        side equals what was sent (json.dumps would silently turn ``{1: x}`` into
        ``{"1": x}``). msgspec encodes (about 8x the stdlib); what it does not know (a
        ``str`` subclass, say) goes through the stdlib encoder, with the same meaning.
        """
        if not is_json_safe(self.data):
            raise InvalidEvent("data", JSON_RULE)
        obj = self.to_dict()
        try:
            return _FAST_ENCODE(obj).decode()
        except (TypeError, msgspec.EncodeError):
            pass
        try:
            return _ENCODER.encode(obj)
        except (TypeError, ValueError) as exc:
            raise InvalidEvent("data", f"{JSON_RULE}: {exc}") from None

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        """Decode a structured-mode CloudEvent; raises InvalidEvent when malformed."""
        try:
            obj = DECODER.decode(raw.decode() if isinstance(raw, bytes) else raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEvent("event", f"must be valid JSON: {exc}") from None
        return cls.from_dict(obj)

    @classmethod
    def from_wire(cls, raw: str | bytes) -> Event:
        """Decode an event that a mozaiks-bus transport wrote into this install's keys.

        A fast path for what :meth:`to_json` produced (the shape is checked, the type
        name validated, the time parsed); anything else goes through the full
        :meth:`from_json` checks. Input from outside (HTTP) must use :meth:`from_json`.
        """
        try:
            obj = decode_json(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidEvent("event", f"must be valid JSON: {exc}") from None
        if type(obj) is not dict or not obj.keys() <= _WIRE_KEYS:
            return cls.from_dict(obj)
        type_name, event_id, source, data = (
            obj.get("type"), obj.get("id"), obj.get("source"), obj.get("data"),
        )
        if (
            obj.get("specversion") != SPECVERSION
            or obj.get("datacontenttype") != "application/json"
            or type(type_name) is not str
            or (type_name not in _KNOWN_TYPES and not _remember_type(type_name))
            or type(event_id) is not str or not event_id
            or type(source) is not str or not source
            or type(data) is not dict
            or (len(obj) > _WIRE_REQUIRED and not _optional_are_text(obj))
        ):
            return cls.from_dict(obj)
        return _trusted(type_name, source, event_id, data, obj)

    @classmethod
    def from_dict(cls, obj: object) -> Event:
        """Build an event from a decoded structured-mode CloudEvent object."""
        if not isinstance(obj, dict):
            raise InvalidEvent("event", "must be a JSON object", value=obj)
        spec = obj.get("specversion", SPECVERSION)
        if spec != SPECVERSION:
            raise InvalidEvent("specversion", f"must be {SPECVERSION!r}", value=spec)
        content_type = obj.get("datacontenttype", "application/json")
        if not isinstance(content_type, str) or not _is_json_content_type(content_type):
            raise InvalidEvent(
                "datacontenttype", "must be application/json (structured JSON mode)",
                value=content_type,
            )
        extensions = {
            key: value for key, value in obj.items()
            if key not in _CORE_ATTRIBUTES and key not in EXTENSION_ATTRIBUTES
        }
        time_value = obj.get("time")
        event = cls.create(
            obj.get("type"),  # type: ignore[arg-type]  # validated inside create()
            obj.get("data"),
            source=obj.get("source", "unknown"),
            id=obj.get("id"),
            time=None if time_value is None else parse_time(time_value),
            subject=obj.get("subject"),
            correlationid=obj.get("correlationid"),
            causationid=obj.get("causationid"),
            traceparent=obj.get("traceparent"),
            extensions=extensions,
        )
        if content_type != event.datacontenttype:
            event = replace(event, datacontenttype=content_type)
        return event


_KNOWN_TYPES: set[str] = set()  # type names that passed the rule (bounded below)
_FIELDS = tuple(item.name for item in fields(Event))  # == Event.__slots__, in order
_SETTERS = tuple(Event.__dict__[name].__set__ for name in _FIELDS)  # slot descriptors
# Wire attributes: every field but the ``extensions`` mapping, whose keys are written
# as attributes of their own.
_WIRE_KEYS = frozenset(_FIELDS) - {"extensions"}
_CORE_ATTRIBUTES = _WIRE_KEYS - set(EXTENSION_ATTRIBUTES)
_new = object.__new__


def _build(  # noqa: PLR0917  # positional on purpose: the publish hot path
        type_name: str, source: str, event_id: str, time: datetime, data: dict[str, Any],
        subject: str | None, correlationid: str | None, causationid: str | None,
        traceparent: str | None, extensions: dict[str, str | int | bool]) -> Event:
    """An event from validated attributes, through the slot descriptors (see
    :func:`_trusted`)."""
    event: Event = _new(Event)
    # _SETTERS are in field order; a test builds every field through here and fails
    # if this unpacking drifts from the class.
    (s_type, s_source, s_id, s_time, s_data, s_subject, s_content_type, s_spec, s_corr,
     s_cause, s_trace, s_ext) = _SETTERS
    s_type(event, type_name)
    s_source(event, source)
    s_id(event, event_id)
    s_time(event, time)
    s_data(event, data)
    s_subject(event, subject)
    s_content_type(event, "application/json")
    s_spec(event, SPECVERSION)
    s_corr(event, correlationid)
    s_cause(event, causationid)
    s_trace(event, traceparent)
    s_ext(event, extensions)
    return event


def _trusted(type_name: str, source: str, event_id: str, data: dict[str, Any],
             obj: dict[str, Any]) -> Event:
    """An event from checked wire fields (the rest read from ``obj``, the decoded wire
    object), without the frozen dataclass ``__init__``
    (which sets each of the 12 fields through ``object.__setattr__``: about half the
    cost of :meth:`Event.from_wire` beside the JSON decode). The slot descriptors set
    them directly; the event is as frozen as any other."""
    return _build(type_name, source, event_id, parse_time(obj.get("time")), data,
                  obj.get("subject"), obj.get("correlationid"), obj.get("causationid"),
                  obj.get("traceparent"), {})  # a dict of its own, as the default gives
_WIRE_REQUIRED = 7  # specversion, id, type, source, time, datacontenttype, data


def _remember_type(type_name: str) -> bool:
    """Validate a type name once; later events of the type skip the regex."""
    if len(type_name) > MAX_TYPE_LENGTH or _TYPE_RE.fullmatch(type_name) is None:
        return False
    if len(_KNOWN_TYPES) < 10_000:
        _KNOWN_TYPES.add(type_name)
    return True


def _optional_are_text(obj: dict[str, Any]) -> bool:
    return all(type(obj.get(name, "")) is str for name in _WIRE_OPTIONAL)


def _check_extension(key: object, value: object) -> None:
    if not isinstance(key, str) or _EXTENSION_NAME_RE.fullmatch(key) is None:
        raise InvalidEvent(
            "extensions", "attribute names must be 1-20 lowercase letters or digits",
            value=key,
        )
    if not isinstance(value, str | int | bool):
        raise InvalidEvent(f"{key}", "extension values must be strings, integers or booleans",
                           value=value)


def _is_json_content_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
