"""The typed event catalog: platform call forms validate, bad data names its field."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from mozaiks_bus.catalog import (
    BUILTIN_MODELS,
    CATALOG,
    Catalog,
    ChatStructuredOutputReady,
    DirectMessageSent,
    EventModel,
    HostingProvisioningRequested,
    register,
)
from mozaiks_bus.errors import ConfigError, InvalidEvent

IN_PROCESS = [
    "settings_updated",
    "notification_preferences_updated",
    "all_notifications_read",
    "profile_updated",
    "plugin_executed",
    "plugin_execution_error",
    "subscription_updated",
    "subscription_canceled",
    "theme_changed",
    "plugin_settings_updated",
    "api_error",
    "module_status",
    "module_metric",
    "entitlement.consumed",
    "entitlement.limit_reached",
    "entitlement.feature_blocked",
    "entitlement.period_reset",
    "ai.artifact.created",
]
OTHERS = [
    "chat.run_complete",
    "chat.usage_delta",
    "chat.usage_summary",
    "chat.structured_output_ready",
    "notification.created",
    "plugin.execution.complete",
    "messaging.direct_message_sent",
    "hosting.provisioning_requested",
    "hosting.provisioning_completed",
    "hosting.provisioning_failed",
]
URNS = {
    "messaging.direct_message_sent": "urn:message:EventBus.Messages.Events:DirectMessageSentEvent",
    "hosting.provisioning_requested": (
        "urn:message:EventBus.Messages.Events:HostingProvisioningRequestedEvent"
    ),
    "hosting.provisioning_completed": (
        "urn:message:EventBus.Messages.Events:HostingProvisioningCompletedEvent"
    ),
    "hosting.provisioning_failed": (
        "urn:message:EventBus.Messages.Events:HostingProvisioningFailedEvent"
    ),
}

NOW_Z = datetime.now(UTC).isoformat().replace("+00:00", "Z")

# The data dicts exactly as the platform's call sites build them (research §1).
PLATFORM_CALLS: dict[str, dict[str, Any]] = {
    "settings_updated": {"user_id": "u1", "plugin": "notes"},
    "notification_preferences_updated": {"user_id": "u1"},
    "all_notifications_read": {"user_id": "u1"},
    "profile_updated": {"user_id": "u1"},
    "plugin_executed": {
        "app_id": "dev_app",
        "plugin": "notes",
        "user": "u1",
        "execution_time": 0.0123,
    },
    "plugin_execution_error": {
        "plugin": "notes",
        "user": "u1",
        "error": "boom",
        "execution_time": 1.5,
    },
    "subscription_updated": {"user_id": "u1", "plan": "pro"},
    "subscription_canceled": {"user_id": "u1"},
    "theme_changed": {"user_id": "u1", "theme": "dark"},
    "plugin_settings_updated": {"user_id": "u1", "plugin": "notes"},
    "api_error": {"path": "http://host/api/x?y=1", "method": "POST", "error": "boom"},
    "module_status": {
        "category": "ops",
        "severity": "debug",
        "t": NOW_Z,
        "module": "scheduler",
        "enabled": True,
        "ok": True,
        "lastRunUtc": None,
        "error": None,
        "details": {},
    },
    "module_metric": {
        "category": "ops",
        "severity": "debug",
        "t": NOW_Z,
        "module": "scheduler",
        "metric": "jobs_started",
        "delta": 1,
        "value": 7,
        "tags": {"queue": "default"},
    },
    "entitlement.consumed": {
        "user_id": "u1",
        "plugin": "notes",
        "limit_key": "notes_per_month",
        "amount": 1,
        "used": 4,
        "remaining": 6,
        "period": "2026-02",
    },
    "entitlement.limit_reached": {
        "user_id": "u1",
        "plugin": "notes",
        "limit_key": "unknown",
        "attempted": 1,
        "limit": 0,
        "period": "",
    },
    "entitlement.feature_blocked": {
        "user_id": "u1",
        "plugin": "notes",
        "feature_key": "export",
        "tier": "free",
    },
    "entitlement.period_reset": {
        "user_id": "u1",
        "plugin": "notes",
        "limit_key": "notes_per_month",
        "previous_period": "2026-01",
        "new_period": "2026-02",
        "previous_used": 10,
    },
    "ai.artifact.created": {
        "user_id": "u1",
        "app_id": "dev_app",
        "artifact_type": None,
        "artifact_id": "a1",
        "workflow_name": None,
    },
}

OTHER_CALLS: dict[str, dict[str, Any]] = {
    "chat.run_complete": {
        "chat_id": "c1",
        "workflow_name": "wf",
        "app_id": "app",
        "user_id": "u1",
        "status": "completed",
    },
    "chat.usage_delta": {
        "event_id": "0123456789ab",
        "event_ts": datetime.now(UTC).isoformat(),
        "chat_id": "c1",
        "app_id": "app",
        "user_id": "u1",
        "workflow_name": "wf",
        "agent_name": None,
        "model_name": "gpt-4o",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cached": False,
        "duration_sec": 0.8,
        "invocation_id": None,
        "build_id": None,
        "cached_prompt_tokens": 0,
    },
    "chat.usage_summary": {
        "event_id": "0123456789ab",
        "event_ts": datetime.now(UTC).isoformat(),
        "chat_id": "c1",
        "app_id": "app",
        "user_id": "u1",
        "workflow_name": "wf",
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
    },
    "notification.created": {
        "notification_id": "n1",
        "user_id": "u1",
        "notification_type": "direct_message",
        "subject": "New message",
        "message": "Hi",
        "recipient": "a@example.test",
        "channels": ["in_app", "email"],
        "created_at": NOW_Z,
    },
    "plugin.execution.complete": {
        "app_id": "app",
        "plugin": "notes",
        "user_id": "u1",
        "execution_time": 0.2,
        "status": "ok",
    },
    "messaging.direct_message_sent": {
        "id": str(uuid.uuid4()),
        "createdAt": "2026-03-01T12:00:00.1234567Z",
        "appId": "app",
        "conversationId": "conv",
        "messageId": "m1",
        "senderUserId": "u1",
        "senderName": "Ann",
        "recipientUserId": "u2",
        "contentPreview": "hello",
    },
    "hosting.provisioning_requested": {
        "id": str(uuid.uuid4()),
        "createdAt": NOW_Z,
        "appId": "app",
        "ownerUserId": "u1",
        "payload": {"region": "eu", "size": None},
    },
    "hosting.provisioning_completed": {
        "id": str(uuid.uuid4()),
        "createdAt": NOW_Z,
        "appId": "app",
        "ownerUserId": "u1",
        "provisioningJobId": "job1",
        "jobType": "ProvisionAll",
        "finishedAtUtc": NOW_Z,
        "result": {"url": "https://app.example.test"},
    },
    "hosting.provisioning_failed": {
        "id": str(uuid.uuid4()),
        "createdAt": NOW_Z,
        "appId": "app",
        "ownerUserId": "u1",
        "provisioningJobId": "job1",
        "jobType": "ProvisionAll",
        "finishedAtUtc": NOW_Z,
        "error": "quota",
        "errorType": "QuotaExceeded",
    },
}


def test_catalog_covers_every_listed_event() -> None:
    assert sorted(IN_PROCESS + OTHERS) == CATALOG.types()
    assert len(BUILTIN_MODELS) == len(CATALOG)
    for model in BUILTIN_MODELS:
        assert CATALOG.get(model.event_type) is model


@pytest.mark.parametrize("type_name", IN_PROCESS)
def test_platform_call_forms_validate(type_name: str) -> None:
    CATALOG.validate(type_name, PLATFORM_CALLS[type_name])


@pytest.mark.parametrize("type_name", sorted(OTHER_CALLS))
def test_other_payloads_validate(type_name: str) -> None:
    CATALOG.validate(type_name, OTHER_CALLS[type_name])


def test_extra_keys_are_allowed() -> None:
    CATALOG.validate("settings_updated", {"user_id": "u1", "plugin": "p", "new_key": [1]})


def test_lax_validation_coerces_without_touching_data() -> None:
    data = dict(PLATFORM_CALLS["module_metric"], delta="2")
    CATALOG.validate("module_metric", data)
    assert data["delta"] == "2"


def test_run_complete_from_transport_hook_is_lenient() -> None:
    CATALOG.validate("chat.run_complete", {"chat_id": "c1", "reason": "termination"})
    CATALOG.validate("chat.run_complete", {"chat_id": "c1", "status": "success", "ws_id": 7})
    with pytest.raises(InvalidEvent) as info:
        CATALOG.validate("chat.run_complete", {"status": "completed"})
    assert info.value.field == "data.chat_id"


@pytest.mark.parametrize(
    ("type_name", "data", "field", "message"),
    [
        ("settings_updated", {"plugin": "p"}, "data.user_id", "Field required"),
        ("theme_changed", {"user_id": "u1", "theme": 3}, "data.theme", "valid string"),
        (
            "chat.usage_summary",
            dict(OTHER_CALLS["chat.usage_summary"], prompt_tokens=-1),
            "data.prompt_tokens",
            "greater than or equal to 0",
        ),
        (
            "chat.usage_delta",
            dict(OTHER_CALLS["chat.usage_delta"], total_tokens="many"),
            "data.total_tokens",
            "valid integer",
        ),
        (
            "module_status",
            dict(PLATFORM_CALLS["module_status"], t="yesterday"),
            "data.t",
            "valid datetime",
        ),
        (
            "notification.created",
            dict(OTHER_CALLS["notification.created"], channels=["email", 5]),
            "data.channels.1",
            "valid string",
        ),
        (
            "plugin.execution.complete",
            dict(OTHER_CALLS["plugin.execution.complete"], status="done"),
            "data.status",
            "'ok' or 'error'",
        ),
        (
            "messaging.direct_message_sent",
            dict(OTHER_CALLS["messaging.direct_message_sent"], id="not-a-guid"),
            "data.id",
            "valid UUID",
        ),
        (
            "messaging.direct_message_sent",
            dict(OTHER_CALLS["messaging.direct_message_sent"], recipientUserId=""),
            "data.recipientUserId",
            "at least 1 character",
        ),
    ],
)
def test_invalid_data_names_field_and_rule(
    type_name: str, data: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        CATALOG.validate(type_name, data)
    assert info.value.field == field
    assert message in info.value.rule
    assert repr(type_name) in info.value.rule
    assert field in str(info.value)


def test_missing_field_reports_no_value_and_counts_more_problems() -> None:
    with pytest.raises(InvalidEvent) as info:
        CATALOG.validate("plugin_executed", {})
    assert info.value.field == "data.app_id"
    assert info.value.value is None
    assert "3 more problem(s)" in info.value.rule


def test_non_dict_data_is_rejected_for_any_type() -> None:
    for type_name in ("settings_updated", "no.such.type"):
        with pytest.raises(InvalidEvent) as info:
            CATALOG.validate(type_name, ["user_id"])
        assert info.value.field == "data"
        assert info.value.rule == "must be a JSON object"


def test_unknown_type_accepts_any_dict() -> None:
    assert CATALOG.get("custom.thing") is None
    CATALOG.validate("custom.thing", {})
    CATALOG.validate("custom.thing", {"anything": {"nested": [1, None, object()]}})
    assert not CATALOG.is_local_only("custom.thing")


@pytest.mark.parametrize("type_name", sorted(PLATFORM_CALLS) + sorted(OTHER_CALLS))
def test_validate_leaves_the_dict_alone(type_name: str) -> None:
    data = {**PLATFORM_CALLS, **OTHER_CALLS}[type_name]
    data = copy.deepcopy(data)
    snapshot = copy.deepcopy(data)
    nested = {key: value for key, value in data.items() if isinstance(value, dict | list)}
    CATALOG.validate(type_name, data)
    assert data == snapshot
    for key, value in nested.items():
        assert data[key] is value


def test_structured_output_ready_is_local_only_and_keeps_live_object() -> None:
    class LiveContext:
        pass

    live = LiveContext()
    data = {
        "kind": "structured_output_ready",
        "agent": "Planner",
        "agent_name": "Planner",
        "model_name": "PlanOutput",
        "structured_data": {"steps": []},
        "auto_tool_mode": True,
        "context": {"chat_id": "c1", "turn_sequence": 3},
        "turn_idempotency_key": "turn-abc",
        "_pattern_context_ref": live,
    }
    CATALOG.validate("chat.structured_output_ready", data)
    assert data["_pattern_context_ref"] is live
    assert CATALOG.is_local_only("chat.structured_output_ready")
    assert ChatStructuredOutputReady.local_only is True
    assert [t for t in CATALOG.types() if CATALOG.is_local_only(t)] == [
        "chat.structured_output_ready"
    ]


def test_json_schema_export() -> None:
    schema = CATALOG.json_schema()
    text = json.dumps(schema)
    assert json.loads(text) == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    events = schema["x-mozaiks-events"]
    assert list(events) == CATALOG.types()
    for type_name, entry in events.items():
        ref = entry["$ref"]
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in schema["$defs"], type_name
        assert entry["description"]
    for type_name, urn in URNS.items():
        assert events[type_name]["x-dotnet-urn"] == urn
        assert urn in text
    assert events["messaging.direct_message_sent"]["x-dotnet-queue"] == (
        "direct-message-sent-queue"
    )
    assert events["chat.structured_output_ready"]["x-local-only"] is True
    assert list(schema["$defs"]) == sorted(schema["$defs"])
    assert json.dumps(CATALOG.json_schema()) == text  # deterministic


def test_dotnet_models_carry_masstransit_names_and_camel_case() -> None:
    assert DirectMessageSent.dotnet_urn == URNS["messaging.direct_message_sent"]
    assert DirectMessageSent.dotnet_queue == "direct-message-sent-queue"
    assert HostingProvisioningRequested.dotnet_queue == "hosting-provisioning-request-queue"
    assert HostingProvisioningRequested.dotnet_urn == URNS["hosting.provisioning_requested"]
    message = HostingProvisioningRequested(appId="app", ownerUserId="u1").model_dump(mode="json")
    assert message["jobType"] == "ProvisionAll"
    assert str(uuid.UUID(message["id"])) == message["id"]
    assert message["createdAt"].endswith("Z")
    CATALOG.validate("hosting.provisioning_requested", message)


class _Custom(EventModel):
    event_type: ClassVar[str] = "custom.created"
    name: str


class _Other(BaseModel):
    name: int


def test_register_custom_model_on_own_catalog() -> None:
    catalog = Catalog()
    catalog.register("custom.created", _Custom)
    catalog.register("custom.created", _Custom)  # same model again: no-op
    assert catalog.types() == ["custom.created"]
    catalog.validate("custom.created", {"name": "x"})
    with pytest.raises(InvalidEvent) as info:
        catalog.validate("custom.created", {})
    assert info.value.field == "data.name"
    with pytest.raises(ConfigError):
        catalog.register("custom.created", _Other)
    assert catalog.get("custom.created") is _Custom
    assert "custom.created" not in CATALOG


def test_register_conflicting_model_on_default_catalog_raises() -> None:
    original = CATALOG.get("settings_updated")
    with pytest.raises(ConfigError) as info:
        register("settings_updated", _Other)
    assert "settings_updated" in str(info.value)
    assert CATALOG.get("settings_updated") is original
    assert original is not None
    register("settings_updated", original)  # re-registering the same model is fine


@pytest.mark.parametrize("bad", ["Bad Name", "x:y", "x{y}", "chat.*", "", "a..b"])
def test_register_rejects_bad_type_names(bad: str) -> None:
    with pytest.raises(ConfigError):
        Catalog().register(bad, _Custom)


def test_register_rejects_non_models() -> None:
    with pytest.raises(ConfigError):
        Catalog().register("custom.x", dict)  # type: ignore[arg-type]
