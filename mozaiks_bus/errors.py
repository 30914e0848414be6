"""The one exception tree of mozaiks-bus.

Every error the package raises on purpose is a :class:`MozaiksBusError`, so callers
catch one root. Errors from redis-py, httpx and pydantic are translated at the
boundary where they occur; they never leak to callers. The classes defined outside
this module are drawn with their module; ``tests/unit/test_public_surface.py`` walks
every module and fails on an exception class that is missing here or not in the tree.

::

    MozaiksBusError
    ├── InvalidEvent            bad type name, data failing its catalog model, data
    │                           that is not JSON-serialisable for a remote scope
    ├── ConfigError             a bad setting, TOML file or routing rule
    ├── BusClosed               the bus was stopped and takes no more work
    ├── TransportError          Redis (or another transport) could not do what was asked
    │   ├── BrokerUnavailable   the server could not be reached or the link dropped
    │   │   └── RedisServerError  (ops.redis_server) a redis-server we start did not start
    │   ├── PublishFailed       a confirmed publish was not stored / sent
    │   ├── PartialBatch        (transports.redis.commands) some commands of a sender
    │   │                       batch failed (a cluster node lost): per-item outcomes
    │   ├── CrossSlot           (transports.cluster.router) a transaction or script
    │   │                       whose keys are in several cluster slots (also a
    │   │                       redis-py ResponseError, so it travels as a reply)
    │   └── Unsent              (transports.cluster.router) a node's share of a batch
    │                           was not written at all (safe to send again)
    ├── Unprocessable           raised by a durable handler: dead-letter this event now
    ├── EnvelopeError           (amqp.envelope) an AMQP message that is no readable
    │   │                       MassTransit envelope
    │   └── UnknownMessageType  (amqp.envelope) readable, of no inbound contract
    ├── SlowConsumer            (ui.stream) a WebSocket client stopped reading
    ├── HttpError               (server.errors) an HTTP answer other than success
    ├── ServeRefused            (server.serve) an unsafe bind: public without a token
    ├── FormatError             (sinks.formats) an event cannot take a sink's format
    ├── SkipDelivery            (sinks.formats) control flow: this sink skips the event
    ├── SignatureError          (sinks.signing) a Standard Webhooks signature is bad
    ├── DemoFailed              (ops.demo) a step of the tour did not do what it said
    └── UpError                 (ops.up) up cannot start here: a stack runs, a port is taken
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "BusClosed",
    "ConfigError",
    "InvalidEvent",
    "MozaiksBusError",
    "PublishFailed",
    "TransportError",
    "Unprocessable",
]


class MozaiksBusError(Exception):
    """Root of every error mozaiks-bus raises on purpose."""


class InvalidEvent(MozaiksBusError, ValueError):
    """An event was rejected before it reached any transport.

    ``field`` names the offending attribute (``type``, ``data.user_id``...) and
    ``rule`` states the rule it broke, so callers and HTTP handlers can report both.
    """

    def __init__(self, field: str, rule: str, *, value: object = None) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        shown = "" if value is None else f" (got {_shorten(value)})"
        super().__init__(f"invalid event: {field}: {rule}{shown}")


class ConfigError(MozaiksBusError, ValueError):
    """A setting, config file or routing rule is invalid.

    ``field`` names the setting, ``source`` says where it came from (an environment
    variable, or ``path:line``), ``reason`` says what is wrong with it.
    """

    def __init__(self, field: str, reason: str, *, source: str | None = None) -> None:
        self.field = field
        self.reason = reason
        self.source = source
        where = f" [{source}]" if source else ""
        super().__init__(f"invalid configuration: {field}{where}: {reason}")


class BusClosed(MozaiksBusError, RuntimeError):
    """The bus was stopped; it accepts no more publishes or subscriptions."""


class TransportError(MozaiksBusError, ConnectionError):
    """A transport could not do what was asked."""


class BrokerUnavailable(TransportError):
    """The broker could not be reached, or the connection dropped."""


class PublishFailed(TransportError):
    """A confirmed publish was not stored or sent; the event may be retried."""


class Unprocessable(MozaiksBusError):
    """Raised by a durable handler: this event can never succeed, so it is dead-lettered
    at once (no retry; ``dlq replay`` brings it back once the cause is fixed)."""


def _shorten(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
