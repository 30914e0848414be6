"""JSON and time as they travel: RFC 3339 timestamps, a strict decoder, JSON safety.

Shared by the envelope (:mod:`mozaiks_bus.event`), the ui frames and the HTTP API, so
every place writes times the same way (UTC, ``Z``, microseconds) and rejects what is
not JSON the same way (NaN and Infinity are not JSON).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from mozaiks_bus.errors import InvalidEvent

__all__ = ["DECODER", "decode_json", "format_time", "is_json_safe", "json_depth_exceeds",
           "json_safe", "parse_time", "try_fast_json"]

_STRING_RE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")  # every byte but brackets


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix and microseconds."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"  # "+00:00" -> "Z"


def parse_time(value: object) -> datetime:
    """Parse an RFC 3339 timestamp; a missing offset is an error."""
    if not isinstance(value, str):
        raise InvalidEvent("time", "must be an RFC 3339 string", value=value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidEvent("time", "must be an RFC 3339 timestamp", value=value) from None
    zone = moment.tzinfo
    if zone is UTC:  # "Z" or "+00:00": what every mozaiks-bus writer sends
        return moment
    if zone is None:
        raise InvalidEvent("time", "must carry a UTC offset or 'Z'", value=value)
    return moment.astimezone(UTC)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # NaN/Infinity are not JSON
_FAST = msgspec.json.Decoder()
_FAST_REFUSES = (msgspec.MsgspecError, RecursionError)


def try_fast_json(raw: bytes | str) -> tuple[bool, Any]:
    """``(True, value)`` when msgspec decodes ``raw`` (what :data:`DECODER` would give),
    else ``(False, None)``: the caller's own strict path then says what is wrong."""
    try:
        return True, _FAST.decode(raw)
    except _FAST_REFUSES:
        return False, None


def decode_json(raw: bytes | str) -> Any:
    """Decode JSON exactly as :data:`DECODER` does (same values accepted, same errors),
    about three times faster for what is well formed.

    msgspec decodes first (bytes without a ``.decode()``; integers of any size stay
    ints, NaN/Infinity are refused like ``DECODER`` refuses them); whatever it refuses
    (a lone surrogate escape, a float beyond double range, deep nesting, malformed
    input) goes through ``DECODER``, which gives the answer or the usual ``ValueError``.
    """
    try:
        return _FAST.decode(raw)
    except _FAST_REFUSES:
        return DECODER.decode(raw.decode() if isinstance(raw, bytes) else raw)


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether arrays/objects in the JSON text ``raw`` nest deeper than ``limit`` (strings
    ignored). Linear and not recursive: run it before a recursive decoder sees a body
    from outside, so a hostile one meets a rule instead of a ``RecursionError``."""
    brackets = _STRING_RE.sub(b"", raw).translate(None, _BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    depth = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def is_json_safe(value: object, _depth: int = 0) -> bool:
    """True when ``value`` is made only of JSON types (no NaN/inf, str keys)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if _depth > 64:
        return False
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str and not isinstance(key, str):
                return False
            item_kind = type(item)
            if item_kind is str or item_kind is int or item_kind is bool or item is None:
                continue
            if not is_json_safe(item, _depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        return all(is_json_safe(item, _depth + 1) for item in value)  # type: ignore[attr-defined]
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, str | int):  # subclasses such as str/int enums encode as their base
        return True
    if isinstance(value, dict | list | tuple):
        return is_json_safe(dict(value) if isinstance(value, dict) else list(value), _depth)
    return False


_MAX_SAFE_DEPTH = 32
_CONVERSIONS: tuple[tuple[type[Any], Callable[[Any], Any]], ...] = (
    (datetime, lambda value: format_time(value if value.tzinfo else value.replace(tzinfo=UTC))),
    (date, date.isoformat),
    (uuid.UUID, str),
    (bytes, lambda value: value.decode("utf-8", "replace")),
    (BaseException, lambda value: f"{type(value).__name__}: {value}"),
)


def json_safe(value: Any, *, fallback: Callable[[Any], Any] = str, _depth: int = 0) -> Any:
    """``value`` made JSON data, never raising: containers walked (keys as strings,
    tuples and sets as lists), datetimes RFC 3339, UUIDs and bytes as text, exceptions
    as ``Type: message``, non-finite floats and anything else through ``fallback``
    (default ``str``). For payloads built from objects the caller does not control."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if _depth > _MAX_SAFE_DEPTH:
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item, fallback=fallback, _depth=_depth + 1)
                for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(item, fallback=fallback, _depth=_depth + 1) for item in value]
    for kind, convert in _CONVERSIONS:
        if isinstance(value, kind):
            return convert(value)
    return fallback(value)
