"""The real RabbitMQ on 127.0.0.1:5672 for the bridge tests, and a strict MassTransit peer.

Each test module gets a vhost of its own (``rabbitmqctl add_vhost``), so exchanges named
as the .NET contracts never collide between tests and nothing is left behind.
:func:`read_as_masstransit` applies MassTransit 8's deserialization rules (the envelope
fields, GUID ids, URN message types, as :mod:`mozaiks_bus.amqp.envelope` describes them)
strictly, failing the test on any departure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

HOST, PORT = "127.0.0.1", 5672
CONTENT_TYPE = "application/vnd.masstransit+json"
GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UTC_TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z")
CAMEL_RE = re.compile(r"[a-z][A-Za-z0-9]*")
ENVELOPE_FIELDS = ("messageId", "requestId", "correlationId", "conversationId", "initiatorId",
                   "sourceAddress", "destinationAddress", "responseAddress", "faultAddress",
                   "messageType", "message", "expirationTime", "sentTime", "headers", "host")


def rabbitmq_up() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            return True
    except OSError:
        return False


def require_rabbitmq() -> None:
    """Skip (or fail, under ``MOZAIKS_TEST_REQUIRE_RABBITMQ=1``, as in CI) without it."""
    if rabbitmq_up():
        return
    message = f"RabbitMQ is not listening on {HOST}:{PORT} (rabbitmq-server -detached)"
    if os.environ.get("MOZAIKS_TEST_REQUIRE_RABBITMQ") == "1":
        pytest.fail(message)
    pytest.skip(message)


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    result = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def make_vhost() -> str:
    name = f"mozaiks-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return name


def drop_vhost(name: str) -> None:
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):  # a leftover is harmless
        rabbitmqctl("delete_vhost", name)


def amqp_url(vhost: str) -> str:
    return f"amqp://guest:guest@{HOST}:{PORT}/{vhost}"


def _utc(value: Any, where: str) -> None:
    assert isinstance(value, str), f"{where}: {value!r} is not a string"
    assert UTC_TIME_RE.fullmatch(value), f"{where}: {value!r} is not ISO 8601 UTC with Z"


def _guid(value: Any, where: str) -> None:
    assert isinstance(value, str), f"{where}: {value!r} is not a string"
    assert GUID_RE.fullmatch(value), f"{where}: {value!r} is not a lowercase hyphenated GUID"


def read_as_masstransit(body: bytes, properties: dict[str, Any], urn: str,
                        string_fields: tuple[str, ...]) -> dict[str, Any]:
    """The ``message`` of one delivery, checked as a MassTransit consumer of ``urn`` reads
    it (AssertionError on any departure from the rules)."""
    assert properties["content_type"] == CONTENT_TYPE
    assert properties["delivery_mode"] == 2, "not persistent"
    envelope = json.loads(body.decode("utf-8"))
    assert isinstance(envelope, dict)
    missing = [name for name in ENVELOPE_FIELDS if name not in envelope]
    assert not missing, f"envelope fields missing: {missing}"
    for name in ("messageId", "requestId", "correlationId", "conversationId", "initiatorId"):
        if envelope[name] is not None:
            _guid(envelope[name], name)
    assert properties["message_id"] == envelope["messageId"]
    for name in ("sourceAddress", "destinationAddress", "responseAddress", "faultAddress"):
        if envelope[name] is not None:
            parts = urlsplit(envelope[name])
            assert parts.scheme, f"{name} is not an absolute URI"
            assert parts.netloc, f"{name} is not an absolute URI"
    assert envelope["responseAddress"] is None
    assert envelope["faultAddress"] is None
    types = envelope["messageType"]
    assert isinstance(types, list)
    assert all(isinstance(t, str) for t in types)
    assert urn in types, f"{urn} not in messageType {types}"  # exact namespace and case
    _utc(envelope["sentTime"], "sentTime")
    host = envelope["host"]
    assert isinstance(host, dict)
    assert type(host["processId"]) is int
    message = envelope["message"]
    assert isinstance(message, dict), "message is null or not an object"
    for key in message:
        assert CAMEL_RE.fullmatch(key), f"message key {key!r} is not camelCase"
    _guid(message["id"], "message.id")
    _utc(message["createdAt"], "message.createdAt")
    for name in string_fields:
        assert type(message[name]) is str, f"message.{name} is not a JSON string"
    return message
