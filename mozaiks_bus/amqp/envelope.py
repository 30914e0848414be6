"""MassTransit's JSON envelope (``application/vnd.masstransit+json``), both ways.

Written as MassTransit 8's System.Text.Json serializer writes it (every envelope field
present, unset ones ``null``; ids as lowercase hyphenated GUIDs; times in UTC with
``Z``; ``host.processId`` an integer; ``messageType`` the contract's URN, then its base
class's), as MassTransit's own serializer tests and a .NET peer read it.

Outbound (:func:`to_envelope`)
------------------------------
* ``messageId`` is the event id when it is a UUID (a bus id is a UUIDv7), else a UUIDv5
  of it: the same event gives the same ``messageId`` on every attempt, so a .NET inbox
  can dedupe.
* ``message`` is the event's ``data``. For a catalog .NET contract it is validated by
  the model and normalised: GUIDs hyphenated, times converted to UTC and written with
  ``Z`` (.NET turns a numeric offset into server-local time), a missing ``id`` filled
  from the event id and a missing ``createdAt`` from the event time (deterministic, so a
  retry sends the same message). For a configured contract with ``camel_case``, keys
  are turned from ``snake_case`` into ``camelCase`` at every depth.
* ``headers`` carry ``MozaiksBus-EventId``, ``MozaiksBus-EventType`` and the W3C
  ``traceparent``; the AMQP properties are the content type, ``delivery_mode`` 2 and
  ``message_id``; the AMQP header :data:`ORIGIN_HEADER` names the install, so the
  bridge never takes its own messages back in.

Inbound (:func:`from_envelope`)
-------------------------------
MassTransit's reading rules, applied strictly: the body is a UTF-8 JSON object nesting
arrays/objects at most :data:`MAX_DEPTH` levels deep (checked before decoding); the
``message`` is a non-null object; non-empty ids are GUIDs; ``messageType`` is a list of
strings matched case-insensitively against the inbound contracts' URNs. Envelope fields
are read case-insensitively, and so are the ``message``'s properties when the contract
has a model, as MassTransit's System.Text.Json options bind them
(``PropertyNameCaseInsensitive``): ``AppId`` or ``APPID`` is the model's ``appId`` (of
two spellings of one property, the last wins, as in .NET; keys of dictionary-typed
fields such as ``payload`` are kept as sent). A failure
raises :class:`EnvelopeError` naming the field and the rule (the bridge moves such a
message to its error queue with that reason); a readable envelope of no inbound type
raises :class:`UnknownMessageType` (moved to the skipped queue, as MassTransit does).
The event id is the ``messageId`` (so a redelivered message is the same event).
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from mozaiks_bus._version import __version__
from mozaiks_bus.amqp.contracts import Contract, urn_of
from mozaiks_bus.catalog import DotnetEvent
from mozaiks_bus.errors import InvalidEvent, MozaiksBusError
from mozaiks_bus.event import Event
from mozaiks_bus.wire import DECODER, json_depth_exceeds

__all__ = [
    "CONTENT_TYPE",
    "MAX_DEPTH",
    "ORIGIN_HEADER",
    "EnvelopeError",
    "Inbound",
    "Outbound",
    "UnknownMessageType",
    "camel_keys",
    "from_envelope",
    "guid_for",
    "host_info",
    "snake_keys",
    "to_envelope",
]

CONTENT_TYPE = "application/vnd.masstransit+json"
MAX_DEPTH = 64
"""How deep arrays/objects may nest in an inbound body (the envelope is one level), as
the HTTP API's largest ``api_max_json_depth``."""
ORIGIN_HEADER = "MozaiksBus-Origin"
BRIDGED_EXTENSION = "bridgedfrom"
"""The CloudEvents extension an inbound event carries (``amqp``); outbound skips them."""
_ID_FIELDS = ("messageId", "requestId", "correlationId", "conversationId", "initiatorId")
_ADDRESS_FIELDS = ("sourceAddress", "destinationAddress", "responseAddress", "faultAddress")
_GUID_NAMESPACE = uuid.UUID("6f1b0f52-8a5e-4d0c-9a53-1b2f5f3c7d10")  # mozaiks-bus event ids
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])([A-Z])|(?<=[A-Z])([A-Z][a-z])")


class EnvelopeError(MozaiksBusError, ValueError):
    """An AMQP message that is not a MassTransit envelope the bridge can read.

    ``field`` names the envelope field and ``rule`` the rule it broke (what goes into the
    error queue's ``MT-Fault-Message``)."""

    def __init__(self, field: str, rule: str) -> None:
        self.field = field
        self.rule = rule
        super().__init__(f"{field}: {rule}")


class UnknownMessageType(EnvelopeError):
    """A readable envelope whose ``messageType`` names no inbound contract."""


def guid_for(event_id: str) -> str:
    """The lowercase hyphenated GUID of an event id (itself when it is a UUID)."""
    try:
        return str(uuid.UUID(event_id))
    except ValueError:
        return str(uuid.uuid5(_GUID_NAMESPACE, event_id))


def _net_time(moment: datetime) -> str:
    if moment.tzinfo is None:  # .NET would read it as Unspecified; the bus means UTC
        moment = moment.replace(tzinfo=UTC)
    stamp = moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
    return stamp + "Z"


def _net_json(value: Any) -> Any:
    """Python values of a model dump as System.Text.Json reads them."""
    if isinstance(value, dict):
        return {key: _net_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_net_json(item) for item in value]
    if isinstance(value, datetime):
        return _net_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _map_keys(value: Any, rename: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {rename(key): _map_keys(item, rename) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_keys(item, rename) for item in value]
    return value


def camel_keys(value: Any) -> Any:
    """``snake_case`` keys as ``camelCase``, at every depth (other values unchanged)."""
    return _map_keys(value, _camel)


def snake_keys(value: Any) -> Any:
    """``camelCase`` (or ``PascalCase``) keys as ``snake_case``, at every depth."""
    return _map_keys(value, _snake)


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _snake(key: str) -> str:
    return _CAMEL_RE.sub(lambda m: "_" + (m.group(1) or m.group(2)), key).lower()


def _message_of(event: Event, contract: Contract) -> dict[str, Any]:
    model = contract.model
    if model is not None and issubclass(model, DotnetEvent):
        data = dict(event.data)
        data.setdefault("id", guid_for(event.id))
        data.setdefault("createdAt", _net_time(event.time))
        try:
            built = model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ()))
            raise InvalidEvent(f"data.{where}", str(first.get("msg", "is invalid"))) from None
        return {key: _net_json(value) for key, value in _dump(built).items()}
    return camel_keys(event.data) if contract.camel_case else dict(event.data)


def _bind(message: dict[str, Any], model: type[BaseModel] | None) -> dict[str, Any]:
    """``message`` with each key that matches one of ``model``'s fields case-insensitively
    renamed to that field (nested model fields likewise); other keys kept as sent."""
    if model is None:
        return message
    fields = {name.lower(): (name, info.annotation) for name, info in
              model.model_fields.items()}
    bound: dict[str, Any] = {}
    for key, value in message.items():
        name, annotation = fields.get(key.lower(), (key, None))
        if (isinstance(value, dict) and isinstance(annotation, type)
                and issubclass(annotation, BaseModel)):
            bound[name] = _bind(value, annotation)
        else:
            bound[name] = value  # of two spellings of one field, the last wins
    return bound


def _dump(model: BaseModel) -> dict[str, Any]:
    dumped = model.model_dump(mode="python")
    # keep keys the model does not declare (System.Text.Json ignores unknown ones)
    extra = model.model_extra or {}
    return {**extra, **dumped}


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message to publish: body, AMQP properties and the exchange."""

    exchange: str
    body: bytes
    message_id: str
    headers: dict[str, str]


def host_info() -> dict[str, Any]:
    """The envelope's ``host`` object for this process."""
    return {
        "machineName": socket.gethostname(), "processName": os.path.basename(sys.argv[0])
        or "python", "processId": os.getpid(), "assembly": "mozaiks_bus",
        "assemblyVersion": __version__, "frameworkVersion":
        f"{platform.python_implementation()} {platform.python_version()}",
        "massTransitVersion": None, "operatingSystemVersion": platform.platform(),
    }


def to_envelope(event: Event, contract: Contract, *, address: str, origin: str,
                host: Mapping[str, Any], sent: datetime | None = None,
                traceparent: str | None = None) -> Outbound:
    """The MassTransit message of ``event`` (see the module docstring).

    ``address`` is the broker's ``rabbitmq://host/vhost/`` base of the addresses;
    ``origin`` goes into :data:`ORIGIN_HEADER`; ``traceparent`` (default: the event's)
    is the W3C trace context sent along. Raises InvalidEvent when ``data`` does not
    satisfy the contract's model."""
    message_id = guid_for(event.id)
    correlation = event.correlationid
    trace = traceparent or event.traceparent
    headers: dict[str, str] = {"MozaiksBus-EventId": event.id, "MozaiksBus-EventType": event.type}
    if trace:
        headers["traceparent"] = trace
    envelope = {
        "messageId": message_id, "requestId": None,
        "correlationId": guid_for(correlation) if correlation else None,
        "conversationId": message_id, "initiatorId": None,
        "sourceAddress": f"{address}{origin}",
        "destinationAddress": f"{address}{contract.exchange}",
        "responseAddress": None, "faultAddress": None,
        "messageType": [contract.urn, *(urn_of(base) for base in contract.base_exchanges)],
        "message": _message_of(event, contract),
        "expirationTime": None,
        "sentTime": _net_time(sent or datetime.now(UTC)),
        "headers": headers, "host": dict(host),
    }
    body = json.dumps(envelope, ensure_ascii=False, allow_nan=False).encode()
    amqp_headers = {ORIGIN_HEADER: origin}
    if trace:
        amqp_headers["traceparent"] = trace
    return Outbound(contract.exchange, body, message_id, amqp_headers)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A readable inbound envelope: its contract, the bus event's attributes."""

    contract: Contract
    event_id: str
    data: dict[str, Any]
    source: str
    time: datetime | None
    correlation_id: str | None
    traceparent: str | None


def _guid_field(envelope: Mapping[str, Any], name: str) -> str | None:
    value = envelope.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise EnvelopeError(name, "must be a GUID string (MassTransit: 'The Id was not a Guid')")
    try:
        return str(uuid.UUID(value.strip("{}()")))
    except ValueError:
        raise EnvelopeError(name, "must be a GUID (MassTransit: 'The Id was not a Guid')") \
            from None


def _time_field(envelope: Mapping[str, Any], name: str) -> datetime | None:
    value = envelope.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EnvelopeError(name, "must be an ISO 8601 date-time string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise EnvelopeError(name, "must be an ISO 8601 date-time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def from_envelope(body: bytes, contracts: Iterable[Contract], *,
                  traceparent: str | None = None) -> Inbound:
    """Read an inbound MassTransit message (see the module docstring)."""
    if json_depth_exceeds(body, MAX_DEPTH):
        raise EnvelopeError("body", f"nests arrays/objects deeper than {MAX_DEPTH} levels")
    try:
        envelope = DECODER.decode(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise EnvelopeError("body", "must be UTF-8 JSON") from None
    except ValueError as exc:
        raise EnvelopeError("body", f"must be a JSON envelope ({exc})") from None
    if not isinstance(envelope, dict):
        raise EnvelopeError("body", "must be a JSON object (MassTransit's envelope)")
    folded = {key.lower(): value for key, value in envelope.items()}  # case-insensitive read
    canonical = {name: folded.get(name.lower()) for name in
                 (*_ID_FIELDS, *_ADDRESS_FIELDS, "messageType", "message", "sentTime",
                  "headers")}
    message = canonical["message"]
    if not isinstance(message, dict):
        raise EnvelopeError("message", "must be a JSON object (MassTransit: a null or missing "
                            "message fails the envelope)")
    ids = {name: _guid_field(canonical, name) for name in _ID_FIELDS}
    for name in _ADDRESS_FIELDS:
        if canonical[name] is not None and not isinstance(canonical[name], str):
            raise EnvelopeError(name, "must be an absolute URI string")
    types = canonical["messageType"] or []
    if not isinstance(types, list) or not all(isinstance(item, str) for item in types):
        raise EnvelopeError("messageType", "must be an array of URN strings")
    wanted = {item.lower() for item in types}
    contract = next((c for c in contracts if c.inbound and c.urn.lower() in wanted), None)
    if contract is None:
        raise UnknownMessageType("messageType", f"names no inbound contract of this bus: "
                                 f"{types[:4]}")
    headers = canonical["headers"] if isinstance(canonical["headers"], dict) else {}
    trace = traceparent or headers.get("traceparent")
    source = canonical["sourceAddress"] or "rabbitmq"
    return Inbound(
        contract=contract,
        event_id=ids["messageId"] or str(uuid.uuid5(_GUID_NAMESPACE, body.decode("utf-8"))),
        data=snake_keys(message) if contract.camel_case else _bind(message, contract.model),
        source=source[:1024],
        time=_time_field(canonical, "sentTime"),
        correlation_id=ids["correlationId"],
        traceparent=trace if isinstance(trace, str) else None,
    )
