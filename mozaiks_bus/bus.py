"""The :class:`Bus`: one object to publish and subscribe at every scope.

Guarantees (see the README table):

* **local**: every matching subscriber in this process gets the event exactly once;
  sync handlers inline before ``emit``/``publish`` returns, async handlers in order
  through a bounded per-subscription queue.
* **fan-out** (with a broker): at most once to the subscribers of every other process.
* ``emit`` never blocks and never raises for transport trouble: the remote part goes
  through a bounded background sender, and what it could not send is counted.
* ``await publish`` is all-or-nothing: it returns once the broker took the event (or
  at once, when the route is local only), and raises :class:`PublishFailed` /
  :class:`BrokerUnavailable` otherwise; in that case no local handler ran either, so a
  retry is safe.
* Invalid input (bad type name, data failing its catalog model, data that is not
  JSON-serialisable for a remote scope) raises :class:`InvalidEvent` in both calls,
  whether or not a broker is configured, so a bug shows up on a laptop too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar, overload

from mozaiks_bus._loop import BusLoop, run_until_signalled
from mozaiks_bus.catalog import CATALOG, Catalog
from mozaiks_bus.durable import DurableRuntime
from mozaiks_bus.durable.consumer import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_DELIVERIES,
    DEFAULT_READ_COUNT,
    ConsumerHandler,
    ConsumerSpec,
)
from mozaiks_bus.durable.streams import StreamInspector
from mozaiks_bus.errors import BusClosed, ConfigError, InvalidEvent, PublishFailed
from mozaiks_bus.event import Event
from mozaiks_bus.keys import KeyMark
from mozaiks_bus.local import Handler, LocalSubscriptions
from mozaiks_bus.outbound import Outbound, Prepared
from mozaiks_bus.patterns import validate_pattern
from mozaiks_bus.retry import RetryPolicy
from mozaiks_bus.routing import RoutingTable
from mozaiks_bus.settings import BusSettings, load_settings, settings_for
from mozaiks_bus.stats import BusStats
from mozaiks_bus.transports import Transport, create_transport
from mozaiks_bus.ui import UiHub

__all__ = ["Bus"]

logger = logging.getLogger("mozaiks_bus.bus")
H = TypeVar("H", bound=Handler)
T = TypeVar("T")


class Bus:
    """Publish and subscribe across the local, fan-out, durable and ui scopes.

    ``Bus(url=None)`` reads settings from the environment and the optional TOML file
    (``MOZAIKS_BROKER_URL`` unset means local only); ``url``/``service`` given here win.
    A ``transport`` instance may be injected (tests, custom brokers): it then carries
    every remote scope, ui and durable included.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        service: str | None = None,
        config: BusSettings | None = None,
        transport: Transport | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.config = config = settings_for(config, broker_url=url, service=service)
        self.service = config.service
        keys = config.keys
        self.stats = BusStats()
        self._runner = BusLoop(self._start_transport)
        self._local, self._remote_only = (
            LocalSubscriptions(stats=self.stats, loop_getter=self._runner.get,
                            queue_size=config.subscriber_queue_size,
                            policy=config.emit_drop_policy)
            for _ in range(2)
        )
        self.transport: Transport = transport or create_transport(
            config.broker_url, settings=config, stats=self.stats,
        )
        self._closed = False
        self._outbound = Outbound(
            catalog=catalog or CATALOG, keys=keys, source=config.service,
            routing=RoutingTable([(rule.pattern, rule.scopes) for rule in config.routes]),
            remote=self.transport.remote, min_replicas=config.durable_min_replicas,
        )
        self.catalog = self._outbound.catalog
        self.routing = self._outbound.routing
        self.ui = UiHub(self.transport.ui, self._runner, keys=keys,
                        input_ttl_s=int(config.input_request_ttl_s))
        streams = self.transport.streams
        self._durable = None if streams is None else DurableRuntime(
            streams, config, self.stats, availability=self.transport.availability)

    @classmethod
    def from_env(cls) -> Bus:
        """A bus configured from the environment and the optional TOML file."""
        return cls(config=load_settings())

    # -- subscribing --------------------------------------------------------------------

    @overload
    def subscribe(self, pattern: str, handler: H) -> H: ...

    @overload
    def subscribe(self, pattern: str, handler: None = None) -> Callable[[H], H]: ...

    def subscribe(self, pattern: str, handler: H | None = None) -> H | Callable[[H], H]:
        """Subscribe ``handler(event)`` (sync or async) to ``pattern``; also a decorator.

        Local events match at once; with a broker, fan-out events from other processes
        match too. Subscribing the same handler twice means two deliveries.
        """
        validate_pattern(pattern)

        def register(func: H) -> H:
            self._subscribe(self._local, pattern, func)
            return func

        return register if handler is None else register(handler)

    def subscribe_remote(self, pattern: str, handler: Handler) -> Handler:
        """Subscribe to events from *other* processes only.

        For bridges that deliver their own local events (``compat.EventBus``).
        """
        validate_pattern(pattern)
        self._subscribe(self._remote_only, pattern, handler)
        return handler

    def _subscribe(self, dispatcher: LocalSubscriptions, pattern: str, handler: Handler) -> None:
        self._check_open()
        dispatcher.subscribe(pattern, handler)
        if self.transport.remote:
            self.transport.subscribe(pattern)
            self._runner.ensure_started_soon(self._start_failed)

    def unsubscribe(self, pattern: str, handler: Handler) -> bool:
        """Remove one subscription of ``handler`` on ``pattern``; False if there was none."""
        removed = self._local.unsubscribe(pattern, handler) or \
            self._remote_only.unsubscribe(pattern, handler)
        if removed and self.transport.remote:
            self.transport.unsubscribe(pattern)
        return removed

    # -- durable consumers -----------------------------------------------------------------

    def consumer(
        self,
        pattern: str,
        *,
        group: str,
        concurrency: int = DEFAULT_CONCURRENCY,
        prefetch: int | None = None,
        read_count: int = DEFAULT_READ_COUNT,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        retry: RetryPolicy | None = None,
        guard: bool = False,
        start: str = "0",
    ) -> Callable[[ConsumerHandler], ConsumerHandler]:
        """Decorator: a durable handler in consumer group ``group`` (one per service).

        Return = ack; raise = retry with backoff, then dead letter after
        ``max_deliveries`` (see :mod:`mozaiks_bus.durable.consumer` for the whole
        contract). ``read_count`` is how many entries one read asks for (default 100);
        ``prefetch`` how many it holds at most, read ahead for the ``concurrency``
        workers (default two reads' worth). ``guard=True``
        skips ids the group already finished and makes
        ``delivery.tx`` commit with the ack; ``start`` is the stream id a new group
        starts at (``"0"``: everything still in the stream; ``"$"``: only new events).
        Without durable streams (no broker) the handler is a plain local subscriber (no
        retry, nothing persisted), so the same code runs on a laptop with no Redis.
        Once started, every publisher stores what it matches (:mod:`~mozaiks_bus.interest`).
        """

        def register(func: ConsumerHandler) -> ConsumerHandler:
            self._check_open()
            spec = ConsumerSpec(
                pattern, group, func, concurrency=concurrency, prefetch=prefetch,
                read_count=read_count, max_deliveries=max_deliveries,
                retry=retry or RetryPolicy(), guard=guard, start=start,
            )
            if self._durable is None:
                if spec.wants_delivery:
                    raise ConfigError("broker_url", "a consumer taking a Delivery needs a "
                                      "broker (durable streams live in Redis)")
                self._local.subscribe(pattern, func)
                return func
            self._outbound.refuse_local_only(pattern, group)
            self._durable.add(spec)
            if self._runner.start_requested:
                self._runner.soon(self._durable.start())
            return func

        return register

    @property
    def streams(self) -> StreamInspector:
        """Lag, pending, dead letters and replay of the durable streams (needs a broker)."""
        if self._durable is None:
            raise ConfigError("broker_url", "durable streams need a broker (redis://...)")
        return self._durable.inspector

    # -- publishing ---------------------------------------------------------------------

    def emit(self, type: str, data: Mapping[str, Any] | None = None, **attrs: Any) -> Event:
        """Publish without waiting: local handlers run now, the remote part is queued.

        Never blocks, needs no running loop and no reachable broker; transport trouble
        is counted (``dropped_remote``) and logged, never raised. ``attrs`` are event
        attributes (``subject``, ``id``, ``correlationid``...) and the scope overrides
        ``fanout``/``durable``/``ui`` (True adds, False removes).
        """
        event = self._emit(type, data, attrs)
        self._local.deliver(event)
        return event

    def emit_remote(
        self, type: str, data: Mapping[str, Any] | None = None, **attrs: Any
    ) -> Event:
        """Like :meth:`emit`, but only for other processes: local subscribers are skipped.

        For bridges that deliver their own local events (``compat.EventBus``).
        """
        return self._emit(type, data, attrs)

    def _emit(self, type: str, data: Mapping[str, Any] | None, attrs: dict[str, Any]) -> Event:
        event, scopes, payload = self._prepare(type, data, attrs)
        self.stats.published(event.type)
        if payload is not None:
            self._runner.ensure_started_soon(self._start_failed)
            self.transport.publish_nowait(event, scopes, payload)
        return event

    async def publish(
        self,
        type: str,
        data: Mapping[str, Any] | None = None,
        *,
        subject: str | None = None,
        durable: bool | None = None,
        fanout: bool | None = None,
        ui: bool | None = None,
        id: str | None = None,
        min_replicas: int | None = None,
        **attrs: Any,
    ) -> Event:
        """Publish and wait until the broker took the event, then deliver locally.

        Raises :class:`PublishFailed` / :class:`BrokerUnavailable` when the broker did
        not take it within ``publish_timeout_s`` (no local handler ran then), or when
        fewer than ``min_replicas`` (default ``durable_min_replicas``) replicas have it.
        """
        attrs.update(subject=subject, durable=durable, fanout=fanout, ui=ui, id=id)
        event, scopes, payload = self._prepare(type, data, attrs)
        if payload is not None:
            send = self.transport.publish(event, scopes, payload,
                                          min_replicas=self._outbound.replicas(min_replicas))
            await self._confirmed(send, f"{event.type} {event.id}")
        self.stats.published(event.type)
        self._local.deliver(event)
        return event

    async def publish_events(self, events: Sequence[Event], *, marks: Sequence[KeyMark] = (),
                             only_new: bool = False) -> list[Any]:
        """Publish pre-built events (from HTTP, a replay...) all or nothing.

        Each is validated and routed like :meth:`publish`; then every Redis write of the
        batch, and ``marks`` (the HTTP API's dedupe keys), go out in one MULTI/EXEC: all
        stored or none (on a Redis Cluster, within one slot; README "Redis Cluster").
        ``only_new`` (one mark per remote event): the events whose key is empty, and
        nothing if a key holds a value other than its mark's. Returns per event ``1``
        (stored now) or the value found; local handlers run for the stored ones. Raises
        :class:`InvalidEvent` (nothing written) or a transport error."""
        self._check_open()
        prepared = [self._outbound.route(event) for event in events]
        remote = [(event, scopes, payload) for event, scopes, payload in prepared
                  if payload is not None]
        found: list[Any] = [1] * len(prepared)
        if only_new and len(remote) != len(prepared):
            raise InvalidEvent("type", "only_new needs every event to leave the process")
        if remote:
            publish = self.transport.publish_once if only_new else self.transport.publish_atomic
            send = publish(remote, marks, min_replicas=self._outbound.replicas(None))
            found = await self._confirmed(send, f"a batch of {len(events)} events") or found
        for (event, _, _), value in zip(prepared, found, strict=True):
            if value == 1:
                self.stats.published(event.type)
                self._local.deliver(event)
        return found

    async def _confirmed(self, send: Coroutine[Any, Any, Any], what: str) -> Any:
        """Run a transport send on the bus loop within ``publish_timeout_s``."""
        if not self._runner.started_here():
            try:
                await self._runner.ensure_started()
            except BaseException:
                send.close()
                raise
        timeout = self.config.publish_timeout_s
        try:
            if self._runner.started_here():
                return await send  # on the bus loop the transport bounds it (one timer)
            async with asyncio.timeout(timeout):
                return await self._runner.run(send)
        except TimeoutError:
            raise PublishFailed(f"{what} was not confirmed within {timeout}s") from None

    def _prepare(
        self, type: str, data: Mapping[str, Any] | None, attrs: dict[str, Any]
    ) -> Prepared:
        self._check_open()
        return self._outbound.create(type, data, attrs)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything ``emit`` queued so far was handed to the broker (or
        dropped and counted); False if ``timeout`` ran out. Bulk producers call this
        every few hundred emits: it is their backpressure."""
        if not self._runner.start_requested:
            return True
        return await self._runner.run(self.transport.flush(timeout))

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Bind to the running loop, connect the transport and start the consumers
        (idempotent). Returns once every consumer has its groups: while Redis does not
        answer it waits, logging what it waits for, and never fails for that."""
        self._check_open()
        self._runner.bind_running()
        await self._runner.ensure_started()
        if self._durable is not None:
            await self._runner.run(self._durable.start())

    async def _start_transport(self) -> None:
        await self.transport.start(self._on_remote)  # never fails: its loops retry
        if self._durable is not None:  # a bus started by emit/publish runs consumers too
            self._runner.soon(self._durable.start())

    @staticmethod
    def _start_failed(exc: Exception) -> None:
        logger.warning("transport did not start: %s", exc)  # retried on next use

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work, drain local handlers and the transport (bounded), disconnect."""
        if self._closed:
            return
        self._closed = True
        if self._runner.bound is not None:
            run = self._runner.run
            await run(self._local.drain(timeout))
            await run(self._remote_only.drain(timeout))
            if self._runner.start_requested:
                if self._durable is not None:
                    await run(self._durable.stop(timeout))
                await run(self.transport.stop())
        await self._runner.close()

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Start, then run until SIGINT or SIGTERM, then stop (draining in-flight work).

        A signal while start-up still waits for Redis stops it too."""
        await run_until_signalled(self.start, self.stop)

    @property
    def closed(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._closed

    def health(self) -> dict[str, object]:
        """Transport state plus whether the bus is started/closed."""
        state = dict(self.transport.health())
        state.update(started=self._runner.started, closed=self._closed)
        return state

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosed("the bus was stopped; create a new Bus to publish again")

    def _on_remote(self, event: Event) -> None:
        """Called by the transport for each event from another process."""
        self.stats.incr("received_remote")
        self._local.deliver(event)
        self._remote_only.deliver(event)
