"""Sink body formats: the generic ones and the platform's named mappings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from mozaiks_bus import Event
from mozaiks_bus.sinks.formats import FORMATS, FormatError, SkipDelivery, render

WHEN = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def event(type_name: str, data: dict[str, object], **attrs: object) -> Event:
    return Event.create(type_name, data, source="runtime", id="01JABC", time=WHEN, **attrs)


def test_cloudevents_is_the_whole_envelope() -> None:
    ev = event("orders.created", {"n": 1}, subject="chat-1")
    body = render("cloudevents", ev)
    assert body.content_type == "application/cloudevents+json"
    assert Event.from_json(body.content) == ev


def test_data_is_the_usage_ingest_body() -> None:
    summary = {"event_id": "a1b2c3d4e5f6", "event_ts": "2025-03-04T05:06:07Z",
               "chat_id": "c", "app_id": "app", "user_id": "u", "workflow_name": "wf",
               "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    body = render("data", event("chat.usage_summary", summary))
    assert body.content_type == "application/json"
    assert json.loads(body.content) == summary


def test_bodies_are_a_pure_function_of_the_event() -> None:
    ev = event("orders.created", {"text": "héllo", "n": [1, 2]})
    for name in ("cloudevents", "data"):
        assert render(name, ev).content == render(name, ev).content
    assert "héllo".encode() in render("data", ev).content  # UTF-8, not \\u escapes


NOTIFICATION = {"notification_id": "n1", "user_id": "u1", "notification_type": "welcome",
                "subject": "Hello", "message": "Welcome!", "recipient": "a@example.com"}


def test_email_notification_is_the_email_service_body() -> None:
    body = render("email-notification", event("notification.created", NOTIFICATION))
    assert json.loads(body.content) == {"recipient": "a@example.com", "subject": "Hello",
                                        "message": "Welcome!", "notification_type": "welcome"}


@pytest.mark.parametrize("change", [{"recipient": None}, {"channels": ["in_app", "push"]}])
def test_email_notification_skips_events_not_for_email(change: dict[str, object]) -> None:
    with pytest.raises(SkipDelivery):
        render("email-notification", event("notification.created", {**NOTIFICATION, **change}))


def test_email_with_the_email_channel_is_sent() -> None:
    data = {**NOTIFICATION, "channels": ["email"]}
    assert render("email-notification", event("notification.created", data)).content


DELTA = {"event_id": "a1b2c3d4e5f6", "event_ts": "2025-03-04T07:06:07+02:00",
         "chat_id": "c1", "app_id": "app1", "user_id": "u1", "workflow_name": "wf",
         "agent_name": "planner", "model_name": "gpt-4o", "prompt_tokens": 10,
         "completion_tokens": 5, "total_tokens": 15, "cached": False, "duration_sec": 1.5,
         "invocation_id": "inv-1"}


def test_billing_usage_is_the_platform_usage_reporter_body() -> None:
    body = json.loads(render("billing-usage", event("chat.usage_delta", DELTA)).content)
    assert body == {"events": [{
        "event_type": "token_usage", "app_id": "app1", "user_id": "u1",
        "timestamp": "2025-03-04T05:06:07.000000Z",
        "data": {"workflow_id": "wf", "model": "gpt-4o", "input_tokens": 10,
                 "output_tokens": 5, "total_tokens": 15, "invocation_id": "inv-1",
                 "chat_id": "c1", "agent_name": "planner", "cached": False,
                 "duration_sec": 1.5, "event_id": "a1b2c3d4e5f6"},
    }]}


def test_billing_usage_needs_app_and_user() -> None:
    with pytest.raises(FormatError, match=r"data\.app_id"):
        render("billing-usage", event("chat.usage_delta", {**DELTA, "app_id": ""}))
    with pytest.raises(FormatError, match="event_ts"):
        render("billing-usage", event("chat.usage_delta", {**DELTA, "event_ts": "yesterday"}))


def test_insights_events_is_the_insights_ingest_body() -> None:
    ev = event("plugin.execution.complete", {"app_id": "app1", "plugin": "p", "status": "ok"},
               correlationid="corr-9")
    body = render("insights-events", ev, {"env": "staging"})
    assert body.headers == {"X-Correlation-Id": "corr-9"}
    assert json.loads(body.content) == {
        "appId": "app1", "env": "staging", "sentAtUtc": "2025-03-04T05:06:07.890000Z",
        "events": [{"eventId": "01JABC", "t": "2025-03-04T05:06:07.890000Z",
                    "type": "plugin.execution.complete", "severity": "info",
                    "message": "plugin.execution.complete",
                    "data": {"app_id": "app1", "plugin": "p", "status": "ok"}}]}


def test_insights_events_takes_the_app_from_options_and_needs_one() -> None:
    ev = event("module_status", {"status": "up", "severity": "warning", "message": "slow"})
    body = json.loads(render("insights-events", ev, {"app_id": "app9"}).content)
    assert body["appId"] == "app9"
    assert body["events"][0]["severity"] == "warning"
    assert body["events"][0]["message"] == "slow"
    assert render("insights-events", ev, {"app_id": "a"}).headers["X-Correlation-Id"] == "01JABC"
    with pytest.raises(FormatError, match="app_id"):
        render("insights-events", ev)


def test_unknown_formats_name_the_known_ones() -> None:
    with pytest.raises(FormatError) as info:
        render("billing_usage", event("a.b", {}))
    for name in FORMATS:
        assert name in str(info.value)
