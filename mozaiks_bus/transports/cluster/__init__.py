"""The Redis Cluster transport (``redis+cluster://``, ``rediss+cluster://``).

It is the Redis transport (:mod:`mozaiks_bus.transports.redis`: one batching sender,
one pub/sub listener, the ui scope, the durable clients) with three parts swapped:

* **Sending**: the sender's batches run through a :class:`~.router.ClusterRouter`,
  which sends each primary its share at once and follows MOVED/ASK/TRYAGAIN/CLUSTERDOWN
  and unreachable nodes for up to ``publish_timeout_s``. Per item, an error (or a node
  lost after the write) fails only the items that had a command there.
* **Receiving**: classic PUBLISH reaches every node of a cluster, so the listener holds
  one pub/sub link to one node (fan-out patterns, ui channels and the control channel
  alike) and moves to the next known node when that link fails. The event types keep
  their patterns; what was published while the link was down is lost, as on one Redis,
  and announced by ``bus.fanout_reconnected``. ``route`` counts a control channel's
  subscribers on every node (PUBLISH counts only its own node's).
* **Batches that must be atomic** (``publish_atomic``, the HTTP API): one MULTI when
  every event and mark of the batch hashes to one slot (one durable type, or one chat,
  with marks in the same slot). Otherwise every event is stored first, each event on
  its own nodes, and the marks are written once all were stored: a failure part-way
  answers an error and may leave some of the events stored. A retry with the same ids
  stores those again (at least once, one id per event), never loses one: a mark is
  never written for an event that was not stored. ``publish_once`` claims each mark key
  first (single-key scripts), then stores like ``publish_atomic``.

The durable scope needs nothing else: a type's stream, dead letters and processed ids
share its hash tag, each read loop reads one stream, and every transaction stays in one
slot (:mod:`mozaiks_bus.keys`). A consumer group lost in a failover (NOGROUP) is
recreated by the read loop, as after a flushed Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis import exceptions as rexc
from redis.asyncio import RedisCluster
from redis.crc import key_slot

from mozaiks_bus.connection import (
    cluster_node_urls,
    create_async_any_client,
    parse_broker_url,
    redact_url,
    text,
)
from mozaiks_bus.connection.transactions import CLAIM_IF_EMPTY
from mozaiks_bus.errors import BrokerUnavailable
from mozaiks_bus.event import Event
from mozaiks_bus.keys import KeyMark
from mozaiks_bus.routing import Scope, scope_parts
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.stats import BusStats
from mozaiks_bus.transports.base import RemoteDeliver
from mozaiks_bus.transports.cluster.router import ClusterRouter
from mozaiks_bus.transports.redis import RedisTransport
from mozaiks_bus.transports.redis.items import EventItem

__all__ = ["ClusterTransport"]

logger = logging.getLogger("mozaiks_bus.cluster")

_DROP_OWN_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ClusterTransport(RedisTransport):
    """Every remote scope of one :class:`~mozaiks_bus.Bus` over a Redis Cluster."""

    def __init__(self, url: str, *, settings: BusSettings, stats: BusStats) -> None:
        self._broker = parse_broker_url(url)
        self._listen_index = itertools.count()
        self._listening_at: str | None = None
        self._partitions = settings.partitions
        super().__init__(url, settings=settings, stats=stats)
        self.router: ClusterRouter | None = None

    # -- life cycle ---------------------------------------------------------------------

    async def start(self, deliver: RemoteDeliver) -> None:
        """Create the cluster client and start the sender (through the router) and the
        listener; never fails because the cluster is down (both retry)."""
        self._deliver = deliver
        client = create_async_any_client(
            self.url, client_name=f"mozaiks-bus:{self.settings.service}:send",
        )
        assert isinstance(client, RedisCluster)
        self._client = client
        self.router = ClusterRouter(client, index_key=self.keys.stream_index(),
                                    retry_window_s=self.settings.publish_timeout_s)
        self.sender.start(None, executor=self.router.execute)
        self.listener.start()

    @property
    def cluster(self) -> RedisCluster:
        """The cluster client (use on the bus loop, after start)."""
        client = self.client
        assert isinstance(client, RedisCluster)
        return client

    # -- the parts a cluster changes ------------------------------------------------------

    def _listen_url(self) -> Callable[[bool], str]:
        return self._next_listen_url

    def _next_listen_url(self, failed: bool) -> str:
        """The node to listen on: the same one until its link fails, then the next of
        every node known (discovered ones, then the URL's seeds)."""
        candidates = self._known_nodes()
        if failed or self._listening_at not in candidates:
            self._listening_at = candidates[next(self._listen_index) % len(candidates)]
        return self._listening_at

    def _known_nodes(self) -> list[str]:
        seeds = cluster_node_urls(self._broker)
        found: list[tuple[str, int]] = []
        client = self._client
        if isinstance(client, RedisCluster):
            found = sorted((node.host, int(node.port)) for node in client.get_nodes())
        return list(dict.fromkeys([*cluster_node_urls(self._broker, found), *seeds]))

    def _subscribers(self) -> Callable[[str], Awaitable[int]]:
        return self._count_subscribers

    async def _count_subscribers(self, channel: str) -> int:
        """Subscribers of ``channel`` on every node (``PUBSUB NUMSUB`` per node)."""
        cluster = self.cluster
        total = 0
        for node in cluster.get_nodes():
            try:
                reply: Any = await cluster.execute_command("PUBSUB NUMSUB", channel,
                                                           target_nodes=node)
            except rexc.RedisError:
                continue  # a node down now has no live subscriber of ours
            total += _numsub(reply)
        return total

    # -- batches --------------------------------------------------------------------------

    async def publish_atomic(self, items: Sequence[tuple[Event, Scope, str]],
                             marks: Sequence[KeyMark] = (), *, min_replicas: int = 0) -> None:
        """One MULTI when the whole batch hashes to one slot; else every event, then
        the marks (see the module docstring). Bounded like :meth:`publish`."""
        if len(self._slots(items, marks)) <= 1:
            await super().publish_atomic(items, marks, min_replicas=min_replicas)
            return
        stored = await asyncio.gather(*(
            self.sender.confirm(EventItem(event, scopes, payload, min_replicas=min_replicas),
                                bounded=True)
            for event, scopes, payload in items
        ), return_exceptions=True)
        failed = [outcome for outcome in stored if isinstance(outcome, BaseException)]
        if failed:
            raise failed[0]
        if marks:
            await asyncio.gather(*(self.execute(("SET", mark.key, mark.value, "EX", mark.ttl_s))
                                   for mark in marks))

    async def publish_once(self, items: Sequence[tuple[Event, Scope, str]],
                           marks: Sequence[KeyMark], *, min_replicas: int = 0) -> list[Any]:
        """Claim every mark key (``p`` + the mark's value after its first character,
        for ``publish_timeout_s`` + 10 s), then store the claimed events with their
        marks; if a key holds a value other than its mark's, release the claims and
        store nothing. Per event: ``1`` (stored now), the value found, or None (empty,
        but nothing was stored)."""
        pending_ttl = int(self.settings.publish_timeout_s) + 11
        claims = await asyncio.gather(*(
            self.execute(("EVAL", CLAIM_IF_EMPTY, 1, mark.key, _pending(mark), pending_ttl))
            for mark in marks))
        claimed = [index for index, reply in enumerate(claims) if reply == 1]
        blocked = any(reply != 1 and text(reply) != mark.value
                      for reply, mark in zip(claims, marks, strict=True))
        if blocked:
            await self._drop_claims([marks[i] for i in claimed])
            return [None if reply == 1 else reply for reply in claims]
        try:
            await self.publish_atomic([items[i] for i in claimed], [marks[i] for i in claimed],
                                      min_replicas=min_replicas)
        except BaseException:
            await self._drop_claims([marks[i] for i in claimed])
            raise
        return list(claims)

    async def _drop_claims(self, marks: Sequence[KeyMark]) -> None:
        try:
            await asyncio.gather(*(self.execute(("EVAL", _DROP_OWN_CLAIM, 1, mark.key,
                                                 _pending(mark))) for mark in marks))
        except (rexc.RedisError, OSError, BrokerUnavailable, TimeoutError) as exc:
            logger.warning("could not release %d claims (they expire): %s", len(marks), exc)

    def _slots(self, items: Sequence[tuple[Event, Scope, str]],
               marks: Sequence[KeyMark]) -> set[int]:
        """Every slot the batch writes (the stream index aside: it is not atomic)."""
        slots = {key_slot(mark.key.encode()) for mark in marks}
        for event, scopes, _ in items:
            parts = scope_parts(scopes)
            if self.sender.commands.stores(event.type, parts.durable):
                stream = self._partitions.stream_name(event)
                slots.add(key_slot(self.keys.stream(stream).encode()))
            if parts.ui and event.subject:
                slots.add(key_slot(self.keys.ui_history(event.subject).encode()))
        return slots

    def health(self) -> dict[str, object]:
        """As the Redis transport's, plus the cluster's node count and redirects."""
        found = super().health()
        found["transport"] = "redis-cluster"
        found["url"] = redact_url(self.url)
        client = self._client
        if isinstance(client, RedisCluster):
            found["cluster_nodes"] = len(client.get_nodes())
        if self.router is not None:
            found["cluster_redirects"] = self.router.redirects
        return found


def _pending(mark: KeyMark) -> str:
    return "p" + mark.value[1:]


def _numsub(reply: Any) -> int:
    """``PUBSUB NUMSUB`` answers ``[channel, count]`` (or redis-py's pairs)."""
    if isinstance(reply, dict):
        return sum(int(count) for count in reply.values())
    if isinstance(reply, list) and reply and isinstance(reply[0], tuple | list):
        return sum(int(pair[1]) for pair in reply)
    if isinstance(reply, list) and len(reply) >= 2:
        return int(reply[1])
    return 0
