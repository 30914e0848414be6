"""The .NET event contracts (``EventBus.Messages.Events``), as MassTransit serializes them.

The mozaiks .NET services share sealed C# classes deriving from ``BaseEvents``
(``Guid Id`` defaulting to ``NewGuid()``, ``DateTime CreatedAt`` defaulting to
``UtcNow``). MassTransit's default serializer writes them in camelCase, so these
models use exactly those JSON names (``id``, ``createdAt``, ``appId``...): the event
``data`` is the MassTransit ``message`` object, byte for byte.

* ``id`` is a GUID (any UUID string form is accepted); ``createdAt`` and
  ``finishedAtUtc`` are ISO 8601 date-times (.NET's 7 fractional digits are fine).
  Both ``id`` and ``createdAt`` may be omitted, as in C#, where the receiver fills
  them; build the model in Python (``model_dump(mode="json")``) to get them filled.
* Bus type names follow the bus naming rule (``messaging.direct_message_sent``...);
  each model carries its C# class name, its MassTransit message URN
  (``urn:message:EventBus.Messages.Events:<Class>``), the exchange MassTransit
  publishes to, and, where the .NET side declares one, its receive queue. The URN and
  exchange names are MassTransit defaults (no custom topology in the .NET repo).
* Identity fields the consumers key on are required; free text defaults to ``""``
  as in C#. Extra keys are allowed (System.Text.Json ignores unknown properties).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import Field

from mozaiks_bus.catalog._registry import EventModel

__all__ = [
    "DIRECT_MESSAGE_SENT_QUEUE",
    "DOTNET_NAMESPACE",
    "HOSTING_PROVISIONING_REQUEST_QUEUE",
    "MASSTRANSIT_CONTENT_TYPE",
    "MODELS",
    "DirectMessageSent",
    "DotnetEvent",
    "HostingProvisioningCompleted",
    "HostingProvisioningFailed",
    "HostingProvisioningRequested",
]

DOTNET_NAMESPACE = "EventBus.Messages.Events"
"""C# namespace of the contracts (unchanged by the 2026 packages refactor)."""
DIRECT_MESSAGE_SENT_QUEUE = "direct-message-sent-queue"
"""``EventBusConstants.DIRECT_MESSAGE_SENT_QUEUE`` (Notification.API consumes it)."""
HOSTING_PROVISIONING_REQUEST_QUEUE = "hosting-provisioning-request-queue"
"""``EventBusConstants.HOSTING_PROVISIONING_REQUEST_QUEUE``."""
MASSTRANSIT_CONTENT_TYPE = "application/vnd.masstransit+json"
"""Content type of MassTransit's JSON envelope (a MassTransit default)."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DotnetEvent(EventModel):
    """``BaseEvents``: the fields every .NET contract shares.

    Subclasses set ``dotnet_message_type`` (the C# class name), ``dotnet_urn``
    (``urn:message:EventBus.Messages.Events:<Class>``), ``dotnet_exchange``
    (``EventBus.Messages.Events:<Class>``) and, when declared, ``dotnet_queue``.
    """

    dotnet_message_type: ClassVar[str] = ""
    dotnet_urn: ClassVar[str] = ""
    dotnet_exchange: ClassVar[str] = ""
    dotnet_queue: ClassVar[str | None] = None

    id: uuid.UUID = Field(default_factory=uuid.uuid4, description="GUID of the message.")
    createdAt: datetime = Field(  # the C# camelCase name
        default_factory=_utcnow, description="When the event was created (UTC)."
    )


class DirectMessageSent(DotnetEvent):
    """``DirectMessageSentEvent``: a user sent a direct message to another user.

    Notification.API turns it into a push notification "New message from
    {senderName}: {contentPreview}"; it drops the message when ``appId`` or
    ``recipientUserId`` is blank, so both must be non-empty here.
    """

    event_type: ClassVar[str] = "messaging.direct_message_sent"
    dotnet_message_type: ClassVar[str] = "DirectMessageSentEvent"
    dotnet_urn: ClassVar[str] = "urn:message:EventBus.Messages.Events:DirectMessageSentEvent"
    dotnet_exchange: ClassVar[str] = "EventBus.Messages.Events:DirectMessageSentEvent"
    dotnet_queue: ClassVar[str | None] = DIRECT_MESSAGE_SENT_QUEUE

    appId: str = Field(min_length=1)
    conversationId: str
    messageId: str
    senderUserId: str
    senderName: str = ""
    recipientUserId: str = Field(min_length=1)
    contentPreview: str = ""


class HostingProvisioningRequested(DotnetEvent):
    """``HostingProvisioningRequestedEvent``: provision hosting for an app."""

    event_type: ClassVar[str] = "hosting.provisioning_requested"
    dotnet_message_type: ClassVar[str] = "HostingProvisioningRequestedEvent"
    dotnet_urn: ClassVar[str] = (
        "urn:message:EventBus.Messages.Events:HostingProvisioningRequestedEvent"
    )
    dotnet_exchange: ClassVar[str] = "EventBus.Messages.Events:HostingProvisioningRequestedEvent"
    dotnet_queue: ClassVar[str | None] = HOSTING_PROVISIONING_REQUEST_QUEUE

    appId: str = Field(min_length=1)
    ownerUserId: str
    appName: str | None = None
    jobType: str = "ProvisionAll"
    provider: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class HostingProvisioningCompleted(DotnetEvent):
    """``HostingProvisioningCompletedEvent``: a provisioning job succeeded."""

    event_type: ClassVar[str] = "hosting.provisioning_completed"
    dotnet_message_type: ClassVar[str] = "HostingProvisioningCompletedEvent"
    dotnet_urn: ClassVar[str] = (
        "urn:message:EventBus.Messages.Events:HostingProvisioningCompletedEvent"
    )
    dotnet_exchange: ClassVar[str] = "EventBus.Messages.Events:HostingProvisioningCompletedEvent"

    appId: str = Field(min_length=1)
    ownerUserId: str
    provisioningJobId: str
    jobType: str
    finishedAtUtc: datetime
    result: dict[str, Any] = Field(default_factory=dict)


class HostingProvisioningFailed(DotnetEvent):
    """``HostingProvisioningFailedEvent``: a provisioning job failed."""

    event_type: ClassVar[str] = "hosting.provisioning_failed"
    dotnet_message_type: ClassVar[str] = "HostingProvisioningFailedEvent"
    dotnet_urn: ClassVar[str] = (
        "urn:message:EventBus.Messages.Events:HostingProvisioningFailedEvent"
    )
    dotnet_exchange: ClassVar[str] = "EventBus.Messages.Events:HostingProvisioningFailedEvent"

    appId: str = Field(min_length=1)
    ownerUserId: str
    provisioningJobId: str
    jobType: str
    finishedAtUtc: datetime
    error: str
    errorType: str | None = None


MODELS: tuple[type[EventModel], ...] = (
    DirectMessageSent,
    HostingProvisioningRequested,
    HostingProvisioningCompleted,
    HostingProvisioningFailed,
)
"""Every .NET contract model."""
