"""The MassTransit bridge against the real RabbitMQ (127.0.0.1:5672) and a private Redis.

A strict MassTransit peer (:func:`tests.integration.rabbitmq.read_as_masstransit`) reads
``direct-message-sent-queue`` bound as MassTransit binds it; .NET-style envelopes are
published to the HostingProvisioning exchanges as MassTransit publishes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from mozaiks_bus import Bus, Event, load_settings
from mozaiks_bus.amqp import bridge_report
from mozaiks_bus.amqp.bridge import MassTransitBridge
from mozaiks_bus.catalog import DIRECT_MESSAGE_SENT_QUEUE, HOSTING_PROVISIONING_REQUEST_QUEUE
from mozaiks_bus.connection import create_sync_client
from mozaiks_bus.settings import BusSettings
from tests.integration import rabbitmq
from tests.support import FAST, clean_env, make_bus, wait_for
from tests.unit.server_support import TOKENS, make_settings, serve_app

pytestmark = pytest.mark.integration

DIRECT_URN = "urn:message:EventBus.Messages.Events:DirectMessageSentEvent"
DIRECT_EXCHANGE = "EventBus.Messages.Events:DirectMessageSentEvent"
REQUESTED_EXCHANGE = "EventBus.Messages.Events:HostingProvisioningRequestedEvent"
REQUESTED_URN = "urn:message:" + REQUESTED_EXCHANGE
DIRECT_STRINGS = ("appId", "conversationId", "messageId", "senderUserId", "senderName",
                  "recipientUserId", "contentPreview")


@pytest.fixture
def vhost() -> Iterator[str]:
    rabbitmq.require_rabbitmq()
    name = rabbitmq.make_vhost()
    yield name
    rabbitmq.drop_vhost(name)


@pytest.fixture
def settings(redis_url: str, key_prefix: str, vhost: str) -> BusSettings:
    return load_settings(broker_url=redis_url, prefix=key_prefix,
                         amqp_url=rabbitmq.amqp_url(vhost), **FAST)


@pytest.fixture
async def bridge(settings: BusSettings) -> AsyncIterator[MassTransitBridge]:
    bridge = MassTransitBridge(settings, report_interval_s=0.2)
    await bridge.start()
    await wait_for(lambda: bridge.link.connected, 20, "the bridge to connect")
    yield bridge
    await asyncio.wait_for(bridge.stop(), 30)


@pytest.fixture
async def channel(vhost: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(rabbitmq.amqp_url(vhost))
    async with connection:
        yield await connection.channel()


async def masstransit_endpoint(channel: AbstractChannel, queue_name: str,
                               message_exchange: str) -> aio_pika.abc.AbstractQueue:
    """Declare a receive endpoint exactly as MassTransit's ``ReceiveEndpoint`` does."""
    fanout = aio_pika.ExchangeType.FANOUT
    endpoint = await channel.declare_exchange(queue_name, fanout, durable=True)
    queue = await channel.declare_queue(queue_name, durable=True)
    await queue.bind(endpoint)
    message = await channel.declare_exchange(message_exchange, fanout, durable=True)
    await endpoint.bind(message)
    return queue


async def drain(queue: aio_pika.abc.AbstractQueue, expected: int, timeout: float,
                settle_s: float = 0.5) -> list[AbstractIncomingMessage]:
    """Every message the queue delivers until ``expected`` came and ``settle_s`` passed
    with nothing more (so duplicates would be seen too)."""
    got: list[AbstractIncomingMessage] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        message = await queue.get(fail=False, no_ack=True)
        if message is None:
            if len(got) >= expected:
                await asyncio.sleep(settle_s)
                if (extra := await queue.get(fail=False, no_ack=True)) is None:
                    return got
                got.append(extra)
                continue
            await asyncio.sleep(0.05)
            continue
        got.append(message)
    raise AssertionError(f"{len(got)} of {expected} messages within {timeout}s")


def properties(message: AbstractIncomingMessage) -> dict[str, Any]:
    return {"content_type": message.content_type, "delivery_mode": message.delivery_mode,
            "message_id": message.message_id}


def direct_message(n: int) -> dict[str, Any]:
    return {"appId": "app-001", "conversationId": f"conv-{n}", "messageId": f"msg-{n}",
            "senderUserId": "user-a", "senderName": "Alice", "recipientUserId": "user-b",
            "contentPreview": f"preview {n} - ünïcode"}


async def test_every_direct_message_reaches_the_masstransit_queue_once_with_its_fields(
    bridge: MassTransitBridge, settings: BusSettings, channel: AbstractChannel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Published through ``bus.publish`` and ``POST /v1/events`` before any .NET consumer
    ran: the bridge declared the endpoint, so the queue held them for it."""
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    sent: dict[str, dict[str, Any]] = {}
    async with make_bus(str(settings.broker_url), settings.prefix) as bus:
        for n in range(20):
            data = direct_message(n)
            if n % 2:  # half with a GUID of their own, in a form .NET would not write
                data["id"] = "{" + str(uuid.uuid4()).upper() + "}"
            event = await bus.publish("messaging.direct_message_sent", data)
            sent[event.id] = data
    api_settings = make_settings(str(settings.broker_url), prefix=settings.prefix,
                                 amqp_url=settings.amqp_url, **FAST)
    async with serve_app(api_settings) as served, httpx.AsyncClient(base_url=served.url) as http:
        batch = [{"id": str(uuid.uuid4()), "type": "messaging.direct_message_sent",
                  "source": "/chat", "data": direct_message(n)} for n in range(20, 40)]
        answer = await http.post("/v1/events", json=batch,
                                 headers={"Authorization": f"Bearer {TOKENS['TEST_TOKEN_ALL']}"})
        assert answer.status_code == 202, answer.text
        sent.update({item["id"]: item["data"] for item in batch})
    queue = await masstransit_endpoint(channel, DIRECT_MESSAGE_SENT_QUEUE, DIRECT_EXCHANGE)
    delivered = await drain(queue, len(sent), timeout=30)
    messages = [rabbitmq.read_as_masstransit(m.body, properties(m), DIRECT_URN, DIRECT_STRINGS)
                for m in delivered]
    by_message_id = {m["messageId"]: m for m in messages}
    assert len(messages) == len(by_message_id) == 40, "each once"
    for event_id, data in sent.items():
        received = by_message_id[data["messageId"]]
        for name in DIRECT_STRINGS:
            assert received[name] == data[name]
        if "id" in data:
            assert received["id"] == str(uuid.UUID(data["id"].strip("{}")))
        else:  # filled from the event id, the same on every attempt
            assert received["id"] == str(uuid.UUID(event_id))
    envelope_ids = {m.message_id for m in delivered}
    assert envelope_ids >= {str(uuid.UUID(i)) for i in sent if _is_uuid(i)}
    await wait_for(lambda: bridge.counters["published"] >= 40, 5, "the counter")
    with create_sync_client(str(settings.broker_url)) as client:
        await asyncio.sleep(0.5)  # one report interval
        report = bridge_report(client, settings)
    [instance] = report["instances"]
    assert instance["connected"]
    assert instance["published"] == 40
    [outbound] = [o for o in report["outbound"] if o["type"] == "messaging.direct_message_sent"]
    assert outbound["lag"] == 0
    assert outbound["pending"] == 0
    assert outbound["dead_letters"] == 0


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def dotnet_envelope(inner: dict[str, Any], urn: str,
                    overrides: dict[str, Any] | None = None) -> bytes:
    """An envelope as MassTransit 8 writes it (indented, every field, 7-digit UTC)."""
    message_id = str(uuid.uuid4())
    envelope = {
        "messageId": message_id, "requestId": None, "correlationId": None,
        "conversationId": message_id, "initiatorId": None,
        "sourceAddress": "rabbitmq://localhost/HOSTING01_Hosting_bus_abc?temporary=true",
        "destinationAddress": "rabbitmq://localhost/" + urn.removeprefix("urn:message:"),
        "responseAddress": None, "faultAddress": None,
        "messageType": [urn, "urn:message:EventBus.Messages.Events:BaseEvents"],
        "message": inner, "expirationTime": None, "sentTime": "2026-12-03T09:15:30.1234567Z",
        "headers": {}, "host": {"machineName": "HOSTING01", "processName": "Hosting.API",
                                "processId": 4242, "assembly": "Hosting.API",
                                "assemblyVersion": "1.0.0.0", "frameworkVersion": "8.0.11",
                                "massTransitVersion": "8.1.3.0",
                                "operatingSystemVersion": "Unix 6.1.0"},
        **(overrides or {}),
    }
    return json.dumps(envelope, indent=2).encode()


async def publish_dotnet(channel: AbstractChannel, exchange_name: str, body: bytes) -> str:
    exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.FANOUT,
                                              durable=True)
    try:
        message_id = json.loads(body).get("messageId") or str(uuid.uuid4())
    except (ValueError, RecursionError):  # the malformed and the too deep cases
        message_id = str(uuid.uuid4())
    await exchange.publish(aio_pika.Message(
        body, content_type=rabbitmq.CONTENT_TYPE, message_id=message_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT, headers={"publishId": 1}),
        routing_key="")
    return str(message_id)


def requested(app_id: str = "app-7") -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "createdAt": "2026-12-03T09:15:30.1234567Z",
            "appId": app_id, "ownerUserId": "owner-1", "appName": "Shop", "jobType": "ProvisionAll",
            "provider": None, "payload": {"Region": "eu-west", "MaxSpend": "12.50"}}


async def test_a_dotnet_event_reaches_a_bus_consumer_and_is_not_echoed_back(
    bridge: MassTransitBridge, settings: BusSettings, channel: AbstractChannel,
) -> None:
    hosting_queue = await masstransit_endpoint(channel, HOSTING_PROVISIONING_REQUEST_QUEUE,
                                               REQUESTED_EXCHANGE)
    got: list[Event] = []
    consumer_bus = make_bus(str(settings.broker_url), settings.prefix)

    @consumer_bus.consumer("hosting.provisioning_requested", group="hosting", start="0")
    async def provision(event: Event) -> None:
        got.append(event)

    async with consumer_bus:
        message = requested()
        message_id = await publish_dotnet(channel, REQUESTED_EXCHANGE,
                                          dotnet_envelope(message, REQUESTED_URN))
        await wait_for(lambda: got, 20, "the consumer to get the .NET event")
        await asyncio.sleep(1.0)  # time for an echo to show, if the bridge sent one
    [event] = got
    assert event.id == message_id
    assert event.data["appId"] == "app-7"
    assert event.data["ownerUserId"] == "owner-1"
    assert event.data["payload"] == {"Region": "eu-west", "MaxSpend": "12.50"}
    assert event.extensions == {"bridgedfrom": "amqp"}
    assert event.source.startswith("rabbitmq://localhost/HOSTING01")
    echoed = await drain(hosting_queue, 1, timeout=10)
    assert len(echoed) == 1, "the .NET consumer got its own event once, no echo from the bus"
    assert bridge.counters["received"] == 1
    assert bridge.counters["bridged_not_returned"] == 1


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json at all", "body: must be a JSON envelope"),
    (dotnet_envelope(requested(), REQUESTED_URN, {"message": None}),
     "message: must be a JSON object"),
    (dotnet_envelope(requested(), REQUESTED_URN, {"messageId": "not-a-guid"}),
     "messageId: must be a GUID"),
    (dotnet_envelope({**requested(), "appId": ""}, REQUESTED_URN), "data.appId"),
    (dotnet_envelope({**requested(), "payload": "DEEP"}, REQUESTED_URN).replace(
        b'"DEEP"', b"[" * 50_000 + b"]" * 50_000),
     "body: nests arrays/objects deeper than 64 levels"),
])
async def test_an_unreadable_message_lands_in_the_error_queue_with_its_reason(
    bridge: MassTransitBridge, channel: AbstractChannel, body: bytes, reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="mozaiks_bus.amqp")
    await publish_dotnet(channel, REQUESTED_EXCHANGE, body)
    error_queue = await channel.declare_queue(f"{bridge.queue}_error", durable=True)
    [moved] = await drain(error_queue, 1, timeout=20)
    assert moved.body == body, "moved unchanged"
    headers = moved.headers or {}
    assert headers["MT-Reason"] == "fault"
    assert reason in str(headers["MT-Fault-Message"])
    assert str(headers["MT-Fault-ExceptionType"]).startswith("MozaiksBus.")
    assert bridge.counters["rejected"] == 1
    assert bridge.counters["received"] == 0
    assert not [r for r in caplog.records if r.exc_info], "a reason, not a traceback"


async def test_a_dotnet_envelope_with_csharp_property_names_is_consumed(
    bridge: MassTransitBridge, settings: BusSettings, channel: AbstractChannel,
) -> None:
    got: list[Event] = []
    consumer_bus = make_bus(str(settings.broker_url), settings.prefix)

    @consumer_bus.consumer("hosting.provisioning_requested", group="hosting", start="0")
    async def provision(event: Event) -> None:
        got.append(event)

    pascal = {key[:1].upper() + key[1:]: value for key, value in requested("app-9").items()}
    async with consumer_bus:
        message_id = await publish_dotnet(channel, REQUESTED_EXCHANGE,
                                          dotnet_envelope(pascal, REQUESTED_URN))
        await wait_for(lambda: got, 20, "the consumer to get the PascalCase .NET event")
    [event] = got
    assert event.id == message_id
    assert (event.data["appId"], event.data["ownerUserId"]) == ("app-9", "owner-1")
    assert event.data["payload"] == {"Region": "eu-west", "MaxSpend": "12.50"}
    assert bridge.counters["rejected"] == 0


async def test_an_envelope_of_no_inbound_type_is_skipped_not_dropped(
    bridge: MassTransitBridge, channel: AbstractChannel,
) -> None:
    body = dotnet_envelope(requested(),
                           "urn:message:Other.Namespace:HostingProvisioningRequestedEvent")
    await publish_dotnet(channel, REQUESTED_EXCHANGE, body)
    skipped = await channel.declare_queue(f"{bridge.queue}_skipped", durable=True)
    [moved] = await drain(skipped, 1, timeout=20)
    assert (moved.headers or {})["MT-Reason"] == "dead-letter"
    assert bridge.counters["skipped"] == 1


@pytest.mark.slow
async def test_rabbitmq_stopped_for_10s_while_publishing_1000_events_loses_none(
    bridge: MassTransitBridge, settings: BusSettings, vhost: str,
) -> None:
    total = 1000
    sent: list[str] = []

    async def publish_all(bus: Bus) -> None:
        for n in range(total):
            await bus.publish("messaging.direct_message_sent", direct_message(n))
            sent.append(f"msg-{n}")
            await asyncio.sleep(0.012)  # ~12 s of publishing, the outage inside it

    async with make_bus(str(settings.broker_url), settings.prefix) as bus:
        publishing = asyncio.create_task(publish_all(bus))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(rabbitmq.rabbitmqctl, "stop_app")
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.to_thread(rabbitmq.rabbitmqctl, "start_app")
            await asyncio.to_thread(rabbitmq.rabbitmqctl, "await_startup")
        await asyncio.wait_for(publishing, 60)
    await wait_for(lambda: bridge.counters["published"] >= total, 90,
                   "the bridge to publish every event after the outage", every=0.2)
    connection = await aio_pika.connect(rabbitmq.amqp_url(vhost))
    async with connection:
        channel = await connection.channel()
        queue = await masstransit_endpoint(channel, DIRECT_MESSAGE_SENT_QUEUE, DIRECT_EXCHANGE)
        delivered = await drain(queue, total, timeout=60, settle_s=1.0)
    ids = [rabbitmq.read_as_masstransit(m.body, properties(m), DIRECT_URN, DIRECT_STRINGS)
           ["messageId"] for m in delivered]
    lost = set(sent) - set(ids)
    duplicated = len(ids) - len(set(ids))
    print(f"\nRabbitMQ down 10 s: sent {total}, delivered {len(set(ids))}, lost {len(lost)}, "
          f"duplicated {duplicated}, reconnects {bridge.link.reconnects}")
    assert not lost
    assert bridge.link.reconnects >= 1
    # at least once: only publishes in flight when the link broke may be sent twice
    assert duplicated <= settings.amqp_concurrency * bridge.link.reconnects


async def test_the_worker_command_runs_the_bridge_and_status_shows_it(
    settings: BusSettings, vhost: str, channel: AbstractChannel, tmp_path: Any,
) -> None:
    """``mozaiks-bus worker`` with ``MOZAIKS_AMQP_URL``: events reach the MassTransit queue,
    ``status --json`` shows the bridge connected with its lag, SIGTERM exits 0."""
    env = clean_env({"MOZAIKS_BROKER_URL": str(settings.broker_url),
                     "MOZAIKS_BUS_PREFIX": settings.prefix,
                     "MOZAIKS_AMQP_URL": rabbitmq.amqp_url(vhost)})
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(  # noqa: ASYNC220  # returns at once; waits below are bounded
        [sys.executable, "-m", "mozaiks_bus.cli", "worker", "-p", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def status() -> dict[str, Any]:
            done = subprocess.run([sys.executable, "-m", "mozaiks_bus.cli", "status", "--json"],
                                  env=env, capture_output=True, text=True, timeout=60, check=True)
            bridge: dict[str, Any] = json.loads(done.stdout)["bridge"]
            return bridge

        async def connected() -> bool:
            instances = (await asyncio.to_thread(status))["instances"]
            return bool(instances) and instances[0]["connected"]

        deadline = asyncio.get_running_loop().time() + 60
        while not await connected():
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert asyncio.get_running_loop().time() < deadline, "the bridge never connected"
            await asyncio.sleep(0.5)
        async with make_bus(str(settings.broker_url), settings.prefix) as bus:
            for n in range(5):
                await bus.publish("messaging.direct_message_sent", direct_message(n))
        queue = await masstransit_endpoint(channel, DIRECT_MESSAGE_SENT_QUEUE, DIRECT_EXCHANGE)
        delivered = await drain(queue, 5, timeout=30)
        assert sorted(json.loads(m.body)["message"]["messageId"] for m in delivered) == \
            [f"msg-{n}" for n in range(5)]
        await asyncio.sleep(2.5)  # a report interval
        report = await asyncio.to_thread(status)
        assert report["instances"][0]["published"] == 5
        [outbound] = [o for o in report["outbound"]
                      if o["type"] == "messaging.direct_message_sent"]
        assert outbound["lag"] == 0
        assert outbound["pending"] == 0
        table = await asyncio.to_thread(subprocess.run, [
            sys.executable, "-m", "mozaiks_bus.cli", "status"], env={**env, "COLUMNS": "200"},
            capture_output=True,
            text=True, timeout=60, check=True)
        assert "MassTransit bridge" in table.stdout
        assert "EventBus.Messages.Events:DirectMessageSentEvent" in table.stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(60)
        log.close()
    assert code == 0, (tmp_path / "worker.log").read_text()


async def test_the_trace_context_crosses_the_bridge_both_ways(
    bridge: MassTransitBridge, settings: BusSettings, channel: AbstractChannel,
) -> None:
    trace_id = uuid.uuid4().hex
    parent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    queue = await masstransit_endpoint(channel, DIRECT_MESSAGE_SENT_QUEUE, DIRECT_EXCHANGE)
    async with make_bus(str(settings.broker_url), settings.prefix) as bus:
        await bus.publish("messaging.direct_message_sent", direct_message(1), traceparent=parent)
    [message] = await drain(queue, 1, timeout=20)
    sent = str((message.headers or {})["traceparent"])
    assert sent.split("-")[1] == trace_id  # the same trace (a child span when traced)
    assert json.loads(message.body)["headers"]["traceparent"] == sent
    got: list[Event] = []
    consumer_bus = make_bus(str(settings.broker_url), settings.prefix)
    consumer_bus.consumer("hosting.provisioning_requested", group="hosting", start="0")(
        got.append)
    inbound_parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    async with consumer_bus:
        exchange = await channel.declare_exchange(REQUESTED_EXCHANGE,
                                                  aio_pika.ExchangeType.FANOUT, durable=True)
        await exchange.publish(aio_pika.Message(
            dotnet_envelope(requested(), REQUESTED_URN), content_type=rabbitmq.CONTENT_TYPE,
            headers={"traceparent": inbound_parent}), routing_key="")
        await wait_for(lambda: got, 20, "the .NET event")
    assert got[0].traceparent == inbound_parent


async def test_a_publish_rabbitmq_refuses_is_dead_lettered_then_replayed(
    settings: BusSettings, channel: AbstractChannel,
) -> None:
    """A queue that rejects publishes (``x-overflow: reject-publish``) makes RabbitMQ nack
    the bridge's publish: retried, dead-lettered after ``amqp_max_deliveries``, and
    delivered by ``dlq replay`` once the cause is gone. (A nack means some queue refused:
    others may hold a copy of each attempt, with the same ``messageId``; here the .NET
    endpoint is declared only after the refusals, so it sees the replay alone.)"""
    settings = settings.model_copy(update={"amqp_max_deliveries": 2,
                                           "amqp_declare_endpoints": False})
    bridge = MassTransitBridge(settings, report_interval_s=0.2)
    await bridge.start()
    try:
        await wait_for(lambda: bridge.link.connected, 20, "the bridge to connect")
        exchange = await channel.get_exchange(DIRECT_EXCHANGE)
        full = await channel.declare_queue("always-full", durable=True, arguments={
            "x-max-length": 0, "x-overflow": "reject-publish"})
        await full.bind(exchange)
        async with make_bus(str(settings.broker_url), settings.prefix) as bus:
            sent = await bus.publish("messaging.direct_message_sent", direct_message(7))

            async def dead() -> list[Any]:
                return await bus.streams.dead_letters(["messaging.direct_message_sent"])

            letters: list[Any] = []
            deadline = asyncio.get_running_loop().time() + 20
            while not letters:
                assert asyncio.get_running_loop().time() < deadline, "no dead letter"
                letters = await dead()
                await asyncio.sleep(0.1)
            [letter] = letters
            assert (letter.event["id"], letter.group, letter.deliveries) == \
                (sent.id, "bridge.amqp", 2)
            assert "RabbitMQ did not confirm" in letter.error
            await full.delete(if_unused=False, if_empty=False)
            queue = await masstransit_endpoint(channel, DIRECT_MESSAGE_SENT_QUEUE,
                                               DIRECT_EXCHANGE)
            await bus.streams.replay_dead_letter("messaging.direct_message_sent", letter.id)
            delivered = await drain(queue, 1, timeout=20)
    finally:
        await asyncio.wait_for(bridge.stop(), 30)
    ids = [json.loads(m.body)["messageId"] for m in delivered]
    assert ids.count(str(uuid.UUID(sent.id))) == 1, "delivered once, after the replay"


@pytest.mark.slow
async def test_a_bridge_started_while_rabbitmq_is_down_waits_and_then_delivers(
    settings: BusSettings, vhost: str, caplog: pytest.LogCaptureFixture,
) -> None:
    await asyncio.to_thread(rabbitmq.rabbitmqctl, "stop_app")
    bridge = MassTransitBridge(settings, report_interval_s=0.2)
    try:
        await bridge.start()  # returns: the RabbitMQ side waits in the background
        async with make_bus(str(settings.broker_url), settings.prefix) as bus:
            sent = [await bus.publish("messaging.direct_message_sent", direct_message(n))
                    for n in range(5)]
        await asyncio.sleep(2)
        assert not bridge.link.connected
        assert "waiting for RabbitMQ" in caplog.text
        assert bridge.link.last_error is not None
    finally:
        await asyncio.to_thread(rabbitmq.rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmq.rabbitmqctl, "await_startup")
    try:
        await wait_for(lambda: bridge.counters["published"] >= 5, 60,
                       "the events after RabbitMQ came up", every=0.2)
    finally:
        await asyncio.wait_for(bridge.stop(), 30)
    connection = await aio_pika.connect(rabbitmq.amqp_url(vhost))
    async with connection:
        channel = await connection.channel()
        queue = await masstransit_endpoint(channel, DIRECT_MESSAGE_SENT_QUEUE, DIRECT_EXCHANGE)
        delivered = await drain(queue, 5, timeout=30)
    assert {json.loads(m.body)["messageId"] for m in delivered} == \
        {str(uuid.UUID(event.id)) for event in sent}
