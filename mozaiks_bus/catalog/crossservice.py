"""Cross-service events the platform lacks today, designed for the durable scope.

* ``notification.created``: a notification was created for a user. It carries what
  the email service's ``POST EMAIL_SERVICE_URL`` body needs today
  (``recipient``, ``subject``, ``message``, ``notification_type``, as
  ``NotificationsManager.send_email`` sends them), so an HTTP sink with
  ``format = "data"`` can deliver it to that service unchanged, plus what the
  Notification API and in-app consumers need (ids, channels, time).
* ``plugin.execution.complete``: one plugin call finished, successfully or not; the
  durable counterpart of the in-process ``plugin_executed`` /
  ``plugin_execution_error`` pair, with the user id under ``user_id``.

Like every built-in model, these allow extra keys (newer producers may add some).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from mozaiks_bus.catalog._registry import EventModel

__all__ = [
    "MODELS",
    "NotificationCreated",
    "PluginExecutionComplete",
]


class NotificationCreated(EventModel):
    """A notification was created for a user; channels decide where it goes.

    ``recipient`` is the email address and is needed only when ``channels``
    includes ``"email"`` (it is not looked up by the bus). ``channels`` None means
    "the user's notification preferences decide". ``subject`` doubles as the
    in-app title.
    """

    event_type: ClassVar[str] = "notification.created"
    notification_id: str = Field(description="Unique id of the notification (idempotency).")
    user_id: str = Field(description="The user the notification is for.")
    app_id: str | None = None
    notification_type: str = Field(
        description="What it is about, e.g. subscription_updated, direct_message.",
        examples=["subscription_updated", "direct_message"],
    )
    subject: str = Field(description="Email subject and in-app title.")
    message: str = Field(description="Plain-text body.")
    recipient: str | None = Field(
        default=None, description="Email address; needed when channels include 'email'."
    )
    channels: list[str] | None = Field(
        default=None,
        description="Delivery channels (in_app, email, push, sms); None: user preferences.",
        examples=[["in_app", "email"]],
    )
    created_at: datetime | None = Field(default=None, description="ISO 8601, UTC.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free-form context (links, ids) for templates."
    )


class PluginExecutionComplete(EventModel):
    """A plugin call finished: ``status`` is ``"ok"`` or ``"error"``.

    ``error`` holds the error text when ``status`` is ``"error"``.
    ``execution_time`` is wall-clock seconds, as the runtime measures it.
    """

    event_type: ClassVar[str] = "plugin.execution.complete"
    app_id: str
    plugin: str
    user_id: str
    execution_time: float = Field(description="Seconds the call took (wall clock).")
    status: Literal["ok", "error"]
    error: str | None = None


MODELS: tuple[type[EventModel], ...] = (NotificationCreated, PluginExecutionComplete)
"""Every cross-service model."""
