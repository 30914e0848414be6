"""Every Redis key, channel, stream and consumer-group name mozaiks-bus uses.

Nothing else in the package builds a Redis name by hand: operators audit the keyspace
here, tests isolate by prefix, and a Redis ACL can fence one install with ``~<prefix>:*``
and ``&<prefix>:*``. ``P`` is the prefix (``MOZAIKS_BUS_PREFIX``, default ``mozaiks``).

=============================  =================================  =================
method                         name                               cluster slot of
=============================  =================================  =================
``stream(t)``                  ``P:stream:{t}``                   stream ``t``
``dead_letter_stream(t)``      ``P:dlq:{t}``                      stream ``t``
``processed_ids(g, t)``        ``P:processed:g:{t}``              stream ``t``
``fanout_channel(t)``          ``P:fanout:t``                     whole name
``fanout_pattern()``           ``P:fanout:*``                     (PSUBSCRIBE)
``fanout_subscription(p)``     ``P:fanout:p``                     (PSUBSCRIBE)
``stream_index()``             ``P:streams`` (set of types)       whole name
``ui_channel(c)``              ``P:ui:{c'}``                      chat ``c``
``ui_history(c)``              ``P:ui-history:{c'}``              chat ``c``
``dedupe(i)``                  ``P:dedupe:{i'}``                  event id ``i``
``input_request(r)``           ``P:input:{r'}``                   request ``r``
``control_channel(o)``         ``P:ctl:o'``                       whole name
``meta()``                     ``P:meta``                         whole name
``interest()``                 ``P:{interest}:patterns`` (hash)   ``interest``
``interest_version()``         ``P:{interest}:version`` (string)  ``interest``
``group(g)``                   ``g`` (not a key; validated only)  -
``sink_state(s)``              ``P:sink:{s}:state`` (hash)        sink ``s``
``sink_circuit(s)``            ``P:sink:{s}:circuit`` (hash)      sink ``s``
``sink_pending(s)``            ``P:sink:{s}:pending`` (zset)      sink ``s``
``sink_dead_letters(s)``       ``P:sink:{s}:dlq`` (stream)        sink ``s``
``sink_since(s)``              ``P:sink:{s}:since`` (string)      sink ``s``
``sink_mark(s, i)``            ``P:sink:{s}:mark:<sha256>``       sink ``s``
``sink_batch_id(s)``           ``P-sinkbatch-s-<uuid7 hex>`` (RQ) (RQ: ``rq:job:<id>``)
``sink_process(n)``            ``P:sink-proc:{n'}`` (liveness)    process ``n``
``sink_group(s)``              ``sink.s`` (consumer group)        -
``sink_queue()``               ``P-sinks`` (RQ queue name)        (RQ: ``rq:queue:P-sinks``)
``sink_job_id(s, i[, r])``     ``P-sink-s-<sha256 hex>`` (RQ id)  (RQ: ``rq:job:<id>``)
``bridge_group()``             ``bridge.amqp`` (consumer group)   -
``bridges()``                  ``P:bridges`` (zset of instances)  whole name
``bridge_state(n)``            ``P:bridge:{n'}`` (hash, TTL)      instance ``n``
``bridge_since()``             ``P:bridge-since`` (string)        whole name
=============================  =================================  =================

``t`` in the three stream keys is a *stream name*: a type, or one partition of a
partitioned type (``<type>:p<n>``, :mod:`mozaiks_bus.partitions`), which so gets a slot
of its own. The stream index holds stream names.

Why these slots (Redis Cluster hashes only the text inside the first ``{...}``):

* A type's stream, its dead-letter stream and each group's processed-id set share the
  tag ``{t}``: dead-lettering (XADD to the DLQ + XACK on the stream) and ack-and-record
  run as one MULTI or script. Different types hash to different slots, so load spreads
  and no command ever touches two types' streams at once.
* A chat's pub/sub channel and its history stream share ``{c'}``: a script appends to
  the history and publishes in one step (and SPUBLISH inside a script needs the channel
  in the script's slot). Every chat lands on its own slot.
* ``dedupe`` and ``input_request`` are tagged by their own id so they spread. A dedupe
  claim (``SET NX EX``) and its release are single-key; the "done" mark (a plain
  ``SET``) rides in the MULTI that stores the batch, which on one Redis may span any
  slots (on a Cluster the batch is one MULTI only within one slot; else the marks are
  written after every event was stored: :mod:`mozaiks_bus.transports.cluster`).
* A sink's state, circuit, pending set, dead letters and start mark share the tag
  ``{s}`` (sink names are ``[a-z0-9_-]``): a delivery outcome updates several of them in
  one MULTI.
* RQ (the HTTP sink worker) keeps its own keys under ``rq:`` (RQ's namespace; the
  ``RQ_KEY_PREFIX`` environment variable moves them). Our queue name and job ids carry
  the prefix, so installs sharing one Redis never share a queue or a job.
* Fan-out channels carry no tag: classic PUBLISH is cluster-wide, and a move to SPUBLISH
  spreads channels by their full name.

Nothing user-controlled sits unescaped inside braces. Type names are validated by
:func:`mozaiks_bus.event.validate_type` (``A-Z a-z 0-9 _ - .``: no ``{``, ``}``, ``:``,
``*``, ``?``, ``[`` or space, so a type can neither open a hash tag nor fake a partition
suffix or a glob; Redis names are case-sensitive like type names, so ``Order.Created``
and ``order.created`` get distinct keys); group names must match
``[A-Za-z0-9_.-]{1,64}``; chat, event and request ids (``c'``, ``i'``, ``r'``) are
percent-encoded (UTF-8; only ``A-Z a-z 0-9 _ . - ~`` kept), which is injective and leaves
no ``{``, ``}``, ``*``, ``?``, ``[`` or ``:`` in the name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote

import uuid_utils

from mozaiks_bus import names
from mozaiks_bus.errors import ConfigError, InvalidEvent
from mozaiks_bus.event import validate_type
from mozaiks_bus.partitions import validate_stream_name
from mozaiks_bus.patterns import validate_pattern

__all__ = ["ENTRY_EVENT", "ENTRY_GROUP", "MAX_ID_LENGTH", "UI_FRAME_FIELD", "KeyMark", "Keys"]

MAX_ID_LENGTH = 256
# Field names inside entries (not keys, but names in Redis all the same):
ENTRY_EVENT = b"e"  # a durable stream entry: the CloudEvent JSON
ENTRY_GROUP = b"g"  # a replayed entry: the only group that handles it
UI_FRAME_FIELD = "f"  # a ui history entry: the frame JSON


def _sink(name: object) -> str:
    if not names.SINK.matches(name):
        raise ConfigError("sink", f"must be {names.SINK.rule} (got {name!r})")
    return name


def _escape(field: str, value: object) -> str:
    """Percent-encode a user-controlled id so it is safe inside a hash tag."""
    if not isinstance(value, str) or not value:
        raise InvalidEvent(field, "must be a non-empty string", value=value)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidEvent(field, f"must be at most {MAX_ID_LENGTH} characters", value=value)
    try:
        return quote(value, safe="", errors="strict")
    except UnicodeEncodeError:
        raise InvalidEvent(field, "must be valid Unicode text", value=value) from None


class KeyMark(NamedTuple):
    """A key written together with a batch of events, in the same transaction
    (``SET key value EX ttl_s``): the HTTP API's dedupe marks."""

    key: str
    value: str
    ttl_s: int


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis names of one mozaiks-bus install, all under ``prefix``."""

    prefix: str = "mozaiks"

    def __post_init__(self) -> None:
        if not names.PREFIX.matches(self.prefix):
            raise ConfigError("prefix", f"must be {names.PREFIX.rule} (got {self.prefix!r})")

    def stream(self, type_name: str) -> str:
        """The durable stream of one event type (or one partition of it)."""
        return f"{self.prefix}:stream:{{{validate_stream_name(type_name)}}}"

    def dead_letter_stream(self, type_name: str) -> str:
        """Dead letters of one stream; same slot as :meth:`stream`."""
        return f"{self.prefix}:dlq:{{{validate_stream_name(type_name)}}}"

    def processed_ids(self, group: str, type_name: str) -> str:
        """Ids a group has finished in one stream; same slot as :meth:`stream`."""
        return (f"{self.prefix}:processed:{self.group(group)}:"
                f"{{{validate_stream_name(type_name)}}}")

    @staticmethod
    def group(name: str) -> str:
        """A consumer-group name (not a key), returned once validated."""
        if not names.GROUP.matches(name):
            raise ConfigError("group", f"must be {names.GROUP.rule} (got {name!r})")
        return name

    def fanout_channel(self, type_name: str) -> str:
        """The pub/sub channel of one event type (one channel per type)."""
        return f"{self.prefix}:fanout:{validate_type(type_name)}"

    def fanout_subscription(self, pattern: str) -> str:
        """The PSUBSCRIBE pattern for a subscription pattern (see mozaiks_bus.patterns)."""
        return f"{self.prefix}:fanout:{validate_pattern(pattern)}"

    def fanout_type(self, channel: bytes) -> str:
        """The event type a fan-out channel (as received, bytes) carries."""
        return channel[len(self.prefix) + 8:].decode()  # len(":fanout:") == 8

    def stream_index(self) -> str:
        """A set of the event types that have a durable stream (no KEYS/SCAN needed)."""
        return f"{self.prefix}:streams"

    def fanout_pattern(self) -> str:
        """A PSUBSCRIBE pattern matching every fan-out channel of this prefix."""
        return f"{self.prefix}:fanout:*"

    def ui_channel(self, chat_id: str) -> str:
        """The pub/sub channel of one chat's WebSockets."""
        return f"{self.prefix}:ui:{{{_escape('chat_id', chat_id)}}}"

    def ui_history(self, chat_id: str) -> str:
        """One chat's short history stream; same slot as :meth:`ui_channel`."""
        return f"{self.prefix}:ui-history:{{{_escape('chat_id', chat_id)}}}"

    def dedupe(self, event_id: str) -> str:
        """The dedupe claim of one event id (``SET NX EX``)."""
        return f"{self.prefix}:dedupe:{{{_escape('id', event_id)}}}"

    def input_request(self, request_id: str) -> str:
        """A pending user-input (or UI-tool) request."""
        return f"{self.prefix}:input:{{{_escape('request_id', request_id)}}}"

    def control_channel(self, origin: str) -> str:
        """The private channel of one transport instance (cross-process input routing)."""
        return f"{self.prefix}:ctl:{_escape('origin', origin)}"

    def meta(self) -> str:
        """Install-wide metadata (a hash: schema version and the like)."""
        return f"{self.prefix}:meta"

    def interest(self) -> str:
        """Declared interest (a hash): ``<pattern>\\t<group>`` -> when it was declared;
        every publisher stores the types it matches (:mod:`mozaiks_bus.interest`)."""
        return f"{self.prefix}:{{interest}}:patterns"

    def interest_version(self) -> str:
        """Bumped on each declaration: publishers re-read :meth:`interest` when it moves."""
        return f"{self.prefix}:{{interest}}:version"

    # -- HTTP sinks (mozaiks_bus.sinks) -------------------------------------------------

    def sink_state(self, sink: str) -> str:
        """A sink's counters and last outcome (a hash)."""
        return f"{self.prefix}:sink:{{{_sink(sink)}}}:state"

    def sink_circuit(self, sink: str) -> str:
        """A sink's circuit breaker (a hash shared by every worker)."""
        return f"{self.prefix}:sink:{{{_sink(sink)}}}:circuit"

    def sink_pending(self, sink: str) -> str:
        """RQ job ids of a sink's unfinished deliveries (a zset scored by enqueue time)."""
        return f"{self.prefix}:sink:{{{_sink(sink)}}}:pending"

    def sink_dead_letters(self, sink: str) -> str:
        """A sink's dead letters (a stream)."""
        return f"{self.prefix}:sink:{{{_sink(sink)}}}:dlq"

    def sink_since(self, sink: str) -> str:
        """The stream id a sink's consumer groups start at (set once, when first seen)."""
        return f"{self.prefix}:sink:{{{_sink(sink)}}}:since"

    def sink_worker_prefix(self) -> str:
        """The RQ worker-name prefix of this install's sink workers (not a key: RQ
        builds its worker keys from the name)."""
        return f"{self.prefix}.sinkworker."

    def sink_process(self, name: str) -> str:
        """Liveness of one sink worker process (a key with a short TTL)."""
        return f"{self.prefix}:sink-proc:{{{_escape('process', name)}}}"

    @staticmethod
    def sink_group(sink: str) -> str:
        """The consumer group of a sink on the durable streams (not a key)."""
        return f"sink.{_sink(sink)}"

    def sink_queue(self) -> str:
        """The RQ queue every sink job goes through (a queue name; RQ builds the key)."""
        return f"{self.prefix}-sinks"

    # -- the MassTransit bridge (mozaiks_bus.amqp) ---------------------------------------

    @staticmethod
    def bridge_group() -> str:
        """The consumer group the bridge reads outbound events with (not a key)."""
        return "bridge.amqp"

    def bridges(self) -> str:
        """Bridge instances (a zset scored by their last report, unix seconds)."""
        return f"{self.prefix}:bridges"

    def bridge_state(self, instance: str) -> str:
        """One bridge instance's report (a hash that expires when it stops reporting)."""
        return f"{self.prefix}:bridge:{{{_escape('instance', instance)}}}"

    def bridge_since(self) -> str:
        """The stream id the bridge's consumer group starts at (set once, first seen)."""
        return f"{self.prefix}:bridge-since"

    def sink_mark(self, sink: str, event_id: str) -> str:
        """Which batch job carries ``event_id`` to ``sink`` (a string with a TTL): the
        dispatcher's dedupe of a redelivered event, and "settled" once it ended."""
        _escape("event_id", event_id)
        digest = hashlib.sha256(event_id.encode()).hexdigest()
        return f"{self.prefix}:sink:{{{_sink(sink)}}}:mark:{digest}"

    def sink_batch_id(self, sink: str) -> str:
        """A new RQ job id for one batch of deliveries to ``sink``."""
        return f"{self.prefix}-sinkbatch-{_sink(sink)}-{uuid_utils.uuid7().hex}"

    def sink_job_id(self, sink: str, event_id: str, replay: str | None = None) -> str:
        """The deterministic RQ job id of one delivery of ``event_id`` to ``sink``.

        A redelivered event maps to the same id, so it never queues a second job; a
        replay of dead letter ``replay`` gets its own id (replaying it twice does not).
        RQ ids allow only ``[A-Za-z0-9_-]``, so the variable part is a SHA-256 digest.
        """
        _escape("event_id", event_id)
        material = "\0".join((self.prefix, _sink(sink), event_id, replay or ""))
        digest = hashlib.sha256(material.encode()).hexdigest()[:40]
        return f"{self.prefix}-sink-{sink}-{digest}"
