"""Durable streams: entry format, consumer groups, inspection, replay and dead letters.

One stream per event type (``keys.stream(type)``), each entry one event:
``e`` = the CloudEvent JSON, and on a targeted replay ``g`` = the only group that
should handle it (other groups ack and skip it). A type's dead-letter stream
(``keys.dead_letter_stream(type)``) holds ``e``, ``error``, ``group``, ``deliveries``,
``dead_at`` (ms), ``source_id`` and ``consumer``.

Groups are created at id ``0`` with MKSTREAM (BUSYGROUP counts as success), so a
group never skips events published before its first consumer started.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from mozaiks_bus.connection import AsyncClient, text
from mozaiks_bus.connection.redis_errors import is_busygroup, redis_errors
from mozaiks_bus.connection.transactions import multi_exec
from mozaiks_bus.errors import InvalidEvent, MozaiksBusError
from mozaiks_bus.event import Event
from mozaiks_bus.interest import Declaration, declarations
from mozaiks_bus.keys import ENTRY_EVENT, ENTRY_GROUP, Keys

__all__ = [
    "SCAN_PAGE",
    "DeadLetter",
    "GroupInfo",
    "StreamInfo",
    "StreamInspector",
    "dead_letter_fields",
    "decode_entry",
    "ensure_group",
    "id_for_time",
    "id_millis",
    "is_entry_id",
    "matches_dead_letter",
    "scan_page",
]

_ERROR_MAX = 2000  # characters of a handler's error kept in a dead letter
_ENTRY_ID_RE = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")
SCAN_PAGE = 500  # dead letters read per round trip when looking one up by event id


def is_entry_id(value: str) -> bool:
    """Whether ``value`` has the form of a stream entry id (``1700000000000-0``)."""
    return _ENTRY_ID_RE.fullmatch(value) is not None


def matches_dead_letter(wanted: str, entry_id: str, event: dict[str, Any]) -> bool:
    """A dead letter is named by its entry id or by its event's id (what logs, the
    ``Idempotency-Key`` and ``/v1/sinks`` show)."""
    return wanted == entry_id or wanted == event.get("id")


class _Letter(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def event(self) -> dict[str, Any]: ...


L = TypeVar("L", bound=_Letter)


def scan_page(rows: list[Any], wanted: str, decode: Callable[[Any, Any], L]
              ) -> tuple[list[L], str | None]:
    """One ``XREVRANGE ... COUNT SCAN_PAGE`` page: the dead letters ``wanted`` names, and
    the ``max`` to read the next page from (None: this was the last page)."""
    found = [letter for letter in (decode(entry_id, fields) for entry_id, fields in rows)
             if matches_dead_letter(wanted, letter.id, letter.event)]
    return found, (f"({text(rows[-1][0])}" if len(rows) == SCAN_PAGE else None)


def id_millis(entry_id: bytes | str) -> int:
    """The millisecond timestamp part of a stream id."""
    return int(text(entry_id).split("-", 1)[0])


def id_for_time(moment: datetime) -> str:
    """The smallest stream id at or after ``moment`` (for replay from a time)."""
    if moment.tzinfo is None:
        raise InvalidEvent("from_time", "must be timezone-aware", value=moment)
    return f"{int(moment.timestamp() * 1000)}-0"


def decode_entry(fields: dict[bytes, bytes]) -> tuple[Event, str | None]:
    """The event of a stream entry and its replay target group (None: every group)."""
    raw = fields.get(ENTRY_EVENT)
    if raw is None:
        raise InvalidEvent("entry", "has no 'e' field (not written by mozaiks-bus)")
    target = fields.get(ENTRY_GROUP)
    return Event.from_wire(raw), None if target is None else target.decode()


def dead_letter_fields(event_json: bytes | str, *, error: str, group: str, deliveries: int,
                       source_id: str, consumer: str) -> dict[Any, Any]:
    """The fields of one dead-letter entry (read back by :class:`DeadLetter`)."""
    return {
        "e": event_json, "error": error[:_ERROR_MAX], "group": group,
        "deliveries": deliveries, "dead_at": int(time.time() * 1000), "source_id": source_id,
        "consumer": consumer,
    }


async def ensure_group(client: AsyncClient, stream: str, group: str, *, start: str = "0") -> bool:
    """Create ``group`` on ``stream`` at ``start`` (MKSTREAM); False if it existed."""
    async with redis_errors("create consumer group"):
        try:
            await client.xgroup_create(stream, group, id=start, mkstream=True)
        except Exception as exc:
            if is_busygroup(exc):
                return False
            raise
    return True


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """One consumer group's progress on one stream."""

    name: str
    consumers: int
    pending: int
    last_delivered_id: str
    lag: int | None
    oldest_pending_id: str | None
    oldest_pending_age_s: float | None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {field: getattr(self, field) for field in self.__slots__}


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A durable stream: its length, bounds and groups."""

    type: str
    key: str
    length: int
    first_id: str | None
    last_id: str | None
    entries_added: int
    groups: tuple[GroupInfo, ...]
    dead_letters: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        out: dict[str, object] = {f: getattr(self, f) for f in self.__slots__ if f != "groups"}
        out["groups"] = [group.to_dict() for group in self.groups]
        return out


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered event and why it died."""

    id: str
    type: str
    event: dict[str, Any]
    error: str
    group: str
    deliveries: int
    dead_at_ms: int
    source_id: str
    consumer: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {field: getattr(self, field) for field in self.__slots__}


class StreamInspector:
    """Read-side operations on the durable streams of one install (admin, CLI, tests)."""

    def __init__(self, client: AsyncClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    async def types(self) -> list[str]:
        """Event types with a durable stream, sorted."""
        async with redis_errors("list streams"):
            members = await self.client.smembers(self.keys.stream_index())
        return sorted(text(m) for m in members)

    async def stream(self, type_name: str) -> StreamInfo:
        """Length, bounds, groups (lag, pending, oldest pending age) and dead letters."""
        key = self.keys.stream(type_name)
        async with redis_errors("inspect stream"):
            if not await self.client.exists(key):
                return StreamInfo(type_name, key, 0, None, None, 0, (), 0)
            info = await self.client.xinfo_stream(key)
            raw_groups = await self.client.xinfo_groups(key)
            groups = [await self._group(key, g) for g in raw_groups]
            dead = await self.client.xlen(self.keys.dead_letter_stream(type_name))
        first, last = info.get("first-entry"), info.get("last-entry")
        return StreamInfo(
            type=type_name, key=key, length=int(info["length"]),
            first_id=text(first[0]) if first else None,
            last_id=text(last[0]) if last else None,
            entries_added=int(info.get("entries-added", info["length"])),
            groups=tuple(groups), dead_letters=int(dead),
        )

    async def _group(self, key: str, raw: dict[str, Any]) -> GroupInfo:
        name = text(raw["name"])
        summary = await self.client.xpending(key, name)
        oldest = summary.get("min") if summary and summary.get("pending") else None
        age = None if oldest is None else max(0.0, time.time() - id_millis(oldest) / 1000)
        lag = raw.get("lag")
        return GroupInfo(
            name=name, consumers=int(raw["consumers"]), pending=int(raw["pending"]),
            last_delivered_id=text(raw["last-delivered-id"]),
            lag=None if lag is None else int(lag),
            oldest_pending_id=None if oldest is None else text(oldest),
            oldest_pending_age_s=None if age is None else round(age, 3),
        )

    async def interest(self) -> list[Declaration]:
        """Every consumer group's declared interest (the types every publisher stores)."""
        return await declarations(self.client, self.keys)

    async def streams(self) -> list[StreamInfo]:
        """Every durable stream of this install."""
        return [await self.stream(type_name) for type_name in await self.types()]

    async def dead_letters(
        self, type_names: Iterable[str] | None = None, *, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters, newest first, across ``type_names`` (default: every type)."""
        names = list(type_names) if type_names is not None else await self.types()
        found: list[DeadLetter] = []
        async with redis_errors("list dead letters"):
            for name in names:
                rows: Any = await self.client.xrevrange(
                    self.keys.dead_letter_stream(name), count=limit
                )
                found.extend(_dead_letter(name, entry_id, fields) for entry_id, fields in rows)
        found.sort(key=lambda dl: dl.id, reverse=True)
        return found[:limit]

    async def dead_letter(self, type_name: str, entry_id: str) -> DeadLetter | None:
        """One dead letter by its id in the type's dead-letter stream (None: no such
        entry, or ``entry_id`` is not an entry id)."""
        if not is_entry_id(entry_id):
            return None
        async with redis_errors("read dead letter"):
            rows: Any = await self.client.xrange(
                self.keys.dead_letter_stream(type_name), min=entry_id, max=entry_id
            )
        return _dead_letter(type_name, *rows[0]) if rows else None

    async def find_dead_letters(self, type_name: str, wanted: str) -> list[DeadLetter]:
        """The dead letters of ``type_name`` named by ``wanted``: its entry id, or the id
        of the event (one event can be dead-lettered by several groups). Newest first;
        raises :class:`MozaiksBusError` naming both when there is none."""
        found: list[DeadLetter] = []
        letter = await self.dead_letter(type_name, wanted)
        if letter is not None:
            return [letter]
        key = self.keys.dead_letter_stream(type_name)
        end: str | None = "+"
        async with redis_errors("look up dead letters"):
            while end is not None:
                rows: Any = await self.client.xrevrange(key, max=end, count=SCAN_PAGE)
                page, end = scan_page(rows, wanted,
                                      lambda i, f: _dead_letter(type_name, i, f))
                found.extend(page)
        if not found:
            raise MozaiksBusError(f"{type_name} has no dead letter with entry id or event id "
                                  f"{wanted!r}")
        return found

    async def replay_dead_letter(self, type_name: str, entry_id: str) -> str:
        """Put a dead letter back on its stream for its group only; returns the new id.

        The event keeps its id (the idempotency key); other groups skip the copy. The
        dead letter is removed in the same transaction (one slot: both keys carry the
        type's hash tag).
        """
        letter = await self.dead_letter(type_name, entry_id)
        if letter is None:
            raise MozaiksBusError(f"no dead letter {entry_id} for {type_name}")
        event_json = Event.from_dict(letter.event).to_json()
        async with redis_errors("replay dead letter"):
            new_id, _ = await multi_exec(self.client, [
                ("XADD", self.keys.stream(type_name), "*", ENTRY_EVENT, event_json,
                 ENTRY_GROUP, letter.group),
                ("XDEL", self.keys.dead_letter_stream(type_name), entry_id),
            ])
        return text(new_id)

    async def delete_dead_letter(self, type_name: str, entry_id: str) -> bool:
        """Delete one dead letter; False if it was not there."""
        if not is_entry_id(entry_id):
            return False
        async with redis_errors("delete dead letter"):
            removed = await self.client.xdel(self.keys.dead_letter_stream(type_name), entry_id)
        return bool(removed)

    async def replay_group(
        self, type_name: str, group: str, *, from_id: str | None = None,
        from_time: datetime | None = None,
    ) -> str:
        """Move ``group``'s read position back (or forward) to an id or a time.

        Entries after that position are delivered again to the group (handlers must
        tolerate redelivery; the event id is the idempotency key). Returns the id set.
        """
        if (from_id is None) == (from_time is None):
            raise InvalidEvent("replay", "give exactly one of from_id and from_time")
        position = from_id if from_id is not None else id_for_time(from_time)  # type: ignore[arg-type]
        start = _previous_id(position)
        key = self.keys.stream(type_name)
        async with redis_errors("replay group"):
            if not await ensure_group(self.client, key, Keys.group(group), start=start):
                await self.client.xgroup_setid(key, group, start)
        return start


def _previous_id(entry_id: str) -> str:
    """The id just before ``entry_id``, so that ``entry_id`` itself is read again."""
    if entry_id in {"0", "0-0"}:
        return "0"
    try:
        millis, _, seq = entry_id.partition("-")
        ms, sq = int(millis), int(seq or 0)
    except ValueError:
        raise InvalidEvent("from_id", "must be a stream id like 1700000000000-0",
                           value=entry_id) from None
    if sq > 0:
        return f"{ms}-{sq - 1}"
    return "0" if ms == 0 else f"{ms - 1}-18446744073709551615"


def _dead_letter(type_name: str, entry_id: bytes | str, fields: dict[bytes, bytes]) -> DeadLetter:
    return DeadLetter(
        id=text(entry_id), type=type_name,
        event=json.loads(fields.get(b"e", b"{}")),
        error=text(fields.get(b"error", b"")), group=text(fields.get(b"group", b"")),
        deliveries=int(fields.get(b"deliveries", b"0")),
        dead_at_ms=int(fields.get(b"dead_at", b"0")),
        source_id=text(fields.get(b"source_id", b"")),
        consumer=text(fields.get(b"consumer", b"")),
    )
