"""The HTTP endpoints, served in-process by uvicorn over a memory:// broker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis

from mozaiks_bus.errors import BrokerUnavailable
from mozaiks_bus.event import Event
from mozaiks_bus.keys import Keys
from mozaiks_bus.server.dedupe import digest
from tests.unit.server_support import TOKENS, Served, make_settings, serve_app

ALL, PUB, ADMIN = (TOKENS[k] for k in ("TEST_TOKEN_ALL", "TEST_TOKEN_PUB", "TEST_TOKEN_ADMIN"))

pytestmark = pytest.mark.usefixtures("api_tokens")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def served(memory_url: str) -> AsyncIterator[Served]:
    settings = make_settings(memory_url, api_max_batch=10,
                             routes=[{"pattern": "quiet.*", "scopes": ["local"]}])
    async with serve_app(settings) as app:
        yield app


@pytest.fixture
async def http(served: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        yield client


def notification(event_id: str, **data: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "notification.created", "source": "test", "data": {
        "notification_id": event_id, "user_id": "u1", "notification_type": "t",
        "subject": "s", "message": "m", **data}}


async def test_publish_stores_once_and_answers_duplicates(
    http: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    stream = Keys("mozaiks").stream("notification.created")
    first = await http.post("/v1/events", json=notification("n1"), headers=auth(PUB))
    assert first.status_code == 202
    assert first.json() == {"accepted": ["n1"], "duplicates": []}
    again = await http.post("/v1/events", json=[notification("n1"), notification("n2")],
                            headers=auth(PUB))
    assert again.json() == {"accepted": ["n2"], "duplicates": ["n1"]}
    assert sync_redis.xlen(stream) == 2
    stored = Event.from_json(sync_redis.xrange(stream)[0][1][b"e"])
    assert stored.id == "n1"
    assert stored.data["notification_id"] == "n1"
    key = Keys("mozaiks").dedupe("n1")
    assert sync_redis.get(key) == f"d:{digest(notification('n1'))}".encode()
    assert 3500 < sync_redis.ttl(key) <= 3600


async def test_repeats_inside_a_batch(http: httpx.AsyncClient) -> None:
    same = await http.post("/v1/events", json=[notification("r1"), notification("r1")],
                           headers=auth(PUB))
    assert same.json() == {"accepted": ["r1"], "duplicates": ["r1"]}
    different = await http.post("/v1/events", json=[notification("r2"),
                                                    notification("r2", message="other")],
                                headers=auth(PUB))
    assert different.status_code == 409
    assert different.json()["error"] == "conflict"


async def test_a_bad_event_in_a_batch_is_named_by_index(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/events", json=[notification("b1"),
                                                   {**notification("b2"), "type": "Bad:Type"}],
                               headers=auth(PUB))
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "[1].type"
    assert body["message"].startswith("[1].type: must match")
    missing = await http.post("/v1/events", json={"type": "chat.x", "source": "s"},
                              headers=auth(PUB))
    assert missing.json()["field"] == "id"
    local = await http.post("/v1/events", json={"id": "l1", "type": "quiet.x", "source": "s",
                                                "data": {}}, headers=auth(ALL))
    assert local.status_code == 422
    assert "local scope only" in local.json()["message"]


LONE = "\\ud800"  # the six characters of a JSON escape of a lone (unpaired) surrogate


def _chat_event(event_id: str, **fields: str) -> str:
    attributes = {"id": event_id, "type": "messaging.sent", "source": "s", **fields}
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in attributes.items()) + ',"data":%s}'


@pytest.mark.parametrize(("body", "field"), [
    (_chat_event("s1") % f'{{"text":"a{LONE}b"}}', "data.text"),
    (_chat_event("s2") % f'{{"{LONE}":1}}', "data"),
    (_chat_event("s3") % f'{{"items":[1,{{"x":"{LONE}"}}]}}', "data.items[1].x"),
    (_chat_event(LONE) % "{}", "id"),
    (_chat_event("s5", subject=LONE) % "{}", "subject"),
    (_chat_event("s6", source=LONE) % "{}", "source"),
    ("[" + _chat_event("s7") % "{}" + "," + _chat_event("s8") % f'{{"t":"{LONE}"}}' + "]",
     "[1].data.t"),
])
async def test_a_lone_surrogate_anywhere_is_400_naming_the_field(
    http: httpx.AsyncClient, sync_redis: redis.Redis, body: str, field: str
) -> None:
    headers = {**auth(ALL), "Content-Type": "application/json"}
    response = await http.post("/v1/events", content=body.encode(), headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert response.json()["message"].startswith(f"{field}: must be valid Unicode text")
    assert response.headers.get("connection") != "close"
    assert sync_redis.xlen(Keys("mozaiks").stream("messaging.sent")) == 0
    # the same connection still serves: a valid event goes through after it
    ok = await http.post("/v1/events", content=(_chat_event("fine") % "{}").encode(),
                         headers=headers)
    assert ok.status_code == 202, ok.text


async def test_a_lone_surrogate_in_binary_mode_data_is_400(http: httpx.AsyncClient) -> None:
    headers = {**auth(ALL), "Content-Type": "application/json", "ce-specversion": "1.0",
               "ce-id": "b1", "ce-source": "s", "ce-type": "messaging.sent"}
    response = await http.post("/v1/events", content=f'{{"t":["{LONE}"]}}'.encode(),
                               headers=headers)
    assert response.status_code == 400
    assert response.json()["field"] == "data.t[0]"
    paired = await http.post("/v1/events", content=b'{"t":"\\ud83d\\ude00"}', headers=headers)
    assert paired.status_code == 202  # a surrogate pair is one character (an emoji)


async def test_redis_failure_is_503_and_releases_the_claims(
    served: Served, http: httpx.AsyncClient, sync_redis: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(events: Any, **_: Any) -> None:
        raise BrokerUnavailable("Redis is down")

    monkeypatch.setattr(served.state.bus, "publish_events", refuse)
    response = await http.post("/v1/events", json=[notification("f1"), notification("f2")],
                               headers=auth(PUB))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "Redis is down" in response.json()["message"]
    assert sync_redis.exists(Keys("mozaiks").dedupe("f1"), Keys("mozaiks").dedupe("f2")) == 0
    monkeypatch.undo()
    retry = await http.post("/v1/events", json=[notification("f1"), notification("f2")],
                            headers=auth(PUB))
    assert retry.json() == {"accepted": ["f1", "f2"], "duplicates": []}


async def test_claim_failure_is_503(served: Served, http: httpx.AsyncClient,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Events with the ui scope are claimed before they are stored."""
    async def down(items: Any) -> None:
        raise BrokerUnavailable("no route to Redis")

    monkeypatch.setattr(served.state.dedupe, "claim", down)
    ui_event = {"id": "c1", "type": "chat.text", "source": "test", "subject": "chat-1",
                "data": {"content": "hi"}}
    response = await http.post("/v1/events", json=ui_event, headers=auth(PUB))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


async def test_an_id_claimed_by_a_request_in_flight_is_503_and_nothing_is_stored(
    served: Served, http: httpx.AsyncClient, sync_redis: redis.Redis,
) -> None:
    """The one-script path sees another request's pending claim: 503, and the other
    events of the batch are not stored either (all or nothing)."""
    busy = notification("busy-1")
    sync_redis.set(Keys("mozaiks").dedupe("busy-1"), f"p:{digest(busy)}", ex=30)
    response = await http.post("/v1/events", json=[notification("free-1"), busy],
                               headers=auth(PUB))
    assert response.status_code == 503
    assert "being stored by another request" in response.json()["message"]
    assert sync_redis.exists(Keys("mozaiks").dedupe("free-1")) == 0
    other_body = notification("busy-1", message="another body")
    sync_redis.set(Keys("mozaiks").dedupe("busy-1"), f"d:{digest(other_body)}", ex=30)
    conflict = await http.post("/v1/events", json=[notification("free-1"), busy],
                               headers=auth(PUB))
    assert conflict.status_code == 409
    assert conflict.json()["field"] == "id"
    assert sync_redis.exists(Keys("mozaiks").dedupe("free-1")) == 0


async def test_an_event_being_stored_by_another_request_is_503_not_a_duplicate(
    http: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    keys = Keys("mozaiks")
    sync_redis.set(keys.dedupe("p1"), f"p:{digest(notification('p1'))}", ex=30)
    response = await http.post("/v1/events", json=[notification("p0"), notification("p1")],
                               headers=auth(PUB))
    assert response.status_code == 503
    assert "being stored" in response.json()["message"]
    assert not sync_redis.exists(keys.dedupe("p0"))  # this request's own claim was released
    sync_redis.set(keys.dedupe("p1"), "p:" + "0" * 64, ex=30)
    assert (await http.post("/v1/events", json=notification("p1"),
                            headers=auth(PUB))).status_code == 409


async def test_input_reaches_the_registered_callback_once(
    served: Served, http: httpx.AsyncClient
) -> None:
    got: list[str] = []
    ui = served.state.bus.ui
    request_id = ui.register_input_request("chat-1", "req-1", got.append)
    waiter = asyncio.create_task(ui.wait_for_response("tool-1", 10))
    await asyncio.sleep(0.2)  # the claims are written in the background
    body = {"input_request_id": request_id, "text": "hello"}
    first = await http.post("/v1/input", json=body, headers=auth(ALL))
    assert first.json() == {"kind": "user_input", "id": "req-1", "status": "accepted"}
    second = await http.post("/v1/input", json=body, headers=auth(ALL))
    assert second.status_code == 404
    assert got == ["hello"]
    tool = await http.post("/v1/input", json={"event_id": "tool-1", "response": {"a": 1}},
                           headers=auth(ALL))
    assert tool.status_code == 200
    assert await asyncio.wait_for(waiter, 5) == {"a": 1}
    bad = await http.post("/v1/input", json={"text": "x"}, headers=auth(ALL))
    assert bad.status_code == 422
    assert bad.json()["field"] == "input_request_id"
    huge = await http.post("/v1/input", content=b'{"event_id": "t", "response": 1e999}',
                           headers=auth(ALL))
    assert huge.status_code == 422
    assert (await http.post("/v1/input", json=body, headers=auth(PUB))).status_code == 403


def _dead_letter(client: redis.Redis, type_name: str, event_id: str) -> str:
    keys = Keys("mozaiks")
    event = Event.create(type_name, {"n": 1}, id=event_id, source="test")
    client.sadd(keys.stream_index(), type_name)
    entry: bytes = client.xadd(keys.dead_letter_stream(type_name), {
        "e": event.to_json(), "error": "boom", "group": "billing", "deliveries": 5,
        "dead_at": int(time.time() * 1000), "source_id": "1-0", "consumer": "c1"})
    return entry.decode()


async def test_admin_dead_letters_list_replay_delete(
    http: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    first = _dead_letter(sync_redis, "plugin.execution.failed", "e1")
    second = _dead_letter(sync_redis, "plugin.execution.failed", "e2")
    listed = await http.get("/v1/dead-letters", headers=auth(ADMIN))
    assert [dl["id"] for dl in listed.json()["dead_letters"]] == [second, first]
    assert listed.json()["dead_letters"][0]["error"] == "boom"
    one = await http.get("/v1/dead-letters", params={"type": "plugin.execution.failed",
                                                     "limit": 1}, headers=auth(ADMIN))
    assert len(one.json()["dead_letters"]) == 1
    path = f"/v1/dead-letters/plugin.execution.failed/{first}"
    replay = await http.post(path + "/replay", headers=auth(ADMIN))
    assert replay.status_code == 200
    assert replay.json()["replayed"] == first
    entries = sync_redis.xrange(Keys("mozaiks").stream("plugin.execution.failed"))
    assert entries[-1][1][b"g"] == b"billing"
    assert (await http.post(path + "/replay", headers=auth(ADMIN))).status_code == 404
    delete = f"/v1/dead-letters/plugin.execution.failed/{second}"
    assert (await http.delete(delete, headers=auth(ADMIN))).status_code == 204
    assert (await http.delete(delete, headers=auth(ADMIN))).status_code == 404
    bad = await http.delete("/v1/dead-letters/Bad..Type/1-0", headers=auth(ADMIN))
    assert bad.status_code == 422
    huge = await http.post("/v1/dead-letters/a.b/99999999999999999999-0/replay",
                           headers=auth(ADMIN))  # found by the schemathesis run
    assert huge.status_code == 422
    assert huge.json()["field"] == "entry_id"
    streams = (await http.get("/v1/streams", headers=auth(ADMIN))).json()["streams"]
    assert streams[0]["type"] == "plugin.execution.failed"
    assert streams[0]["length"] == 1
    assert (await http.get("/v1/streams", headers=auth(PUB))).status_code == 403
    assert (await http.get("/v1/streams")).status_code == 401


async def test_sinks_show_their_state(memory_url: str) -> None:
    sink = {"name": "email", "url": "https://mail.example/hook",
            "patterns": ["notification.created"]}
    async with serve_app(make_settings(memory_url, sinks=[sink])) as app, \
            httpx.AsyncClient(base_url=app.url) as client:
        response = await client.get("/v1/sinks", headers=auth(ADMIN))
    assert response.status_code == 200, response.text
    (state,) = response.json()["sinks"]
    assert state["name"] == "email"
    assert state["url"] == "https://mail.example/hook"
    assert state["queued"] == 0


async def test_health_readiness_and_metrics(
    served: Served, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/readyz")).status_code == 200
    await http.post("/v1/events", json=notification("m1"), headers=auth(PUB))
    await http.post("/v1/events", json=notification("m1"), headers=auth(PUB))
    await http.post("/v1/events", content=b"{", headers=auth(PUB))
    text = (await http.get("/metrics")).text
    for line in ('mozaiks_bus_http_events_total{outcome="accepted"} 1.0',
                 'mozaiks_bus_http_events_total{outcome="duplicate"} 1.0',
                 'mozaiks_bus_http_requests_total{method="POST",route="/v1/events",'
                 'status="400"} 1.0',
                 'mozaiks_bus_stream_length{type="notification.created"} 1.0',
                 'mozaiks_bus_published_by_type_total{type="notification.created"} 1.0',
                 "mozaiks_bus_streams_up 1.0", "mozaiks_bus_ws_connections 0.0",
                 "mozaiks_bus_dead_lettered_total 0.0", "mozaiks_bus_retried_total 0.0",
                 "mozaiks_bus_reconnects_total 0.0", "mozaiks_bus_listener_receiving 1.0"):
        assert line in text, line
    assert "mozaiks_bus_listener_silence_seconds" in text
    bus = served.state.bus
    monkeypatch.setattr(bus, "health", lambda: {"listener": "reconnecting", "closed": False,
                                                "receiving": False})
    assert "mozaiks_bus_listener_receiving 0.0" in (await http.get("/metrics")).text
    not_ready = await http.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.headers["retry-after"] == "1"
    assert not_ready.json()["checks"]["listener"] == {"ok": False, "status": "reconnecting"}


async def test_errors_share_one_shape(http: httpx.AsyncClient) -> None:
    missing = await http.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    bad = await http.get("/v1/dead-letters", params={"limit": 0}, headers=auth(ADMIN))
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_request"
    assert bad.json()["field"] == "query.limit"
    wrong = await http.put("/v1/events", json={}, headers=auth(PUB))
    assert wrong.status_code == 405


async def test_openapi_documents_the_batch_bound_and_examples(http: httpx.AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    body = schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["oneOf"][1]["maxItems"] == 10
    assert body["examples"]["one"]["value"]["type"] == "notification.created"
    responses = schema["paths"]["/v1/events"]["post"]["responses"]
    assert {"202", "400", "401", "403", "409", "413", "422", "503"} <= set(responses)
    assert json.dumps(schema).count("Bearer") >= 1


async def test_an_injected_bus_is_used_and_left_running(memory_url: str) -> None:
    from mozaiks_bus import Bus  # noqa: PLC0415

    bus = Bus(config=make_settings(memory_url))
    seen: list[str] = []
    bus.subscribe("notification.created", lambda event: seen.append(event.id))
    async with serve_app(bus.config, bus=bus) as app, \
            httpx.AsyncClient(base_url=app.url) as client:
        assert app.state.bus is bus
        response = await client.post("/v1/events", json=notification("i1"), headers=auth(PUB))
        assert response.status_code == 202
    assert seen == ["i1"]  # local subscribers of the injected bus see HTTP events too
    assert not bus.closed  # its owner stops it
    await bus.stop()
