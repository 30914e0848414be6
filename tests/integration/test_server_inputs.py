"""Bad inputs against a real server: each gets its documented 4xx, nothing is written;
and a property-based run of the OpenAPI schema (schemathesis) finds no 5xx."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import websockets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.integration.server_harness import (
    ADMIN,
    ALL,
    ORIGIN,
    PUB,
    UI,
    ServeProcess,
    auth,
    keyspace,
    serving,
)

pytestmark = pytest.mark.integration
MAX_BATCH = 20
EXAMPLES = 100  # per operation and mode



@pytest.fixture(scope="module")
def server(redis_url: str, prefix: str) -> Iterator[ServeProcess]:
    with serving(redis_url, prefix, 1, api_max_batch=MAX_BATCH) as (only,):
        yield only


def event(n: int = 0, **changes: Any) -> dict[str, Any]:
    body = {"specversion": "1.0", "id": f"ev-{uuid.uuid4().hex}", "type": "chat.text",
            "source": "test", "subject": "chat-bad", "data": {"n": n}}
    body.update(changes)
    return body


def _chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


TWO_MB = b'{"id": "x", "type": "chat.text", "source": "s", "data": {"pad": "' + \
    b"a" * (2 * 1024 * 1024) + b'"}}'
BAD_HTTP: list[tuple[str, dict[str, Any], int, str]] = [
    ("malformed json", {"content": b'{"id": "x", "type": '}, 400, "malformed_json"),
    ("not utf-8", {"content": b'{"id": "\xff"}'}, 400, "malformed_json"),
    ("NaN is not json", {"content": b'{"id": "x", "data": {"v": NaN}}'}, 400,
     "malformed_json"),
    ("2 MB body", {"content": TWO_MB}, 413, "body_too_large"),
    ("2 MB chunked body", {"content": _chunks(TWO_MB)}, 413, "body_too_large"),
    ("deeply nested", {"content": b"[" * 5000 + b"]" * 5000}, 400, "too_deep"),
    ("nested inside data", {"json": event(data={"a": json.loads("[" * 40 + "]" * 40)})},
     400, "too_deep"),
    ("hostile type name", {"json": event(type="chat.x}{*\r\nFLUSHALL")}, 422, "invalid_event"),
    ("type too long", {"json": event(type="a" * 129)}, 422, "invalid_event"),
    ("batch over the limit", {"json": [event(n) for n in range(MAX_BATCH + 1)]}, 413,
     "batch_too_large"),
    ("empty batch", {"json": []}, 422, "invalid_event"),
    ("one bad event spoils the batch", {"json": [event(1), event(2, data=[1])]}, 422,
     "invalid_event"),
    ("missing id", {"json": {k: v for k, v in event().items() if k != "id"}}, 422,
     "invalid_event"),
    ("catalog model rejects data", {"json": event(type="notification.created", data={})},
     422, "invalid_event"),
    ("local-only type", {"json": event(type="chat.structured_output_ready")}, 422,
     "invalid_event"),
    ("chat id too long", {"json": event(subject="c" * 300)}, 422, "invalid_event"),
    ("no token", {"json": event(), "headers": {}}, 401, "unauthorized"),
    ("wrong token", {"json": event(), "headers": auth("x" * 30)}, 401, "unauthorized"),
    ("token without the scope", {"json": event(), "headers": auth(ADMIN)}, 403, "forbidden"),
    ("type outside the token's patterns", {"json": event(type="settings_updated",
                                                         data={"user_id": "u"})},
     403, "forbidden"),
]


@pytest.mark.parametrize(("case", "request_args", "status", "code"), BAD_HTTP,
                         ids=[case for case, *_ in BAD_HTTP])
def test_bad_http_input_gets_its_4xx_and_writes_nothing(
    server: ServeProcess, redis_url: str, prefix: str, case: str,
    request_args: dict[str, Any], status: int, code: str,
) -> None:
    before = keyspace(redis_url, prefix)
    args = {"headers": auth(PUB), **request_args}
    response = httpx.post(server.url + "/v1/events", timeout=10, **args)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert len(body["message"]) > 10
    if code == "invalid_event":
        assert body["field"]
        assert body["rule"]
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    assert keyspace(redis_url, prefix) == before, case


def test_a_retry_is_a_duplicate_and_a_changed_body_a_conflict(
    server: ServeProcess, redis_url: str, prefix: str
) -> None:
    first = event(7)
    ok = httpx.post(server.url + "/v1/events", json=first, headers=auth(PUB))
    assert ok.json() == {"accepted": [first["id"]], "duplicates": []}
    stored = keyspace(redis_url, prefix)
    again = httpx.post(server.url + "/v1/events", json=[first, event(8)], headers=auth(PUB))
    assert again.status_code == 202
    assert again.json()["duplicates"] == [first["id"]]
    assert len(again.json()["accepted"]) == 1
    changed = httpx.post(server.url + "/v1/events", json=[event(9), {**first, "data": {}}],
                         headers=auth(PUB))
    assert changed.status_code == 409
    assert first["id"] in changed.json()["message"]
    after = keyspace(redis_url, prefix)
    history = f"{prefix}:ui-history:{{chat-bad}}"
    assert after[history][0] == stored[history][0] + 1  # only event(8) was added


BAD_WS: list[tuple[str, str, dict[str, str], int]] = [
    ("no token", "", {"Origin": ORIGIN}, 401),
    ("wrong token", "?token=" + "y" * 30, {"Origin": ORIGIN}, 401),
    ("token without the ui scope", "", {"Origin": ORIGIN, **auth(PUB)}, 403),
    ("bad origin", "", {"Origin": "https://evil.example", **auth(UI)}, 403),
    ("bad last_event_id", "?last_event_id=yesterday", auth(UI), 400),
]


@pytest.mark.parametrize(("case", "query", "headers", "status"), BAD_WS,
                         ids=[case for case, *_ in BAD_WS])
async def test_bad_websocket_handshake_is_refused_before_any_frame(
    server: ServeProcess, redis_url: str, prefix: str, case: str, query: str,
    headers: dict[str, str], status: int,
) -> None:
    before = keyspace(redis_url, prefix)
    url = f"{server.ws_url}/v1/ws/chat-bad{query}"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10):
            pass
    response = refused.value.response
    assert response.status_code == status
    assert json.loads(response.body)["message"]
    assert keyspace(redis_url, prefix) == before, case


async def test_unknown_client_messages_get_schema_validation_failed(
    server: ServeProcess,
) -> None:
    url = f"{server.ws_url}/v1/ws/chat-msgs?token={UI}"
    async with websockets.connect(url, additional_headers={"Origin": ORIGIN}) as ws:
        for message in ('{"type": "chat.start_workflow"}', "[1, 2]", "not json",
                        '{"type": "user.input.submit"}', '{"type": "client.resume"}'):
            await ws.send(message)
            frame = json.loads(await ws.recv())
            assert frame["type"] == "chat.error"
            assert frame["data"]["error_code"] == "SCHEMA_VALIDATION_FAILED"
            assert frame["data"]["message"]


# -- property-based: whatever the schema allows (and a bit beyond), never a 5xx ----------

@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_openapi_property_run_finds_no_5xx(server: ServeProcess, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    session = requests.Session()
    seen: set[tuple[str, int]] = set()

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def call(case: Any) -> None:
            response = case.call(base_url=server.url, session=session, timeout=10,
                                 headers={**auth(ALL), **(case.headers or {})})
            seen.add((case.path, response.status_code))
            assert response.status_code < 500, (case.method, case.formatted_path,
                                                 response.status_code, response.text[:300])

        try:
            call()
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
            assert mode == GenerationMode.NEGATIVE
    session.close()
    if mode == GenerationMode.POSITIVE:
        assert ("/v1/events", 202) in seen  # real events were stored, not only refused
    assert httpx.get(server.url + "/readyz").status_code == 200  # and it is still well
