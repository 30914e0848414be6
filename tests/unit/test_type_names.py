"""CloudEvents-style type names (``com.example.order-created``, ``Order.Created``) over
every entry point, and hostile ones refused at each, naming the rule.

The entry points: the library (publish, emit, subscribe), ``POST /v1/events`` (structured,
binary and batched), the catalog, and the settings that hold types or patterns (routes,
sinks, API tokens, stream partitions, MassTransit contracts). The CLI and a durable round
trip on a real redis-server are in ``tests/integration/test_type_names.py``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
from pydantic import BaseModel

from mozaiks_bus import Bus, ConfigError, Event, InvalidEvent, load_settings
from mozaiks_bus.amqp import contracts_for, from_envelope, to_envelope
from mozaiks_bus.amqp.envelope import host_info
from mozaiks_bus.catalog import Catalog
from mozaiks_bus.event import TYPE_PATTERN, TYPE_RULE
from mozaiks_bus.keys import Keys
from mozaiks_bus.patterns import PATTERN_REGEX, PATTERN_RULE
from tests.unit.server_support import TOKENS, make_settings, serve_app

PUB = TOKENS["TEST_TOKEN_PUB"]
GOOD = ("com.example.order-created", "Order.Created")
# each must be refused naming the type rule
HOSTILE = ("a b", "x*", "x{y}", "x:y", "-x", "x..y", "x" * 129, "x\ny", "x.", "\u00e9t\u00e9")
ROUTES = [{"pattern": "com.example.*", "scopes": ["durable"]},
          {"pattern": "Order.*", "scopes": ["durable"]}]


# -- the library -----------------------------------------------------------------------


async def test_publish_emit_and_subscribe_take_cloudevents_types_case_sensitively() -> None:
    bus = Bus()
    seen: dict[str, list[str]] = {"com.example.*": [], "Order.*": [], "order.*": [],
                                  "Order.Created": []}
    for pattern, got in seen.items():
        bus.subscribe(pattern, lambda event, got=got: got.append(event.type))
    async with bus:
        for name in GOOD:
            assert (await bus.publish(name, {"n": 1})).type == name
            assert bus.emit(name, {"n": 2}).type == name
        await bus.publish("order.created", {})
    assert seen["com.example.*"] == ["com.example.order-created"] * 2
    assert seen["Order.*"] == ["Order.Created"] * 2
    assert seen["Order.Created"] == ["Order.Created"] * 2
    assert seen["order.*"] == ["order.created"]  # not Order.Created: case-sensitive


async def test_a_durable_publish_gets_a_stream_of_its_own_per_type(
    memory_url: str, sync_redis: redis.Redis
) -> None:
    bus = Bus(config=load_settings(broker_url=memory_url, env={}, routes=ROUTES))
    async with bus:
        for name in (*GOOD, "order.created"):
            await bus.publish(name, {"n": 1}, durable=True)
    keys = Keys()
    for name in (*GOOD, "order.created"):
        assert sync_redis.xlen(keys.stream(name)) == 1, name
    stored = sync_redis.xrange(keys.stream("Order.Created"))
    assert Event.from_json(stored[0][1][b"e"]).type == "Order.Created"


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_types_are_refused_by_publish_and_emit_naming_the_rule(name: str) -> None:
    bus = Bus()
    async with bus:
        with pytest.raises(InvalidEvent) as published:
            await bus.publish(name, {})
        with pytest.raises(InvalidEvent) as emitted:
            bus.emit(name, {})
    for error in (published.value, emitted.value):
        assert (error.field, error.rule) == ("type", TYPE_RULE)
        assert TYPE_PATTERN in str(error)


@pytest.mark.parametrize("pattern", ["a b", "x{y}", "x:y", "-x", "x..y", "*x", "x" * 129])
def test_hostile_subscription_patterns_are_refused_naming_the_rule(pattern: str) -> None:
    bus = Bus()
    with pytest.raises(InvalidEvent) as info:
        bus.subscribe(pattern, print)
    assert (info.value.field, info.value.rule) == ("pattern", PATTERN_RULE)
    assert PATTERN_REGEX in str(info.value)


def test_the_catalog_registers_cloudevents_types_and_refuses_hostile_ones() -> None:
    class Order(BaseModel):
        order_id: str

    catalog = Catalog()
    for name in GOOD:
        catalog.register(name, Order)
    assert catalog.types() == sorted(GOOD)
    assert "order.created" not in catalog  # case-sensitive lookup
    with pytest.raises(InvalidEvent, match="order_id"):
        catalog.validate("Order.Created", {})
    schema = catalog.json_schema()
    assert sorted(schema["x-mozaiks-events"]) == sorted(GOOD)
    with pytest.raises(ConfigError) as info:
        catalog.register("x:y", Order)
    assert info.value.field == "catalog"
    assert TYPE_RULE in info.value.reason


# -- settings --------------------------------------------------------------------------


def test_settings_take_cloudevents_types_and_patterns_everywhere() -> None:
    settings = load_settings(
        env={}, routes=ROUTES,
        sinks=[{"name": "orders", "url": "https://h.example/x",
                "patterns": ["com.example.order-*", "Order.*"]}],
        stream_partitions={"Order.Created": 4},
        api_tokens=[{"name": "t", "token_env": "TEST_TOKEN_PUB", "scopes": ["publish"],
                     "publish_patterns": ["com.example.*", "Order.Created"]}],
        amqp_contracts=[{"type": "com.example.order-created",
                         "message_type": "Example.Contracts:OrderCreated"}],
    )
    assert [rule.pattern for rule in settings.routes] == ["com.example.*", "Order.*"]
    assert settings.sinks[0].patterns == ["com.example.order-*", "Order.*"]
    assert settings.stream_partitions == {"Order.Created": 4}
    assert settings.api_tokens[0].publish_patterns == ["com.example.*", "Order.Created"]
    assert settings.amqp_contracts[0].type == "com.example.order-created"


@pytest.mark.parametrize(("values", "field", "rule"), [
    ({"routes": [{"pattern": "x{y}", "scopes": ["durable"]}]}, "routes.0.pattern",
     PATTERN_RULE),
    ({"sinks": [{"name": "s", "url": "https://h.example/x", "patterns": ["x:y"]}]},
     "sinks.0.patterns", PATTERN_RULE),
    ({"api_tokens": [{"name": "t", "token_env": "TEST_TOKEN_PUB", "scopes": ["publish"],
                      "publish_patterns": ["a b"]}]}, "api_tokens.0.publish_patterns",
     PATTERN_RULE),
    ({"stream_partitions": {"x*": 2}}, "stream_partitions", TYPE_RULE),
    ({"amqp_contracts": [{"type": "-x", "message_type": "A.B:C"}]}, "amqp_contracts.0.type",
     TYPE_RULE),
])
def test_hostile_names_in_settings_name_the_field_and_the_rule(
    values: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, **values)
    assert info.value.field == field
    assert rule in info.value.reason


def test_the_masstransit_bridge_carries_a_cloudevents_type_both_ways() -> None:
    settings = load_settings(env={}, amqp_contracts=[
        {"type": "com.example.order-created", "message_type": "Example.Contracts:OrderCreated"},
    ])
    [contract] = [c for c in contracts_for(settings) if c.type == "com.example.order-created"]
    assert contract.urn == "urn:message:Example.Contracts:OrderCreated"
    event = Event.create("com.example.order-created", {"order_id": "o1"})
    out = to_envelope(event, contract, address="rabbitmq://localhost/", origin="t",
                      host=host_info())
    assert json.loads(out.body)["message"] == {"orderId": "o1"}
    inbound = from_envelope(out.body, [contract])
    assert inbound.contract.type == "com.example.order-created"
    assert inbound.data == {"order_id": "o1"}


def test_bridge_contracts_compare_bus_types_case_sensitively() -> None:
    settings = load_settings(env={}, amqp_contracts=[
        {"type": "Order.Created", "message_type": "Shop:OrderCreated"},
        {"type": "order.created", "message_type": "Legacy:OrderCreated"},
    ])
    types = {c.type: c.message_type for c in contracts_for(settings)}
    assert (types["Order.Created"], types["order.created"]) == (
        "Shop:OrderCreated", "Legacy:OrderCreated")
    with pytest.raises(ConfigError, match="already configured"):
        load_settings(env={}, amqp_contracts=[
            {"type": "Order.Created", "message_type": "Shop:OrderCreated"},
            {"type": "Order.Created", "message_type": "Shop:OrderPlaced"},
        ])


# -- POST /v1/events -------------------------------------------------------------------


@pytest.fixture
async def http(memory_url: str, api_tokens: None) -> AsyncIterator[httpx.AsyncClient]:
    tokens = [{"name": "orders", "token_env": "TEST_TOKEN_PUB", "scopes": ["publish"],
               "publish_patterns": ["com.example.*", "Order.*", "a.b"]}]
    settings = make_settings(memory_url, routes=ROUTES, api_tokens=tokens)
    async with serve_app(settings) as served, \
            httpx.AsyncClient(base_url=served.url, timeout=10,
                              headers={"Authorization": f"Bearer {PUB}"}) as client:
        yield client


def event_json(event_id: str, type_name: str) -> dict[str, Any]:
    return {"specversion": "1.0", "id": event_id, "type": type_name, "source": "/t",
            "data": {"n": 1}}


def stored_ids(client: redis.Redis, type_name: str) -> list[str]:
    entries = client.xrange(Keys().stream(type_name))
    return [Event.from_json(fields[b"e"]).id for _, fields in entries]


async def test_http_takes_cloudevents_types_in_every_mode(
    http: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    structured = await http.post(
        "/v1/events", content=json.dumps(event_json("s1", GOOD[0])),
        headers={"content-type": "application/cloudevents+json"})
    assert structured.status_code == 202, structured.text
    binary = await http.post("/v1/events", json={"n": 1}, headers={
        "ce-specversion": "1.0", "ce-id": "b1", "ce-source": "/t", "ce-type": GOOD[1]})
    assert binary.status_code == 202, binary.text
    batch = await http.post(
        "/v1/events", content=json.dumps([event_json("m1", GOOD[0]), event_json("m2", GOOD[1])]),
        headers={"content-type": "application/cloudevents-batch+json"})
    assert batch.status_code == 202, batch.text
    assert batch.json() == {"accepted": ["m1", "m2"], "duplicates": []}
    assert stored_ids(sync_redis, GOOD[0]) == ["s1", "m1"]
    assert stored_ids(sync_redis, GOOD[1]) == ["b1", "m2"]


async def test_a_token_pattern_is_case_sensitive(http: httpx.AsyncClient) -> None:
    answer = await http.post("/v1/events", json=event_json("c1", "order.created"))
    assert answer.status_code == 403, answer.text  # the token has Order.*, not order.*
    assert answer.json()["field"] == "type"


@pytest.mark.parametrize("name", HOSTILE)
async def test_http_refuses_hostile_types_with_422_naming_the_field_and_rule(
    http: httpx.AsyncClient, name: str
) -> None:
    one = await http.post("/v1/events", json=event_json("h1", name))
    batch = await http.post("/v1/events", json=[event_json("h2", "a.b"), event_json("h3", name)])
    for answer, field in ((one, "type"), (batch, "[1].type")):
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert (body["field"], body["rule"]) == (field, TYPE_RULE)
    if "\n" in name or not name.isascii():
        return  # not an HTTP header value; binary mode percent-encodes it (below)
    binary = await http.post("/v1/events", json={}, headers={
        "ce-specversion": "1.0", "ce-id": "h4", "ce-source": "/t", "ce-type": name})
    assert binary.status_code == 422, binary.text
    assert (binary.json()["field"], binary.json()["rule"]) == ("ce-type", TYPE_RULE)


async def test_binary_mode_percent_decodes_the_type_before_checking_it(
    http: httpx.AsyncClient
) -> None:
    for encoded in ("x%0Ay", "x%3Ay", "x%7By%7D", "x%20y"):
        answer = await http.post("/v1/events", json={}, headers={
            "ce-specversion": "1.0", "ce-id": "p1", "ce-source": "/t", "ce-type": encoded})
        assert answer.status_code == 422, (encoded, answer.text)
        assert (answer.json()["field"], answer.json()["rule"]) == ("ce-type", TYPE_RULE)


async def test_the_openapi_schema_states_the_library_rule(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]
    event = body["application/cloudevents+json"]["schema"]
    assert event["properties"]["type"]["pattern"] == TYPE_PATTERN
