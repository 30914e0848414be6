"""MassTransit envelopes written and read without a broker: the wire rules, one by one."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from mozaiks_bus import ConfigError, Event, InvalidEvent, load_settings
from mozaiks_bus.amqp import (
    CONTENT_TYPE,
    EnvelopeError,
    UnknownMessageType,
    contracts_for,
    from_envelope,
    require_amqp,
    to_envelope,
)
from mozaiks_bus.amqp.envelope import camel_keys, guid_for, host_info, snake_keys

SETTINGS = load_settings(env={}, amqp_contracts=[
    {"type": "billing.invoice_paid", "message_type": "Billing.Contracts:InvoicePaidEvent",
     "direction": "both", "queue": "invoice-paid-queue"},
])
CONTRACTS = {c.type: c for c in contracts_for(SETTINGS)}
DIRECT = CONTRACTS["messaging.direct_message_sent"]
INVOICE = CONTRACTS["billing.invoice_paid"]
DATA = {"appId": "app-1", "conversationId": "c", "messageId": "m", "senderUserId": "a",
        "recipientUserId": "b"}


def write(event: Event, contract: Any = DIRECT) -> dict[str, Any]:
    out = to_envelope(event, contract, address="rabbitmq://localhost/", origin="mozaiks-bus.t",
                      host=host_info())
    parsed: dict[str, Any] = json.loads(out.body)
    assert out.message_id == parsed["messageId"]
    return parsed


def test_the_catalog_contracts_and_their_default_directions() -> None:
    assert DIRECT.urn == "urn:message:EventBus.Messages.Events:DirectMessageSentEvent"
    assert DIRECT.exchange == "EventBus.Messages.Events:DirectMessageSentEvent"
    assert (DIRECT.direction, DIRECT.queue) == ("outbound", "direct-message-sent-queue")
    requested = CONTRACTS["hosting.provisioning_requested"]
    assert requested.direction == "both"
    assert INVOICE.exchange == "Billing.Contracts:InvoicePaidEvent"
    assert INVOICE.camel_case


def test_an_outbound_envelope_has_every_field_as_masstransit_writes_it() -> None:
    event = Event.create("messaging.direct_message_sent", dict(DATA),
                         traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    envelope = write(event)
    assert envelope["messageId"] == str(uuid.UUID(event.id))  # a bus id is a UUIDv7
    assert envelope["conversationId"] == envelope["messageId"]
    assert envelope["messageType"] == [DIRECT.urn,
                                       "urn:message:EventBus.Messages.Events:BaseEvents"]
    assert envelope["responseAddress"] is None
    assert envelope["faultAddress"] is None
    assert envelope["destinationAddress"] == f"rabbitmq://localhost/{DIRECT.exchange}"
    assert envelope["sentTime"].endswith("Z")
    assert type(envelope["host"]["processId"]) is int
    assert envelope["headers"]["traceparent"] == event.traceparent
    message = envelope["message"]
    assert message["id"] == envelope["messageId"]  # filled from the event id
    assert message["createdAt"].endswith("Z")
    assert message["senderName"] == ""  # the C# default
    assert CONTENT_TYPE == "application/vnd.masstransit+json"


def test_the_same_event_gives_the_same_message_on_every_attempt() -> None:
    event = Event.create("messaging.direct_message_sent", dict(DATA))
    first, second = write(event), write(event)
    for envelope in (first, second):
        envelope.pop("sentTime")
    assert first == second
    assert guid_for("not-a-uuid") == guid_for("not-a-uuid")
    assert uuid.UUID(guid_for("not-a-uuid")).version == 5


def test_guids_are_hyphenated_and_times_converted_to_utc_with_z() -> None:
    given = uuid.uuid4()
    local = datetime(2026, 12, 3, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    event = Event.create("messaging.direct_message_sent", {
        **DATA, "id": "{" + str(given).upper() + "}", "createdAt": local.isoformat()})
    message = write(event)["message"]
    assert message["id"] == str(given)
    assert message["createdAt"] == "2026-12-03T08:00:00.000000Z"


def test_data_the_model_rejects_is_an_invalid_event() -> None:
    event = Event.create("messaging.direct_message_sent", {**DATA, "appId": ""})
    with pytest.raises(InvalidEvent) as caught:
        write(event)
    assert caught.value.field == "data.appId"


def test_configured_contracts_turn_keys_into_camel_case_and_back() -> None:
    data = {"invoice_id": "i1", "amount_cents": 1250, "lines": [{"sku_code": "x"}]}
    event = Event.create("billing.invoice_paid", data)
    envelope = write(event, INVOICE)
    assert envelope["message"] == {"invoiceId": "i1", "amountCents": 1250,
                                   "lines": [{"skuCode": "x"}]}
    assert envelope["messageType"] == ["urn:message:Billing.Contracts:InvoicePaidEvent"]
    inbound = from_envelope(json.dumps(envelope).encode(), [INVOICE])
    assert inbound.data == data
    assert snake_keys({"HTTPStatus": 1, "appId": 2}) == {"http_status": 1, "app_id": 2}
    assert camel_keys({"already": {"a_b": [1]}}) == {"already": {"aB": [1]}}


def dotnet(message: Any, **fields: Any) -> bytes:
    envelope = {"messageId": str(uuid.uuid4()), "messageType": [
        "URN:MESSAGE:EventBus.Messages.Events:HostingProvisioningRequestedEvent"],
        "message": message, "sentTime": "2026-12-03T09:15:30.1234567Z", **fields}
    return json.dumps(envelope).encode()


INBOUND = [c for c in CONTRACTS.values() if c.inbound]


def test_an_inbound_envelope_matches_case_insensitively_and_keeps_its_message_id() -> None:
    body = dotnet({"appId": "a", "ownerUserId": "o"})
    inbound = from_envelope(body, INBOUND)
    assert inbound.contract.type == "hosting.provisioning_requested"
    assert inbound.event_id == json.loads(body)["messageId"]
    assert inbound.time == datetime(2026, 12, 3, 9, 15, 30, 123456, tzinfo=UTC)
    assert inbound.data == {"appId": "a", "ownerUserId": "o"}


@pytest.mark.parametrize(("body", "field"), [
    (b"\xff\xfe", "body"),
    (b"[1, 2]", "body"),
    (dotnet(None), "message"),
    (dotnet("text"), "message"),
    (dotnet({}, messageId="12345"), "messageId"),
    (dotnet({}, correlationId=7), "correlationId"),
    (dotnet({}, messageType="urn:message:x"), "messageType"),
    (dotnet({}, sentTime="yesterday"), "sentTime"),
    (dotnet({}, sourceAddress=5), "sourceAddress"),
])
def test_an_unreadable_envelope_names_the_field(body: bytes, field: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        from_envelope(body, INBOUND)
    assert caught.value.field == field
    assert not isinstance(caught.value, UnknownMessageType)


def test_an_envelope_of_another_namespace_is_of_no_inbound_type() -> None:
    body = dotnet({}, messageType=["urn:message:Other:HostingProvisioningRequestedEvent"])
    with pytest.raises(UnknownMessageType):
        from_envelope(body, INBOUND)
    outbound_only = [DIRECT]
    with pytest.raises(UnknownMessageType):  # an outbound contract is never taken in
        from_envelope(dotnet({}, messageType=[DIRECT.urn]), outbound_only)


def test_bad_bridge_settings_name_the_field_and_never_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={"MOZAIKS_AMQP_URL": "http://user:secret@host"})
    assert caught.value.field == "amqp_url"
    assert "secret" not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, amqp_contracts=[{"type": "Bad Type", "message_type": "X"}])
    assert caught.value.field == "amqp_contracts.0.type"
    assert "Bad Type" not in str(caught.value)
    settings = load_settings(env={"MOZAIKS_AMQP_URL": "amqp://guest:pw@127.0.0.1/vh"})
    assert settings.redacted_dump()["amqp_url"] == "amqp://guest:***@127.0.0.1/vh"
    assert "pw" not in repr(settings)


def test_a_missing_aio_pika_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "aio_pika", None)
    with pytest.raises(ConfigError) as caught:
        require_amqp()
    assert "pip install 'mozaiks-bus[amqp]'" in str(caught.value)


@pytest.mark.parametrize(("contracts", "field"), [
    ([{"type": "a.b", "message_type": "Ns:X"}, {"type": "a.b", "message_type": "Ns:Y"}],
     "amqp_contracts.1.type"),
    ([{"type": "a.b", "message_type": "Ns:X"}, {"type": "a.c", "message_type": "NS:x"}],
     "amqp_contracts.1.message_type"),
    ([{"type": "a.b", "message_type": "no colon"}], "amqp_contracts.0.message_type"),
    ([{"type": "a.b", "message_type": "Ns:X", "direction": "sideways"}],
     "amqp_contracts.0.direction"),
])
def test_contract_settings_refuse_repeats_and_bad_names(contracts: list[dict[str, str]],
                                                         field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, amqp_contracts=contracts)
    assert caught.value.field == field


def test_the_bridge_refuses_a_dotnet_endpoints_queue_as_its_own() -> None:
    from mozaiks_bus.amqp.bridge import MassTransitBridge  # noqa: PLC0415  # aio-pika

    settings = load_settings(env={}, broker_url="redis://127.0.0.1:1/0",
                             amqp_url="amqp://guest:guest@127.0.0.1:1/",
                             amqp_queue="direct-message-sent-queue")
    with pytest.raises(ConfigError) as caught:
        MassTransitBridge(settings)
    assert caught.value.field == "amqp_queue"
    assert "compete" in caught.value.reason


def test_a_dotnet_message_with_csharp_property_names_binds_as_masstransit_binds_it() -> None:
    from mozaiks_bus.catalog import CATALOG  # noqa: PLC0415

    message_id = str(uuid.uuid4())
    message = {"Id": message_id, "CreatedAt": "2026-12-03T09:15:30.1234567Z", "AppId": "a",
               "OWNERUSERID": "o", "JobType": "ProvisionAll",
               "Payload": {"Region": "eu-west"}, "Extra": 1}
    body = json.dumps({"MessageId": message_id, "MessageType": [
        "urn:message:EventBus.Messages.Events:HostingProvisioningRequestedEvent"],
        "Message": message, "SentTime": "2026-12-03T09:15:30Z"}).encode()
    inbound = from_envelope(body, INBOUND)
    assert inbound.event_id == message_id
    assert inbound.data == {"id": message_id, "createdAt": "2026-12-03T09:15:30.1234567Z",
                            "appId": "a", "ownerUserId": "o", "jobType": "ProvisionAll",
                            "payload": {"Region": "eu-west"}, "Extra": 1}
    CATALOG.validate("hosting.provisioning_requested", inbound.data)  # the bus takes it
    twice = from_envelope(dotnet({"appId": "first", "APPID": "last", "ownerUserId": "o"}),
                          INBOUND)
    assert twice.data == {"appId": "last", "ownerUserId": "o"}  # System.Text.Json: last wins


def test_ipv6_broker_hosts_are_bracketed_in_the_envelope_addresses() -> None:
    from urllib.parse import urlsplit  # noqa: PLC0415

    from mozaiks_bus.amqp.bridge import _address_base  # noqa: PLC0415  # aio-pika

    assert _address_base("amqp://guest:guest@[::1]:5672/v") == "rabbitmq://[::1]/v/"
    assert _address_base("amqps://u:p@[2001:db8::7]/") == "rabbitmq://[2001:db8::7]/"
    assert _address_base("amqp://u:p@rabbit.local:5672/") == "rabbitmq://rabbit.local/"
    envelope = to_envelope(Event.create("messaging.direct_message_sent", dict(DATA)), DIRECT,
                           address=_address_base("amqp://[::1]/v"), origin="mozaiks-bus.t",
                           host=host_info())
    sent = json.loads(envelope.body)
    for name in ("sourceAddress", "destinationAddress"):
        assert urlsplit(sent[name]).hostname == "::1"
        assert sent[name].startswith("rabbitmq://[::1]/v/")


def nested(levels: int) -> bytes:
    """An envelope whose message's ``payload`` nests ``levels`` objects (written as text:
    json.dumps itself recurses)."""
    body = dotnet({"appId": "a", "ownerUserId": "o", "payload": "PAYLOAD"})
    return body.replace(b'"PAYLOAD"', b'{"n":' * levels + b'"leaf"' + b"}" * levels)


def test_a_deeply_nested_body_is_an_envelope_error_not_a_recursion_error() -> None:
    with pytest.raises(EnvelopeError) as caught:
        from_envelope(nested(100_000), INBOUND)
    assert caught.value.field == "body"
    assert caught.value.rule == "nests arrays/objects deeper than 64 levels"
    inbound = from_envelope(nested(62), INBOUND)  # envelope, message, 62: 64 levels
    assert inbound.data["payload"]["n"]["n"]["n"]
    with pytest.raises(EnvelopeError):
        from_envelope(nested(63), INBOUND)
