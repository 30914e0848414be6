"""The envelope: ids, times, type names and the JSON wire format."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError, fields
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mozaiks_bus import Event, InvalidEvent
from mozaiks_bus import event as event_module
from mozaiks_bus.event import TYPE_PATTERN, TYPE_RULE, new_event_id, validate_type

HOSTILE_TYPES = [
    "../../x",
    "a b",
    "*",
    "chat.*",
    "x{1}",
    "a\r\nb",
    "a\n",
    "x" * 300,
    "",
    "_settings_updated",
    "-x",
    "x-.",
    "x*",
    "x:y",
    "x\ty",
    "x\x00y",
    "order.created\u00e9",
    "\u0455ettings_updated",  # Cyrillic dze looks like an 's'
    "chat.run\u2024complete",  # one dot leader looks like '.'
    "1abc",
    "a..b",
    "a.",
    ".a",
    "a:b",
    "x" * 129,
]


@pytest.mark.parametrize("name", HOSTILE_TYPES)
def test_hostile_type_names_are_rejected_naming_the_rule(name: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        Event.create(name, {})
    assert info.value.field == "type"
    assert info.value.rule == TYPE_RULE
    assert TYPE_PATTERN in str(info.value)


def test_non_string_type_is_rejected() -> None:
    with pytest.raises(InvalidEvent, match="type: must be a string"):
        validate_type(42)


@pytest.mark.parametrize(
    "name", ["settings_updated", "chat.usage_summary", "plugin.execution.complete", "a" * 128,
             "com.example.order-created", "Order.Created", "OrderCreated", "a.B-c_9.-x-",
             "io.cloudevents.test.v1"],
)
def test_valid_type_names_pass(name: str) -> None:
    assert Event.create(name).type == name


def test_type_of_129_characters_is_rejected() -> None:
    with pytest.raises(InvalidEvent):
        Event.create("a" * 129)


def test_ids_are_unique_and_sort_by_creation() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)


def test_time_is_utc_and_naive_times_are_rejected() -> None:
    event = Event.create("a.b")
    assert event.time.tzinfo is UTC
    plus_two = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    assert Event.create("a.b", time=plus_two).time == datetime(2026, 1, 1, 10, tzinfo=UTC)
    with pytest.raises(InvalidEvent, match="time"):
        Event.create("a.b", time=datetime(2026, 1, 1))


def test_json_round_trip_keeps_every_attribute() -> None:
    event = Event.create(
        "chat.usage_summary",
        {"chat_id": "c1", "nested": {"n": [1, 2.5, None, True]}, "text": "héllo ✓"},
        source="ai-runtime",
        subject="c1",
        correlationid="corr-1",
        causationid="cause-1",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        extensions={"tenant": "acme"},
    )
    wire = event.to_json()
    decoded = Event.from_json(wire)
    assert decoded == event
    obj = json.loads(wire)
    assert obj["specversion"] == "1.0"
    assert obj["time"].endswith("Z")
    assert obj["datacontenttype"] == "application/json"
    assert obj["tenant"] == "acme"


def test_data_is_kept_by_reference() -> None:
    data = {"user_id": "u1"}
    assert Event.create("settings_updated", data).data is data


@pytest.mark.parametrize(
    "data",
    [{"when": datetime.now(UTC)}, {"x": float("nan")}, {"obj": object()}, {1: "int key"}],
)
def test_non_json_data_fails_to_encode_with_invalid_event(data: dict[object, object]) -> None:
    event = Event.create("a.b", data)  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent) as info:
        event.to_json()
    assert info.value.field == "data"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("{not json", "event"),
        ("[1, 2]", "event"),
        ('{"type": "a.b", "specversion": "0.3"}', "specversion"),
        ('{"type": "a:b"}', "type"),
        ('{"type": "a.b", "data": [1]}', "data"),
        ('{"type": "a.b", "time": "yesterday"}', "time"),
        ('{"type": "a.b", "time": "2026-01-01T00:00:00"}', "time"),
        ('{"type": "a.b", "datacontenttype": "text/plain"}', "datacontenttype"),
        ('{"type": "a.b", "x": NaN}', "event"),
        ('{"type": "a.b", "subject": "a\\nb"}', "subject"),
        ('{"type": "a.b", "Bad-Ext": "v"}', "extensions"),
    ],
)
def test_malformed_wire_events_name_the_field(raw: str, field: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        Event.from_json(raw)
    assert info.value.field == field


def test_error_messages_shorten_huge_values() -> None:
    with pytest.raises(InvalidEvent) as info:
        Event.create("x" * 10_000)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("name", [["x"], {"a": 1}, None, 3.5])
def test_non_string_types_of_any_kind_raise_invalid_event(name: object) -> None:
    with pytest.raises(InvalidEvent, match="must be a string"):
        validate_type(name)


def test_the_fast_encoder_writes_the_same_bytes_as_the_dict_form() -> None:
    for attrs in ({}, {"subject": 'c"1', "correlationid": "x"}, {"extensions": {"t": "a"}}):
        event = Event.create("a.b", {"k": "ü\u2028\x01", "n": [1, 2.5, 10**30]},
                             source='s"v', **attrs)  # type: ignore[arg-type]
        assert event.to_json() == json.dumps(event.to_dict(), separators=(",", ":"),
                                             ensure_ascii=False)
        assert Event.from_json(event.to_json()) == event


def test_what_the_fast_encoder_does_not_know_is_encoded_by_the_stdlib_alike() -> None:
    class Label(str):
        pass

    event = Event.create("a.b", {Label("k"): Label("v"), "t": (1, 2)})
    assert Event.from_wire(event.to_json()).data == {"k": "v", "t": [1, 2]}


@pytest.mark.parametrize("attrs", [
    {}, {"subject": "chat-1"},
    {"subject": "c", "correlationid": "k", "causationid": "p",
     "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
])
def test_from_wire_rebuilds_the_event_it_was_written_from(attrs: dict[str, str]) -> None:
    event = Event.create("orders.created", {"n": 1, "nested": {"a": [1, 2]}}, **attrs)
    decoded = Event.from_wire(event.to_json())
    assert decoded == event
    assert decoded.to_json() == event.to_json()
    assert decoded.extensions == {}
    with pytest.raises(FrozenInstanceError):
        decoded.type = "other"  # type: ignore[misc]
    with_extension = Event.create("orders.created", {}, extensions={"tenant": "t1"})
    assert Event.from_wire(with_extension.to_json()).extensions == {"tenant": "t1"}


def test_type_names_are_case_sensitive() -> None:
    upper = Event.create("Order.Created")
    lower = Event.create("order.created")
    assert upper.type == "Order.Created"  # kept as written, never folded
    assert Event.from_json(upper.to_json()).type == "Order.Created"
    assert Event.from_wire(upper.to_json()).type == "Order.Created"
    assert upper.type != lower.type


def test_a_hostile_type_on_the_wire_is_refused_naming_the_rule() -> None:
    raw = Event.create("a.b").to_json().replace('"type":"a.b"', '"type":"a{b}"')
    with pytest.raises(InvalidEvent) as info:
        Event.from_wire(raw)
    assert (info.value.field, info.value.rule) == ("type", TYPE_RULE)


def test_every_field_is_a_slot_and_every_path_sets_each_one() -> None:
    """The slot setters used on the hot path are derived from the dataclass fields; a
    field added, removed or reordered without the fast builder following fails here."""
    names = tuple(item.name for item in fields(Event))
    assert names == event_module._FIELDS
    assert tuple(Event.__slots__) == names
    assert set(names) - {"extensions"} == event_module._WIRE_KEYS
    # A distinct value in every field: a swapped setter would put one in the wrong slot.
    built = Event.create(
        "a.b", {"k": 1}, source="src", id="id-1",
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), subject="subj",
        correlationid="corr", causationid="cause", traceparent="trace",
        extensions={"tenant": "t"},
    )
    expected = Event(
        type="a.b", source="src", id="id-1", time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        data={"k": 1}, subject="subj", datacontenttype="application/json",
        specversion="1.0", correlationid="corr", causationid="cause", traceparent="trace",
        extensions={"tenant": "t"},
    )
    for name in names:
        assert getattr(built, name) == getattr(expected, name), name
    # Every field but the extension mapping goes over the wire and comes back (the fast
    # path included), so a new field cannot be silently dropped.
    plain = Event(**{item.name: getattr(expected, item.name) for item in fields(Event)
                     if item.name != "extensions"})
    wire = json.loads(plain.to_json())
    assert set(wire) == set(names) - {"extensions"}
    for decoded in (Event.from_json(plain.to_json()), Event.from_wire(plain.to_json())):
        for name in names:
            assert getattr(decoded, name) == getattr(plain, name), name
