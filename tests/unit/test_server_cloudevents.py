"""``POST /v1/events`` under the CloudEvents HTTP binding, with the official SDK as client.

The ``cloudevents`` SDK builds the requests (binary, structured; a batch is its
structured JSON of each event in an array, as the SDK has no batch writer); each is
stored once in the type's stream, and the checks answer as for plain JSON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from mozaiks_bus.event import Event
from mozaiks_bus.keys import Keys
from tests.unit.server_support import TOKENS, Served, make_settings, serve_app

PUB = TOKENS["TEST_TOKEN_PUB"]
STREAM = Keys("mozaiks").stream("notification.created")
FORMAT = JSONFormat()

pytestmark = pytest.mark.usefixtures("api_tokens")


@pytest.fixture
async def http(memory_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_app(make_settings(memory_url, api_max_batch=10)) as served:
        assert isinstance(served, Served)
        async with httpx.AsyncClient(base_url=served.url, timeout=10,
                                     headers={"Authorization": f"Bearer {PUB}"}) as client:
            yield client


def cloud_event(event_id: str, **attributes: Any) -> CloudEvent:
    data = {"notification_id": event_id, "user_id": "u1", "notification_type": "t",
            "subject": "s", "message": "m"}
    return CloudEvent(attributes={"type": "notification.created", "source": "/billing",
                                  "id": event_id, **attributes}, data=data)


def stored(client: redis.Redis) -> list[Event]:
    return [Event.from_json(fields[b"e"]) for _, fields in client.xrange(STREAM)]


async def test_binary_mode_is_stored_once_with_its_attributes(
    http: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    message = to_binary(cloud_event("b1", subject="chat 1%", traceparent=(
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")), FORMAT)
    assert "ce-id" in message.headers
    assert "content-type" not in message.headers
    for _ in range(2):  # a retry is a duplicate
        answer = await http.post("/v1/events", headers=message.headers, content=message.body)
        assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": [], "duplicates": ["b1"]}
    [event] = stored(sync_redis)
    assert (event.id, event.source, event.subject) == ("b1", "/billing", "chat 1%")
    assert event.data["notification_id"] == "b1"
    assert event.traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def test_structured_and_batched_modes_are_stored_once(
    http: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    events = [cloud_event(i) for i in ("s1", "s2", "s3")]  # the SDK stamps each with a time
    one = to_structured(events[0], FORMAT)
    assert one.headers["content-type"] == "application/cloudevents+json"
    answer = await http.post("/v1/events", headers=one.headers, content=one.body)
    assert answer.json() == {"accepted": ["s1"], "duplicates": []}
    batch = b"[" + b",".join(FORMAT.write(event) for event in events) + b"]"
    answer = await http.post("/v1/events", content=batch,
                             headers={"content-type": "application/cloudevents-batch+json"})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": ["s2", "s3"], "duplicates": ["s1"]}
    assert [event.id for event in stored(sync_redis)] == ["s1", "s2", "s3"]


async def test_the_same_event_in_another_mode_is_a_duplicate_not_a_conflict(
    http: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    event = cloud_event("m1")
    binary, structured = to_binary(event, FORMAT), to_structured(event, FORMAT)
    first = await http.post("/v1/events", headers=binary.headers, content=binary.body)
    second = await http.post("/v1/events", headers=structured.headers, content=structured.body)
    assert first.json()["accepted"] == ["m1"]
    assert second.status_code == 202
    assert second.json() == {"accepted": [], "duplicates": ["m1"]}
    assert len(stored(sync_redis)) == 1


async def test_binary_request_missing_ce_id_names_the_header(
    http: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    message = to_binary(cloud_event("x"), FORMAT)
    headers = {k: v for k, v in message.headers.items() if k != "ce-id"}
    answer = await http.post("/v1/events", headers=headers, content=message.body)
    assert answer.status_code == 422
    assert answer.json()["field"] == "ce-id"
    assert "ce-id" in answer.json()["message"]
    assert sync_redis.exists(STREAM) == 0


@pytest.mark.parametrize(("headers", "body", "status", "field"), [
    ({"ce-specversion": "1.0", "ce-id": "x", "ce-source": "s", "ce-type": "notification.created",
      "content-type": "text/plain"}, b"hello", 415, "Content-Type"),
    ({"ce-specversion": "1.0", "ce-id": "x", "ce-source": "s", "ce-type": "notification.created",
      "content-type": "application/json"}, b"[1, 2]", 422, "data"),
    ({"ce-specversion": "1.0", "ce-id": "x", "ce-source": "s", "ce-type": "Not A Type"},
     b"{}", 422, "ce-type"),
    ({"ce-specversion": "1.0", "ce-id": "x", "ce-source": "s", "ce-type": "notification.created",
      "ce-datacontenttype": "application/json"}, b"{}", 422, "ce-datacontenttype"),
    ({"content-type": "application/cloudevents+json"}, b"[]", 422, "body"),
    ({"content-type": "application/cloudevents-batch+json"}, b"{}", 422, "body"),
    ({"content-type": "application/cloudevents-batch+json"}, b"[]", 422, "body"),
    ({"content-type": "application/cloudevents+json"}, b"{nope", 400, None),
])
async def test_bad_requests_in_each_mode_name_what_is_wrong(
    http: httpx.AsyncClient, sync_redis: redis.Redis, headers: dict[str, str], body: bytes,
    status: int, field: str | None,
) -> None:
    answer = await http.post("/v1/events", headers=headers, content=body)
    assert answer.status_code == status, answer.text
    assert answer.json().get("field") == field
    assert sync_redis.exists(STREAM) == 0


async def test_catalog_rules_apply_to_binary_data(
    http: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    event = CloudEvent(attributes={"type": "notification.created", "source": "s", "id": "c1"},
                       data={"user_id": "u1"})  # notification_id and more are missing
    message = to_binary(event, FORMAT)
    answer = await http.post("/v1/events", headers=message.headers, content=message.body)
    assert answer.status_code == 422
    assert answer.json()["field"].startswith("data.")
    assert sync_redis.exists(STREAM) == 0


async def test_batch_over_the_limit_is_refused_whole(
    http: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    batch = b"[" + b",".join(FORMAT.write(cloud_event(f"o{i}")) for i in range(11)) + b"]"
    answer = await http.post("/v1/events", content=batch,
                             headers={"content-type": "application/cloudevents-batch+json"})
    assert answer.status_code == 413
    assert sync_redis.exists(STREAM) == 0
