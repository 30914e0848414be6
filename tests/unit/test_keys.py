"""Keys: one prefix, hash tags that group what is scripted together, no user text in tags."""

from __future__ import annotations

import dataclasses
import re
from fnmatch import fnmatchcase

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from mozaiks_bus import keys as keys_module
from mozaiks_bus.errors import ConfigError, InvalidEvent
from mozaiks_bus.event import MAX_TYPE_LENGTH, TYPE_PATTERN
from mozaiks_bus.keys import MAX_ID_LENGTH, Keys

TAG_RE = re.compile(r"\{([^}]*)\}")


def slot(name: str) -> int:
    return int(key_slot(name.encode()))


def hash_tag(name: str) -> str | None:
    match = TAG_RE.search(name)
    return match.group(1) if match else None


def test_exported_names_are_sorted_and_exist() -> None:
    # ruff RUF022 order: CONSTANTS, then Classes, then functions
    assert keys_module.__all__ == sorted(
        keys_module.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n)
    )
    assert all(hasattr(keys_module, name) for name in keys_module.__all__)


def test_every_name_under_the_default_prefix() -> None:
    k = Keys()
    assert k.prefix == "mozaiks"
    assert k.stream("chat.run_complete") == "mozaiks:stream:{chat.run_complete}"
    assert k.dead_letter_stream("chat.run_complete") == "mozaiks:dlq:{chat.run_complete}"
    assert (
        k.processed_ids("billing", "chat.run_complete")
        == "mozaiks:processed:billing:{chat.run_complete}"
    )
    assert k.fanout_channel("settings_updated") == "mozaiks:fanout:settings_updated"
    assert k.fanout_pattern() == "mozaiks:fanout:*"
    assert k.ui_channel("chat-42") == "mozaiks:ui:{chat-42}"
    assert k.ui_history("chat-42") == "mozaiks:ui-history:{chat-42}"
    assert k.dedupe("0190a1b2-c3d4") == "mozaiks:dedupe:{0190a1b2-c3d4}"
    assert k.input_request("req_1") == "mozaiks:input:{req_1}"
    assert k.meta() == "mozaiks:meta"
    assert k.group("billing-api.v2") == "billing-api.v2"


def test_a_custom_prefix_moves_every_key() -> None:
    k = Keys("tenant_a-1")
    names = [
        k.stream("a.b"),
        k.dead_letter_stream("a.b"),
        k.processed_ids("g", "a.b"),
        k.fanout_channel("a.b"),
        k.fanout_pattern(),
        k.ui_channel("c"),
        k.ui_history("c"),
        k.dedupe("i"),
        k.input_request("r"),
        k.meta(),
    ]
    assert all(name.startswith("tenant_a-1:") for name in names)


@pytest.mark.parametrize("prefix", ["", "x" * 65, "a:b", "a{b}", "a b", "a*", "préfixe", None, 7])
def test_a_bad_prefix_is_a_config_error(prefix: object) -> None:
    with pytest.raises(ConfigError) as info:
        Keys(prefix)  # type: ignore[arg-type]
    assert info.value.field == "prefix"


def test_keys_is_frozen_and_hashable() -> None:
    k = Keys("p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        k.prefix = "q"  # type: ignore[misc]
    assert {k, Keys("p")} == {Keys("p")}


def test_a_type_stream_its_dead_letters_and_processed_ids_share_one_slot() -> None:
    k = Keys()
    for type_name in ("chat.run_complete", "notification.created", "x"):
        names = [
            k.stream(type_name),
            k.dead_letter_stream(type_name),
            k.processed_ids("billing", type_name),
            k.processed_ids("insights", type_name),
        ]
        assert {hash_tag(name) for name in names} == {type_name}
        assert len({slot(name) for name in names}) == 1


def test_streams_of_different_types_spread_over_slots() -> None:
    k = Keys()
    types = [f"type_{n}.event" for n in range(50)]
    assert len({slot(k.stream(t)) for t in types}) > 40


def test_a_chat_channel_and_history_share_one_slot_and_chats_spread() -> None:
    k = Keys()
    for chat_id in ("chat-1", "65f1c0ffee", "a{b}c", "user@example.com"):
        assert slot(k.ui_channel(chat_id)) == slot(k.ui_history(chat_id))
    assert len({slot(k.ui_channel(f"chat-{n}")) for n in range(50)}) > 40


def test_fanout_channels_carry_no_tag_and_match_the_pattern() -> None:
    k = Keys("p")
    channel = k.fanout_channel("plugin_settings_updated")
    assert hash_tag(channel) is None
    assert fnmatchcase(channel, k.fanout_pattern())
    assert not fnmatchcase(Keys("q").fanout_channel("a"), k.fanout_pattern())
    assert not fnmatchcase(k.ui_channel("c"), k.fanout_pattern())


type_names = st.from_regex(TYPE_PATTERN, fullmatch=True).filter(
    lambda name: len(name) <= MAX_TYPE_LENGTH)


def test_cloudevents_style_types_get_their_own_tagged_keys() -> None:
    k = Keys()
    assert k.stream("com.example.order-created") == "mozaiks:stream:{com.example.order-created}"
    assert k.stream("Order.Created") == "mozaiks:stream:{Order.Created}"
    assert k.stream("Order.Created") != k.stream("order.created")  # case-sensitive types
    assert k.dead_letter_stream("Order.Created:p3") == "mozaiks:dlq:{Order.Created:p3}"
    assert k.fanout_channel("Order.Created") == "mozaiks:fanout:Order.Created"
    # PSUBSCRIBE globs are case-sensitive like the library's pattern matching
    assert fnmatchcase(k.fanout_channel("Order.Created"), k.fanout_subscription("Order.*"))
    assert not fnmatchcase(k.fanout_channel("Order.Created"), k.fanout_subscription("order.*"))


@given(type_names, type_names)
def test_every_valid_type_gives_one_tag_and_distinct_keys(first: str, second: str) -> None:
    k = Keys()
    stream = k.stream(first)
    assert hash_tag(stream) == first  # the whole type is the tag: no brace in it
    assert stream.count("{") == stream.count("}") == 1
    assert slot(k.dead_letter_stream(first)) == slot(stream)
    assert slot(k.processed_ids("g", first)) == slot(stream)
    channel = k.fanout_channel(first)
    assert k.fanout_type(channel.encode()) == first
    assert not re.search(r"[*?\[\]\\\s:]", first)  # nothing a glob or a partition reads
    assert (k.stream(first) == k.stream(second)) == (first == second)
    assert (channel == k.fanout_channel(second)) == (first == second)


@pytest.mark.parametrize("type_name", ["chat run", "a{b}", "a}b", "chat.*", "", "a..b",
                                       "a:b", "-a", "a" * 129, None])
def test_type_names_are_validated(type_name: object) -> None:
    k = Keys()
    for method in (k.stream, k.dead_letter_stream, k.fanout_channel):
        with pytest.raises(InvalidEvent) as info:
            method(type_name)  # type: ignore[arg-type]
        assert info.value.field == "type"
    with pytest.raises(InvalidEvent):
        k.processed_ids("g", type_name)  # type: ignore[arg-type]


@pytest.mark.parametrize("group", ["", "a b", "a{b}", "a:b", "g" * 65, "é", None])
def test_group_names_are_validated(group: object) -> None:
    with pytest.raises(ConfigError) as info:
        Keys.group(group)  # type: ignore[arg-type]
    assert info.value.field == "group"
    with pytest.raises(ConfigError):
        Keys().processed_ids(group, "a.b")  # type: ignore[arg-type]


def test_user_ids_are_escaped_out_of_the_hash_tag() -> None:
    k = Keys()
    name = k.ui_channel("a{b}:c/*?[é")
    assert name == "mozaiks:ui:{a%7Bb%7D%3Ac%2F%2A%3F%5B%C3%A9}"
    assert name.count("{") == 1
    assert name.count("}") == 1


@pytest.mark.parametrize(
    ("field", "bad"),
    [("chat_id", ""), ("chat_id", "x" * (MAX_ID_LENGTH + 1)), ("chat_id", None),
     ("chat_id", "\ud800"), ("id", ""), ("request_id", 42)],
)  # fmt: skip
def test_bad_ids_are_invalid_events(field: str, bad: object) -> None:
    k = Keys()
    method = {"chat_id": k.ui_channel, "id": k.dedupe, "request_id": k.input_request}[field]
    with pytest.raises(InvalidEvent) as info:
        method(bad)  # type: ignore[arg-type]
    assert info.value.field == field


def test_an_id_of_the_maximum_length_is_accepted() -> None:
    assert Keys().dedupe("i" * MAX_ID_LENGTH).endswith("i" * MAX_ID_LENGTH + "}")


ids = st.text(min_size=1, max_size=MAX_ID_LENGTH).filter(
    lambda s: not any(0xD800 <= ord(ch) <= 0xDFFF for ch in s)
)


@given(ids, ids)
def test_escaping_is_safe_and_injective(first: str, second: str) -> None:
    k = Keys()
    for method in (k.ui_channel, k.ui_history, k.dedupe, k.input_request):
        name = method(first)
        tag = hash_tag(name)
        assert tag is not None
        assert name.endswith("{" + tag + "}")
        assert re.fullmatch(r"[A-Za-z0-9_.~%-]+", tag)
        assert (method(first) == method(second)) == (first == second)
