"""In-process platform events: the ``data`` the mozaiks platform publishes today.

One model per event published through ``mozaiks_infra.event_bus`` at mozaiks-core HEAD
(director.py, settings/notifications managers, ops/signals.py, entitlements/events.py,
the AI event bridge). Field names and types follow the real call sites, so every
existing call validates unchanged:

* ids are strings; ``plugin_executed`` / ``plugin_execution_error`` name the user id
  ``user`` (not ``user_id``), as director.py does;
* a field the publisher always sends is required, so a consumer that indexes it
  (``data["plan"]``) is safe; a field it fills with ``payload.get(...)`` may be None;
* timestamps are ISO 8601 strings (or datetimes in process); ``execution_time`` is a
  float number of seconds;
* extra keys are allowed (see :class:`~mozaiks_bus.catalog.EventModel`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from mozaiks_bus.catalog._registry import EventModel

__all__ = [
    "MODELS",
    "AiArtifactCreated",
    "AllNotificationsRead",
    "ApiError",
    "EntitlementConsumed",
    "EntitlementFeatureBlocked",
    "EntitlementLimitReached",
    "EntitlementPeriodReset",
    "ModuleMetric",
    "ModuleStatus",
    "NotificationPreferencesUpdated",
    "PluginExecuted",
    "PluginExecutionError",
    "PluginSettingsUpdated",
    "ProfileUpdated",
    "SettingsUpdated",
    "SubscriptionCanceled",
    "SubscriptionUpdated",
    "ThemeChanged",
]


# -- user settings and profile ---------------------------------------------------


class SettingsUpdated(EventModel):
    """A user saved a plugin's settings (settings_manager)."""

    event_type: ClassVar[str] = "settings_updated"
    user_id: str
    plugin: str


class NotificationPreferencesUpdated(EventModel):
    """A user's notification preferences changed (settings/notifications managers, API)."""

    event_type: ClassVar[str] = "notification_preferences_updated"
    user_id: str


class AllNotificationsRead(EventModel):
    """A user marked all their notifications read (routes/notifications.py)."""

    event_type: ClassVar[str] = "all_notifications_read"
    user_id: str


class ProfileUpdated(EventModel):
    """A user updated their profile (director.py)."""

    event_type: ClassVar[str] = "profile_updated"
    user_id: str


class ThemeChanged(EventModel):
    """A user picked another UI theme (director.py)."""

    event_type: ClassVar[str] = "theme_changed"
    user_id: str
    theme: str


class PluginSettingsUpdated(EventModel):
    """A user saved a plugin's settings through the runtime API (director.py)."""

    event_type: ClassVar[str] = "plugin_settings_updated"
    user_id: str
    plugin: str


# -- plugins, subscriptions, API errors ------------------------------------------


class PluginExecuted(EventModel):
    """A plugin call succeeded (director.py). ``user`` holds the user id."""

    event_type: ClassVar[str] = "plugin_executed"
    app_id: str
    plugin: str
    user: str = Field(description="The user id (the platform names this key `user`).")
    execution_time: float = Field(description="Seconds the plugin took (wall clock).")


class PluginExecutionError(EventModel):
    """A plugin call raised (director.py). ``user`` holds the user id."""

    event_type: ClassVar[str] = "plugin_execution_error"
    plugin: str
    user: str = Field(description="The user id (the platform names this key `user`).")
    error: str
    execution_time: float = Field(description="Seconds until the failure (wall clock).")


class SubscriptionUpdated(EventModel):
    """A user moved to another subscription plan (director.py)."""

    event_type: ClassVar[str] = "subscription_updated"
    user_id: str
    plan: str


class SubscriptionCanceled(EventModel):
    """A user canceled their subscription (director.py; the name has one "l")."""

    event_type: ClassVar[str] = "subscription_canceled"
    user_id: str


class ApiError(EventModel):
    """An unhandled exception reached the runtime API's exception handler (director.py)."""

    event_type: ClassVar[str] = "api_error"
    path: str = Field(description="The full request URL.")
    method: str
    error: str


# -- ops signals (mozaiks_infra/ops/signals.py) --------------------------------


class ModuleStatus(EventModel):
    """A module reported its status (``emit_module_status``); ops/debug only."""

    event_type: ClassVar[str] = "module_status"
    category: str = "ops"
    severity: str = "debug"
    t: datetime = Field(description="When the status was recorded (ISO 8601, UTC, 'Z').")
    module: str
    enabled: bool
    ok: bool
    lastRunUtc: datetime | None = None  # the platform's camelCase key
    error: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class ModuleMetric(EventModel):
    """A module counter moved (``inc_module_metric``); ``value`` is the running total."""

    event_type: ClassVar[str] = "module_metric"
    category: str = "ops"
    severity: str = "debug"
    t: datetime = Field(description="When the counter moved (ISO 8601, UTC, 'Z').")
    module: str
    metric: str
    delta: int
    value: int = Field(description="The running total after this change.")
    tags: dict[str, str] = Field(default_factory=dict)


# -- entitlements (mozaiks_platform/entitlements/events.py) --------------------


class EntitlementConsumed(EventModel):
    """A user consumed part of a plugin limit."""

    event_type: ClassVar[str] = "entitlement.consumed"
    user_id: str
    plugin: str
    limit_key: str
    amount: int
    used: int = Field(description="Total used in the period after this consumption.")
    remaining: int
    period: str = Field(description="The current period key.")


class EntitlementLimitReached(EventModel):
    """A consumption was blocked because it would exceed a plugin limit."""

    event_type: ClassVar[str] = "entitlement.limit_reached"
    user_id: str
    plugin: str
    limit_key: str
    attempted: int
    limit: int
    period: str = Field(description="The current period key (may be empty).")


class EntitlementFeatureBlocked(EventModel):
    """A feature check failed for the user's tier."""

    event_type: ClassVar[str] = "entitlement.feature_blocked"
    user_id: str
    plugin: str
    feature_key: str
    tier: str


class EntitlementPeriodReset(EventModel):
    """A limit's period rolled over (internal only: never sent to the webhook)."""

    event_type: ClassVar[str] = "entitlement.period_reset"
    user_id: str
    plugin: str
    limit_key: str
    previous_period: str
    new_period: str
    previous_used: int


# -- AI runtime bridge -------------------------------------------------------------


class AiArtifactCreated(EventModel):
    """A workflow produced an artifact (mozaiks_ai bridge/event_bridge.py).

    The bridge fills ``artifact_type``, ``artifact_id`` and ``workflow_name`` with
    ``payload.get(...)``, so each may be None.
    """

    event_type: ClassVar[str] = "ai.artifact.created"
    user_id: str
    app_id: str | None = None
    artifact_type: str | None = None
    artifact_id: str | None = None
    workflow_name: str | None = None


MODELS: tuple[type[EventModel], ...] = (
    SettingsUpdated,
    NotificationPreferencesUpdated,
    AllNotificationsRead,
    ProfileUpdated,
    PluginExecuted,
    PluginExecutionError,
    SubscriptionUpdated,
    SubscriptionCanceled,
    ThemeChanged,
    PluginSettingsUpdated,
    ApiError,
    ModuleStatus,
    ModuleMetric,
    EntitlementConsumed,
    EntitlementLimitReached,
    EntitlementFeatureBlocked,
    EntitlementPeriodReset,
    AiArtifactCreated,
)
"""Every in-process platform model, in the order of the platform's call-site table."""
