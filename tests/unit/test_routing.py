"""Patterns and the routing table."""

from __future__ import annotations

import pytest

from mozaiks_bus import ConfigError, InvalidEvent
from mozaiks_bus.patterns import PATTERN_RULE, Pattern, validate_pattern
from mozaiks_bus.routing import RoutingTable, Scope

L, F, D, U = Scope.LOCAL, Scope.FANOUT, Scope.DURABLE, Scope.UI


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("chat.*", "chat.run_complete", True),
        ("chat.*", "chat.orchestration.run_started", True),
        ("chat.*", "chatter.x", False),
        ("chat.*", "chat", False),
        ("subscription_*", "subscription_updated", True),
        ("subscription_*", "subscriptions", False),
        ("entitlement.limit_*", "entitlement.limit_reached", True),
        ("*", "anything.at.all", True),
        ("settings_updated", "settings_updated", True),
        ("settings_updated", "settings_updated2", False),
        ("com.example.*", "com.example.order-created", True),
        ("com.*-created", "com.example.order-created", True),
        ("Order.*", "Order.Created", True),
        # case-sensitive, as CloudEvents types are
        ("order.*", "Order.Created", False),
        ("Order.*", "order.created", False),
        ("Order.Created", "order.created", False),
        ("order-*", "order_created", False),
    ],
)
def test_pattern_matching(pattern: str, name: str, expected: bool) -> None:
    assert Pattern(pattern).matches(name) is expected


@pytest.mark.parametrize("bad", ["*.x", "-x.*", "chat..*", "a b", "a.{x}", "x:*", "x.*\t",
                                 "x?", "x[ab]", "x" * 129, "", "**."])
def test_bad_patterns_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate_pattern(bad)
    assert info.value.field == "pattern"
    assert info.value.rule == PATTERN_RULE


@pytest.mark.parametrize("good", ["Chat.*", "com.example.order-*", "Order.Created", "x-*.y_*",
                                  "x" * 128])
def test_cloudevents_style_patterns_are_accepted(good: str) -> None:
    assert validate_pattern(good) == good


def test_a_route_on_a_cloudevents_type_applies_to_it_only_in_its_case() -> None:
    table = RoutingTable([("com.example.order-*", ["durable"]), ("Order.*", ["durable"])])
    assert table.route("com.example.order-created").scopes == L | D
    assert table.route("Order.Created").scopes == L | D
    assert table.route("order.created").scopes == L | F  # another type: the default


@pytest.mark.parametrize(
    ("name", "scopes"),
    [
        ("settings_updated", L | F),
        ("subscription_canceled", L | F),
        ("theme_changed", L | F),
        ("module_status", L | F),
        ("module_metric", L),
        ("api_error", L),
        ("chat.usage_summary", L | D | U),
        ("chat.run_complete", L | D | U),
        ("chat.text", L | U),
        ("chat.structured_output_ready", L),
        ("notification.created", L | D),
        ("plugin.execution.complete", L | D),
        ("messaging.direct_message_sent", L | D),
        ("entitlement.consumed", L | D),
        ("some.unknown_type", L | F),
    ],
)
def test_default_routes_follow_the_design(name: str, scopes: Scope) -> None:
    assert RoutingTable().route(name).scopes == scopes


def test_configured_rules_win_over_defaults_and_always_include_local() -> None:
    table = RoutingTable([("settings_updated", ["durable"]), ("chat.*", Scope.FANOUT)])
    assert table.route("settings_updated").scopes == L | D
    assert table.route("chat.usage_summary").scopes == L | F
    assert table.route("theme_changed").scopes == L | F


def test_per_call_overrides_and_ui_needs_a_subject() -> None:
    table = RoutingTable()
    assert table.resolve("settings_updated", durable=True) == L | F | D
    assert table.resolve("settings_updated", fanout=False) == L
    assert table.resolve("chat.text") == L
    assert table.resolve("chat.text", subject="chat-1") == L | U
    assert table.resolve("chat.text", subject="chat-1", ui=False) == L


def test_without_defaults_unmatched_types_are_local_only() -> None:
    table = RoutingTable([("a.*", ["fanout"])], include_defaults=False)
    assert table.route("b.c").scopes == L
    assert table.route("a.b").rule == "a.*"


def test_bad_rules_raise_config_error_naming_the_rule() -> None:
    with pytest.raises(ConfigError) as info:
        RoutingTable([("ok", ["fanout"]), ("Bad Pattern", ["fanout"])])
    assert info.value.field == "routes.1.pattern"
    with pytest.raises(ConfigError, match="unknown scope 'everywhere'"):
        RoutingTable([("ok", ["everywhere"])])
