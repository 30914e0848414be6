"""Dispatcher events: the ``chat.*`` payloads of the UnifiedEventDispatcher.

The AI runtime emits these through ``dispatcher.emit(event_type, payload)``. Field
names and types follow the producers (``TokenManager.emit_usage_delta`` /
``emit_usage_summary`` and SimpleTransport's two ``chat.run_complete`` producers):

* token counts are integers >= 0 (the producer clamps them with ``max(0, ...)``);
* ``event_ts`` is an ISO 8601 timestamp (a datetime in process is accepted too);
* extra keys are allowed: newer runtimes add ``build_id``, ``cached_prompt_tokens``,
  ``error_code``, ``route``... (see :class:`~mozaiks_bus.catalog.EventModel`).

``chat.structured_output_ready`` carries a live AG2 ``ContextVariables`` object
(``_pattern_context_ref``) that handlers mutate: its model is ``local_only`` and
the bus must never send it to Redis.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import ConfigDict, Field

from mozaiks_bus.catalog._registry import EventModel

__all__ = [
    "MODELS",
    "ChatRunComplete",
    "ChatStructuredOutputReady",
    "ChatUsageDelta",
    "ChatUsageSummary",
    "TokenCount",
]

TokenCount = Annotated[int, Field(ge=0)]
"""A token count: an integer >= 0."""


class ChatRunComplete(EventModel):
    """A workflow run of a chat ended.

    Two producers, so the model is lenient on purpose. The background runner sends
    ``{chat_id, workflow_name, app_id, user_id, status}`` with status ``"completed"``
    or ``"failed"``. The transport hook re-emits a copy of whatever ``data`` the
    ``chat.run_complete`` UI envelope carried: it adds ``chat_id`` when absent and
    fills ``app_id``, ``user_id``, ``workflow_name`` and ``ws_id`` from the connection
    record only when that record has them. Hence only ``chat_id`` is required, the
    rest may be missing or None, and ``status`` is any string (UI envelopes have
    carried other values, e.g. ``"success"``); consumers should treat anything but
    ``"completed"``/``"success"`` as not successful.
    """

    event_type: ClassVar[str] = "chat.run_complete"
    chat_id: str
    workflow_name: str | None = None
    app_id: str | None = None
    user_id: str | None = None
    status: str | None = Field(
        default=None,
        description='"completed" or "failed" from the background runner; may be absent.',
        examples=["completed", "failed"],
    )
    ws_id: str | int | None = Field(
        default=None, description="The WebSocket connection id (transport hook only)."
    )


class ChatUsageDelta(EventModel):
    """Token usage of one LLM call (``TokenManager.emit_usage_delta``).

    The producer skips the event when any of chat_id, app_id, user_id or
    workflow_name is missing, so those are required here.
    """

    event_type: ClassVar[str] = "chat.usage_delta"
    event_id: str = Field(description="12 hex characters, unique per emission.")
    event_ts: datetime
    chat_id: str
    app_id: str
    user_id: str
    workflow_name: str
    agent_name: str | None = None
    model_name: str | None = None
    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    total_tokens: TokenCount
    cached: bool = False
    duration_sec: float = 0.0
    invocation_id: str | None = None


class ChatUsageSummary(EventModel):
    """Token usage totals of a run (``TokenManager.emit_usage_summary``).

    The usage ingest POSTs this dict as-is to the control plane.
    """

    event_type: ClassVar[str] = "chat.usage_summary"
    event_id: str = Field(description="12 hex characters, unique per emission.")
    event_ts: datetime
    chat_id: str
    app_id: str
    user_id: str
    workflow_name: str
    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    total_tokens: TokenCount


class ChatStructuredOutputReady(EventModel):
    """An agent produced structured output (local only: carries a live object).

    Built by ``build_structured_output_ready_event``; the orchestrator adds
    ``turn_idempotency_key`` and ``_pattern_context_ref``, a live AG2
    ``ContextVariables`` object that handlers mutate. The payload is not
    JSON-serialisable and must stay in the emitting process (``local_only``); any
    extra key, of any Python type, is allowed.
    """

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=True)

    event_type: ClassVar[str] = "chat.structured_output_ready"
    local_only: ClassVar[bool] = True
    kind: str = "structured_output_ready"
    agent: str | None = None
    agent_name: str | None = None
    model_name: str | None = None
    structured_data: Any = None
    auto_tool_mode: bool = False
    context: dict[str, Any] = Field(default_factory=dict)
    turn_idempotency_key: str | None = None


MODELS: tuple[type[EventModel], ...] = (
    ChatRunComplete,
    ChatUsageDelta,
    ChatUsageSummary,
    ChatStructuredOutputReady,
)
"""Every dispatcher chat model."""
