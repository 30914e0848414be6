"""Pydantic models and JSON Schemas of the API, with the examples shown at ``/docs``.

An event's ``type`` is described by :data:`mozaiks_bus.event.TYPE_PATTERN`, the very rule
the handler applies (:func:`mozaiks_bus.event.validate_type`), so ``/docs`` cannot state
another one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mozaiks_bus.event import MAX_TYPE_LENGTH, TYPE_PATTERN

__all__ = [
    "ERRORS",
    "DeadLetterOut",
    "DeadLettersOut",
    "ErrorBody",
    "InputAck",
    "PublishResult",
    "ReplayResult",
    "SinksOut",
    "StreamsOut",
    "UiToolResponseIn",
    "UserInputIn",
    "events_request_body",
    "input_request_body",
]

_TEXT = {"type": "string", "minLength": 1, "maxLength": 1024}
_TYPE_DESCRIPTION = (
    "The event type, CloudEvents-style and case-sensitive: dot-separated non-empty segments "
    "of ASCII letters (either case), digits, `_` and `-`, starting with a letter; no "
    "spaces, `*`, `{}`, `:` or control characters."
)
EVENT_EXAMPLE: dict[str, Any] = {
    "specversion": "1.0",
    "id": "01938f6e-7c1a-7b2e-9a51-3f0d2c4b5e61",
    "type": "notification.created",
    "source": "notification-api",
    "time": "2025-01-01T12:00:00Z",
    "subject": "user-42",
    "data": {"notification_id": "n-1", "user_id": "user-42",
             "notification_type": "subscription_updated", "subject": "Welcome to Pro",
             "message": "Your plan is now Pro.", "channels": ["in_app"]},
}
CHAT_EXAMPLE: dict[str, Any] = {
    "specversion": "1.0", "id": "01938f6e-7c1a-7b2e-9a51-3f0d2c4b5e62",
    "type": "chat.text", "source": "insights-api", "subject": "chat-123",
    "data": {"content": "Your report is ready", "agent": "Insights"},
}


def _event_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "title": "CloudEvent",
        "description": "A CloudEvents 1.0 event in structured JSON mode. `id` is the "
                       "dedupe key; `subject` names the chat for `chat.*` types.",
        "required": ["id", "type", "source"],
        "properties": {
            "specversion": {"type": "string", "enum": ["1.0"], "default": "1.0"},
            "id": {"type": "string", "minLength": 1, "maxLength": 256},
            "type": {"type": "string", "pattern": TYPE_PATTERN, "maxLength": MAX_TYPE_LENGTH,
                     "description": _TYPE_DESCRIPTION,
                     "examples": ["order.created", "com.example.order-created"]},
            "source": _TEXT,
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string", "minLength": 1, "maxLength": 256},
            "datacontenttype": {"type": "string", "enum": ["application/json"]},
            "data": {"type": "object"},
            "correlationid": _TEXT,
            "causationid": _TEXT,
            "traceparent": _TEXT,
        },
    }


def events_request_body(max_batch: int) -> dict[str, Any]:
    """The ``requestBody`` of ``POST /v1/events`` (the handler parses the raw body)."""
    event = _event_schema()
    batch = {"type": "array", "items": event, "minItems": 1, "maxItems": max_batch}
    return {"requestBody": {
        "required": True,
        "description": "CloudEvents HTTP binding: structured (application/cloudevents+json), "
                       "batched (application/cloudevents-batch+json) or binary mode (ce-* "
                       "headers, the body is data); plain JSON (an object or an array) too.",
        "content": {
            "application/json": {
                "schema": {"oneOf": [event, batch]},
                "examples": {
                    "one": {"summary": "one durable event", "value": EVENT_EXAMPLE},
                    "batch": {"summary": "a batch, stored all or nothing",
                              "value": [EVENT_EXAMPLE, CHAT_EXAMPLE]},
                },
            },
            "application/cloudevents+json": {"schema": event},
            "application/cloudevents-batch+json": {"schema": batch},
        },
    }}


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(examples=["invalid_event"])
    message: str = Field(examples=[f"[0].type: must match {TYPE_PATTERN}"])
    field: str | None = Field(default=None, examples=["[0].type"])
    rule: str | None = None


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "malformed JSON, or nested deeper than api_max_json_depth",
        401: "no token, or an unknown one",
        403: "the token lacks the scope (or may not publish this type)",
        404: "not found",
        409: "an event id seen in the dedupe window with a different body",
        413: "body over api_max_body_bytes, or a batch over api_max_batch",
        422: "an invalid event or parameter (field and rule named)",
        503: "Redis cannot take it now (see Retry-After)",
    }
    return {code: {"model": ErrorBody, "description": text[code]} for code in codes}


ERRORS = _errors


class PublishResult(BaseModel):
    """The ids stored by this request, and those already stored within the window."""

    accepted: list[str] = Field(examples=[[EVENT_EXAMPLE["id"]]])
    duplicates: list[str] = Field(examples=[[]])


class UserInputIn(BaseModel):
    """A user's answer to an input request (``bus.ui.register_input_request``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"input_request_id": "req-7", "text": "yes, go ahead"}]})

    input_request_id: str = Field(min_length=1, max_length=256)
    text: str


class UiToolResponseIn(BaseModel):
    """A UI tool's response (``bus.ui.wait_for_response``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"event_id": "tool-3", "response": {"approved": True}}]})

    event_id: str = Field(min_length=1, max_length=256)
    response: Any = None


def input_request_body() -> dict[str, Any]:
    """The ``requestBody`` of ``POST /v1/input``."""
    schemas = [UserInputIn.model_json_schema(), UiToolResponseIn.model_json_schema()]
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"oneOf": schemas},
        "examples": {
            "user_input": {"value": {"input_request_id": "req-7", "text": "yes"}},
            "ui_tool_response": {"value": {"event_id": "tool-3",
                                           "response": {"approved": True}}},
        },
    }}}}


class InputAck(BaseModel):
    """The input reached its waiter (in whichever process registered it)."""

    kind: str = Field(examples=["user_input"])
    id: str = Field(examples=["req-7"])
    status: str = Field(examples=["accepted"])


class StreamsOut(BaseModel):
    """Every durable stream with its groups (see ``StreamInfo.to_dict``)."""

    streams: list[dict[str, Any]]


class DeadLetterOut(BaseModel):
    """One dead letter (see ``DeadLetter.to_dict``)."""

    id: str
    type: str
    event: dict[str, Any]
    error: str
    group: str
    deliveries: int
    dead_at_ms: int
    source_id: str
    consumer: str


class DeadLettersOut(BaseModel):
    """Dead letters, newest first."""

    dead_letters: list[DeadLetterOut]


class ReplayResult(BaseModel):
    """A dead letter put back on its stream, for its group only."""

    replayed: str
    type: str
    new_id: str
    replayed_all: list[str] = []  # every dead letter replayed (an event id can name several)
    new_ids: list[str] = []


class SinksOut(BaseModel):
    """Every configured sink: ``mozaiks_bus.sinks.SinkState.to_dict()`` (name, url,
    patterns, circuit, queued, dead_letters, counters, last_status, last_error...), and
    the MassTransit bridge when ``amqp_url`` is set (``mozaiks_bus.amqp.bridge_report``:
    instances with ``connected`` and counters, per outbound type ``lag``, ``pending`` and
    ``dead_letters``)."""

    sinks: list[dict[str, Any]]
    bridge: dict[str, Any] | None = None
