"""The typed event catalog: one pydantic model per known event type.

A known type's ``data`` is validated against its model on publish; an unknown type
carries any JSON object. The default catalog, :data:`CATALOG`, holds:

* the platform's in-process events (:mod:`.platform`): ``settings_updated``,
  ``module_status``, ``entitlement.*``, ``ai.artifact.created``...;
* the dispatcher's ``chat.run_complete``, ``chat.usage_delta``, ``chat.usage_summary``
  and the local-only ``chat.structured_output_ready`` (:mod:`.chat`);
* the cross-service ``notification.created`` and ``plugin.execution.complete``
  (:mod:`.crossservice`);
* the .NET contracts ``messaging.direct_message_sent`` and
  ``hosting.provisioning_requested|completed|failed`` (:mod:`.dotnet`).

Use ``CATALOG.validate(type, data)`` (raises InvalidEvent, never touches ``data``),
``CATALOG.get(type)``, ``CATALOG.is_local_only(type)``, ``CATALOG.types()`` and
``CATALOG.json_schema()``; add your own models with :func:`register`.
"""

from __future__ import annotations

from mozaiks_bus.catalog import chat, crossservice, dotnet, platform
from mozaiks_bus.catalog._registry import (
    CATALOG,
    JSON_SCHEMA_DIALECT,
    Catalog,
    EventModel,
    register,
)
from mozaiks_bus.catalog.chat import (
    ChatRunComplete,
    ChatStructuredOutputReady,
    ChatUsageDelta,
    ChatUsageSummary,
)
from mozaiks_bus.catalog.crossservice import NotificationCreated, PluginExecutionComplete
from mozaiks_bus.catalog.dotnet import (
    DIRECT_MESSAGE_SENT_QUEUE,
    HOSTING_PROVISIONING_REQUEST_QUEUE,
    DirectMessageSent,
    DotnetEvent,
    HostingProvisioningCompleted,
    HostingProvisioningFailed,
    HostingProvisioningRequested,
)
from mozaiks_bus.catalog.platform import (
    AiArtifactCreated,
    AllNotificationsRead,
    ApiError,
    EntitlementConsumed,
    EntitlementFeatureBlocked,
    EntitlementLimitReached,
    EntitlementPeriodReset,
    ModuleMetric,
    ModuleStatus,
    NotificationPreferencesUpdated,
    PluginExecuted,
    PluginExecutionError,
    PluginSettingsUpdated,
    ProfileUpdated,
    SettingsUpdated,
    SubscriptionCanceled,
    SubscriptionUpdated,
    ThemeChanged,
)

__all__ = [
    "BUILTIN_MODELS",
    "CATALOG",
    "DIRECT_MESSAGE_SENT_QUEUE",
    "HOSTING_PROVISIONING_REQUEST_QUEUE",
    "JSON_SCHEMA_DIALECT",
    "AiArtifactCreated",
    "AllNotificationsRead",
    "ApiError",
    "Catalog",
    "ChatRunComplete",
    "ChatStructuredOutputReady",
    "ChatUsageDelta",
    "ChatUsageSummary",
    "DirectMessageSent",
    "DotnetEvent",
    "EntitlementConsumed",
    "EntitlementFeatureBlocked",
    "EntitlementLimitReached",
    "EntitlementPeriodReset",
    "EventModel",
    "HostingProvisioningCompleted",
    "HostingProvisioningFailed",
    "HostingProvisioningRequested",
    "ModuleMetric",
    "ModuleStatus",
    "NotificationCreated",
    "NotificationPreferencesUpdated",
    "PluginExecuted",
    "PluginExecutionComplete",
    "PluginExecutionError",
    "PluginSettingsUpdated",
    "ProfileUpdated",
    "SettingsUpdated",
    "SubscriptionCanceled",
    "SubscriptionUpdated",
    "ThemeChanged",
    "register",
]

BUILTIN_MODELS: tuple[type[EventModel], ...] = (
    *platform.MODELS,
    *chat.MODELS,
    *crossservice.MODELS,
    *dotnet.MODELS,
)
"""Every built-in model; each is registered in CATALOG under its ``event_type``."""

CATALOG.register_all(BUILTIN_MODELS)
