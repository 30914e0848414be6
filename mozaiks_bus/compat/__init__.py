"""Drop-in replacements for the mozaiks runtime's event code (one module per seam).

``EventBus`` / ``event_bus`` keep every public method and semantic of the platform's
``mozaiks_infra.event_bus`` (see shared/research/mozaiks-platform.md, sections 1 and 6):

* ``publish(event, data)`` is sync, returns None, never raises, and needs no running
  loop and no Redis. Callbacks get the data dict itself (by reference); sync
  callbacks run inline in registration order; async callbacks run as tasks, retried
  up to 3 times (0.5 s, 1 s, 2 s backoff). With no running loop, async callbacks run on
  a private loop thread instead of failing (the original counted them as failures).
* Names match exactly and may contain ``_``, ``.`` or ``:``; no patterns.
* ``get_stats()``, ``reset_stats()``, ``get_event_history()``, ``on_event``,
  ``connect``/``close`` and the background-processing methods (no-ops, as their
  original never received work) keep their shapes.
* Tolerance: ``publish(event_type=..., data=...)`` (the call form of the platform's
  ``event_bridge.py``) is accepted and returns an already-finished awaitable, so
  ``await bus.publish(event_type=..., data=...)`` works instead of raising TypeError.

With ``MOZAIKS_BROKER_URL`` set, the same calls also reach other processes per the
routing table (callbacks there get the decoded dict). A name that is not a valid
event type, data that is not JSON-safe or that fails its catalog model stays local and
is logged once per event name; the publisher never sees an error.

``BrokerAdapter`` / ``NoOpBroker`` / ``get_broker_adapter()`` follow the platform's
audit design; ``attach_dispatcher()`` forwards the AI runtime dispatcher's events.
"""

from mozaiks_bus.compat.broker import (
    BrokerAdapter,
    NoOpBroker,
    RedisBrokerAdapter,
    get_broker_adapter,
)
from mozaiks_bus.compat.dispatcher import attach_dispatcher
from mozaiks_bus.compat.runtime_bus import EventBus, event_bus

__all__ = [
    "BrokerAdapter",
    "EventBus",
    "NoOpBroker",
    "RedisBrokerAdapter",
    "attach_dispatcher",
    "event_bus",
    "get_broker_adapter",
]
