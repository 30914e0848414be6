"""Partitioned streams: names, the setting's rules, where an event goes (no network)."""

from __future__ import annotations

from collections import Counter

import pytest

from mozaiks_bus import ConfigError, Event, InvalidEvent, load_settings
from mozaiks_bus.keys import Keys
from mozaiks_bus.partitions import Partitions, base_type, validate_stream_name


def test_a_subjects_events_always_go_to_one_partition_and_keys_spread() -> None:
    parts = Partitions({"chat.usage_summary": 8})
    names = [parts.stream_name(Event.create("chat.usage_summary", {}, subject=f"c{k}"))
             for k in range(400)]
    again = [parts.stream_name(Event.create("chat.usage_summary", {}, subject=f"c{k}"))
             for k in range(400)]
    assert names == again  # stable across events and processes (crc32, not hash())
    counts = Counter(names)
    assert set(counts) == set(parts.stream_names("chat.usage_summary"))
    assert min(counts.values()) > 20  # 400 keys over 8 partitions: none starved
    unsplit = Event.create("orders.created", {}, subject="c1")
    assert parts.stream_name(unsplit) == "orders.created"
    assert parts.stream_names("orders.created") == ["orders.created"]


def test_an_event_without_subject_is_keyed_by_its_id() -> None:
    parts = Partitions({"t.x": 4})
    event = Event.create("t.x", {}, id="fixed-id")
    assert parts.stream_name(event) == parts.stream_name(Event.create("t.x", {}, id="fixed-id"))


def test_stream_names_get_their_own_hash_tag() -> None:
    keys = Keys("mozaiks")
    assert keys.stream("chat.usage_summary:p3") == "mozaiks:stream:{chat.usage_summary:p3}"
    assert keys.dead_letter_stream("a.b:p0") == "mozaiks:dlq:{a.b:p0}"
    assert keys.processed_ids("g", "a.b:p12") == "mozaiks:processed:g:{a.b:p12}"
    assert base_type("a.b:p12") == "a.b"
    assert base_type("a.b") == "a.b"


@pytest.mark.parametrize("name", ["a.b:p", "a.b:p01", "a.b:x1", "a.b:p1024", "a.b:p1:p2",
                                  "a b:p1", "-a:p1", ":p1", "a.b:p-1"])
def test_malformed_stream_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidEvent):
        validate_stream_name(name)


@pytest.mark.parametrize(("value", "rule"), [
    ({"Bad Type": 4}, "keys must be event types"),
    ({"a.b": 0}, "from 1 to 1024"),
    ({"a.b": 1025}, "from 1 to 1024"),
    ({"a.*": 4}, "keys must be event types"),
])
def test_the_setting_names_itself_and_the_rule(value: dict[str, int], rule: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(stream_partitions=value)
    assert info.value.field == "stream_partitions"
    assert rule in str(info.value)


def test_the_setting_reads_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOZAIKS_BUS_STREAM_PARTITIONS", '{"chat.usage_summary": 8}')
    settings = load_settings()
    assert settings.partitions.counts == {"chat.usage_summary": 8}
