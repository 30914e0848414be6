"""Declared interest without a server: the publisher's view, the declarations on
fakeredis, the rule that refuses a consumer no event could reach, and the memory://
transport following a declaration made after its first publish."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from mozaiks_bus import Bus, ConfigError, Event, load_settings
from mozaiks_bus.interest import Interest, declarations, declare, forget
from mozaiks_bus.keys import Keys
from mozaiks_bus.routing import RoutingTable

KEYS = Keys("t")


def test_the_publisher_view_matches_declared_patterns_and_follows_the_version() -> None:
    interest = Interest()
    assert interest.moved(None)  # nothing read yet: the first batch reads the hash
    interest.update(None, [])
    assert not interest.moved(None)
    assert not interest.wants("order.created")
    interest.update(b"2", [b"order.*\tshipping", b"Billing.Invoice-Paid\tledger",
                           b"not a pattern\tx"])
    assert interest.moved(b"3")
    assert not interest.moved(b"2")
    assert interest.wants("order.created")
    assert interest.wants("Billing.Invoice-Paid")
    assert not interest.wants("billing.invoice-paid")  # types are case-sensitive
    assert interest.patterns == ["Billing.Invoice-Paid", "order.*"]


async def test_declarations_are_listed_and_forgotten_per_group() -> None:
    client = fakeredis.FakeAsyncRedis()
    await declare(client, KEYS, "order.*", "shipping")
    await declare(client, KEYS, "order.created", "billing")
    await declare(client, KEYS, "order.*", "shipping")  # a restart: still one
    found = await declarations(client, KEYS)
    assert [(d.pattern, d.group) for d in found] == [("order.*", "shipping"),
                                                     ("order.created", "billing")]
    version = await client.get(KEYS.interest_version())
    assert await forget(client, KEYS, "shipping") == 1
    assert await client.get(KEYS.interest_version()) != version  # publishers re-read
    assert [d.group for d in await declarations(client, KEYS)] == ["billing"]
    assert await forget(client, KEYS, "nobody") == 0
    await client.aclose()


@pytest.mark.parametrize(("pattern", "rule"), [
    ("api_error", "api_error"), ("module_metric", "module_metric"),
    ("order.created", None), ("chat.*", None), ("order.*", None),
])
def test_a_local_only_rule_is_found_for_the_patterns_it_keeps(pattern: str,
                                                              rule: str | None) -> None:
    assert RoutingTable().local_only_rule(pattern) == rule


def test_a_configured_local_rule_refuses_a_pattern_consumer_of_the_same_text() -> None:
    table = RoutingTable([("audit.*", [])])  # no scope but local
    assert table.local_only_rule("audit.*") == "audit.*"
    assert table.local_only_rule("audit.login") == "audit.*"


async def test_a_consumer_kept_local_by_config_is_refused_naming_the_rule(
    memory_url: str
) -> None:
    bus = Bus(config=load_settings(broker_url=memory_url, prefix="t",
                                   routes=[{"pattern": "audit.*", "scopes": ["local"]}], env={}))
    with pytest.raises(ConfigError, match=r"routes.*'audit\.\*' \(local only\)"):
        bus.consumer("audit.login", group="siem")(lambda event: None)
    await bus.stop()


async def test_memory_publisher_stores_a_type_once_a_consumer_declared_it(
    memory_url: str
) -> None:
    settings = load_settings(broker_url=memory_url, prefix="t",
                             consumer_claim_interval_s=0.2, env={})
    got: list[str] = []
    async with Bus(config=settings) as publisher:
        await publisher.publish("order.created", {"n": 0})
        consumer = Bus(config=settings)

        @consumer.consumer("order.*", group="shipping")
        async def handle(event: Event) -> None:
            got.append(event.id)

        async with consumer:
            sent = {(await publisher.publish("order.created", {"n": n})).id for n in range(20)}
            for _ in range(200):
                if sent <= set(got):
                    break
                await asyncio.sleep(0.05)
    assert sent <= set(got)
