"""A downstream service as a team would write it: a bus from the environment and two
durable consumers (used by ``test_testing.py`` to show ``mozaiks_bus.testing``)."""

from __future__ import annotations

from mozaiks_bus import Bus, Event, RetryPolicy

bus = Bus.from_env()
QUICK = RetryPolicy(base_s=0.01, max_s=0.05)  # tests need not wait for real backoff


@bus.consumer("chat.usage_summary", group="billing", retry=QUICK, max_deliveries=3)
async def bill(event: Event) -> None:
    """Tell the user when a run used tokens; a run without an app is a bug upstream."""
    if event.data["app_id"] == "":
        raise ValueError("usage without an app_id")
    await bus.publish("notification.created", {
        "notification_id": f"usage-{event.data['event_id']}",
        "user_id": event.data["user_id"], "notification_type": "usage",
        "subject": "Usage recorded", "message": f"{event.data['total_tokens']} tokens",
    })
