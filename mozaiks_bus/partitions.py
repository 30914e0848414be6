"""Partitioned streams: one hot event type split over N streams by a key.

``stream_partitions = {"chat.usage_summary": 8}`` stores that type in eight streams,
``chat.usage_summary:p0`` ... ``:p7`` (*stream names*; the key of each is
``P:stream:{chat.usage_summary:p3}``, so every partition has a hash tag of its own and
the partitions spread over a cluster's shards). An event goes to partition
``crc32(key) % N``, the key being its ``subject`` (its ``id`` when it has none): every
event of one key is in one stream, in publish order.

Everything durable works per stream name (reads, acks, claims, retention, dead letters,
replay): a partition is a stream like any other, with its dead letters and processed ids
in its own slot. Consumers of a group read every partition, and the group shares out
the entries as it does one stream's. Handlers see the event's own type;
``Delivery.type`` is the type too, ``Delivery.stream`` the partition's stream name.

Every process of an install must share the setting: changing N moves keys to other
partitions (drain the type's streams first). Pick N at 4-8 times the cluster's
primaries: hash tags land on slots unevenly.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping

from mozaiks_bus.errors import ConfigError, InvalidEvent
from mozaiks_bus.event import Event, validate_type
from mozaiks_bus.patterns import Pattern

__all__ = ["MAX_PARTITIONS", "Partitions", "base_type", "validate_stream_name"]

MAX_PARTITIONS = 1024
_SUFFIX_RE = re.compile(r":p(0|[1-9][0-9]{0,3})")


def base_type(stream_name: str) -> str:
    """The event type a stream name holds (``t:p3`` -> ``t``; ``t`` -> ``t``)."""
    return stream_name.partition(":")[0]


def validate_stream_name(name: str) -> str:
    """``name`` if it is a type (see :func:`~mozaiks_bus.event.validate_type`) or a
    type's partition (``<type>:p<n>``, n < :data:`MAX_PARTITIONS`), else InvalidEvent."""
    head, sep, tail = name.partition(":") if isinstance(name, str) else (name, "", "")
    validate_type(head)
    if sep and (not _SUFFIX_RE.fullmatch(sep + tail) or int(tail[1:]) >= MAX_PARTITIONS):
        validate_type(name)  # raises, naming the rule for type names
    return name


class Partitions:
    """Which types are partitioned, and into how many streams."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        self.counts = dict(counts or {})

    @staticmethod
    def check(counts: Mapping[str, int]) -> dict[str, int]:
        """The validated setting: type names (exact, no patterns), 1..1024 streams each
        (1: not partitioned). Raises ConfigError naming ``stream_partitions``."""
        checked: dict[str, int] = {}
        for type_name, count in counts.items():
            try:
                validate_type(type_name)
            except InvalidEvent as exc:  # re-raised as the setting's error
                raise ConfigError("stream_partitions", f"keys must be event types, exact "
                                  f"(no patterns): {type_name!r} {exc.rule}") from None
            if not isinstance(count, int) or isinstance(count, bool) or \
                    not 1 <= count <= MAX_PARTITIONS:
                raise ConfigError("stream_partitions", f"{type_name}: the number of "
                                  f"partitions must be an integer from 1 to {MAX_PARTITIONS} "
                                  f"(got {count!r})")
            checked[type_name] = count
        return checked

    def stream_name(self, event: Event) -> str:
        """The stream ``event`` is stored in."""
        count = self.counts.get(event.type, 1)
        if count <= 1:
            return event.type
        key = event.subject or event.id
        return f"{event.type}:p{zlib.crc32(key.encode()) % count}"

    def matching(self, pattern: Pattern, indexed: Iterable[str]) -> list[str]:
        """The stream names a consumer of ``pattern`` reads: an exact type's streams,
        or every indexed stream (and every partition of a partitioned type) whose type
        the pattern matches."""
        if pattern.is_exact:
            return self.stream_names(pattern.text)
        known = set(indexed)
        known.update(name for type_name in self.counts for name in self.stream_names(type_name))
        return [name for name in sorted(known) if pattern.matches(base_type(name))]

    def stream_names(self, type_name: str) -> list[str]:
        """Every stream of ``type_name`` (the type itself when it is not partitioned)."""
        count = self.counts.get(type_name, 1)
        if count <= 1:
            return [type_name]
        return [f"{type_name}:p{index}" for index in range(count)]
