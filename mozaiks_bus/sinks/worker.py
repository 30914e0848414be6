"""The sink worker service (``mozaiks-bus worker``): dispatcher, RQ workers, reconciliation.

Contract
--------
One supervisor process runs, on its asyncio loop:

* the **dispatcher** (:mod:`mozaiks_bus.sinks.dispatcher`): one consumer group per sink;
* the **RQ scheduler** for the sink queue (RQ's ``RQScheduler``: lock, heartbeat,
  moving due retries back to the queue, once a second), so retries need no extra
  process; when several supervisors run, one holds the lock and the others stand by;
* the **reconciler** (:mod:`mozaiks_bus.sinks.reconcile`): its own liveness key, a sweep
  every ``sweep_interval_s``, and an immediate sweep when one of its children exits;
* ``processes`` **RQ worker processes** (``rq.SimpleWorker``, JSON serializer, one job
  at a time each, spawned, killed by the kernel if the supervisor dies), each with a
  liveness thread; a child that exits is reconciled and restarted (backing off when it
  keeps dying). Several processes let a hanging endpoint hold one while the others
  serve the other sinks.

``SIGINT``/``SIGTERM`` stop it: the dispatcher drains, the workers finish their current
attempt (RQ's warm shutdown, bounded by the longest sink timeout + 10 s, then SIGKILL:
an attempt cut off there is taken back by the reconciler), the scheduler lock is
released. ``app`` (a :class:`~mozaiks_bus.Bus` with consumers) runs alongside, and so
do ``companions`` (services with async ``start``/``stop``, such as the MassTransit
bridge), started after the sinks and stopped before them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as MpEvent
from typing import Any, Protocol

from rq import SimpleWorker
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from mozaiks_bus._process import die_with_parent
from mozaiks_bus.bus import Bus
from mozaiks_bus.connection import create_sync_any_client, create_sync_client
from mozaiks_bus.connection.availability import Availability
from mozaiks_bus.connection.redis_errors import REDIS_ERRORS
from mozaiks_bus.errors import ConfigError
from mozaiks_bus.settings import BusSettings
from mozaiks_bus.sinks.admin import refuse_cluster
from mozaiks_bus.sinks.config import check_sinks
from mozaiks_bus.sinks.dispatcher import DEFAULT_RESULT_TTL_S, SinkDispatcher, sink_queue
from mozaiks_bus.sinks.job import SinkRuntime, install_runtime
from mozaiks_bus.sinks.reconcile import CHILD_POLL_S, Reconciler

__all__ = ["Companion", "SinkRQWorker", "SinkWorker", "WorkerOptions", "run_worker"]

logger = logging.getLogger("mozaiks_bus.sinks")
READY_TIMEOUT_S = 60.0
LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


class Companion(Protocol):
    """A service the worker runs alongside (the MassTransit bridge)."""

    async def start(self) -> None:
        """Start (may wait for what it needs; the worker can be stopped meanwhile)."""

    async def stop(self) -> None:
        """Stop, draining in-flight work."""


class SinkRQWorker(SimpleWorker):
    """``rq.SimpleWorker`` with its idle heartbeats throttled to one a second.

    RQ refreshes the worker's registration (3 round trips) before and after every dequeue
    and after every job, for a TTL of ``worker_ttl + 60`` (480 s): about half of the
    Redis round trips of a short job. Heartbeats that carry a timeout or a pipeline (job
    start, job monitoring) always go through.
    """

    _last_plain_beat = 0.0

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if timeout is None and pipeline is None:
            moment = time.monotonic()
            if moment - self._last_plain_beat < 1.0:
                return
            self._last_plain_beat = moment
        super().heartbeat(timeout, pipeline)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """Tunables of the worker service (defaults named once, here)."""

    processes: int = 2
    heartbeat_s: float = 2.0
    dead_after_s: float = 10.0
    sweep_interval_s: float = 2.0
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    dispatch_concurrency: int = 16
    maintenance_interval_s: int = 60
    log_level: str = "INFO"
    rq_log_level: str = "WARNING"

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ConfigError("processes", "must be at least 1")
        if not 0 < self.heartbeat_s < self.dead_after_s:
            raise ConfigError("dead_after_s", "must be greater than heartbeat_s (> 0)")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (no orphaned workers); exit at once if
    the parent is already gone."""
    die_with_parent()
    if os.getppid() != parent_pid:
        os._exit(1)


def _child_main(settings_data: dict[str, Any], name: str, *, supervisor: str,
                options: WorkerOptions, parent_pid: int, ready: MpEvent) -> None:
    """Entry of one RQ worker process (spawned)."""
    _die_with_parent(parent_pid)
    _setup_logging(options.log_level)
    settings = BusSettings.model_validate(settings_data)
    client = create_sync_client(str(settings.queue_redis_url),
                                client_name="mozaiks-bus:sinkworker")
    runtime = SinkRuntime(settings, client)
    install_runtime(runtime)
    reconciler = Reconciler(client, settings, dead_after_s=options.dead_after_s)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(options.heartbeat_s):
            try:
                reconciler.heartbeat(name, pid=os.getpid(), supervisor=supervisor)
            except REDIS_ERRORS as exc:
                logger.warning("liveness of %s not refreshed: %s", name, exc)

    # Redis need not be up yet: wait for it here rather than crash-looping
    Availability(settings.queue_redis_url).retry_sync(
        lambda: reconciler.heartbeat(name, pid=os.getpid(), supervisor=supervisor),
        what=f"RQ worker {name}")
    threading.Thread(target=beat, name="liveness", daemon=True).start()
    worker = SinkRQWorker(
        [sink_queue(client, settings.keys)], connection=client, name=name,
        serializer=JSONSerializer, default_result_ttl=options.result_ttl_s,
        maintenance_interval=options.maintenance_interval_s, log_job_description=False,
    )
    ready.set()
    try:
        worker.work(logging_level=options.rq_log_level, with_scheduler=False)
    finally:
        stop.set()
        with contextlib.suppress(*REDIS_ERRORS):
            reconciler.forget(name)
        runtime.close()


@dataclass(slots=True)
class _Child:
    index: int
    generation: int = 0
    name: str = ""
    process: SpawnProcess | None = None
    ready: MpEvent | None = None
    deaths: list[float] = field(default_factory=list)


class SinkWorker:
    """The supervisor (see the module docstring)."""

    def __init__(self, settings: BusSettings, options: WorkerOptions | None = None, *,
                 app: Bus | None = None, companions: tuple[Companion, ...] = ()) -> None:
        url = settings.queue_redis_url
        if not url or url.startswith("memory://"):
            raise ConfigError("broker_url", "the sink worker needs a Redis server "
                              "(redis://, rediss:// or unix://): RQ workers are processes")
        check_sinks(settings)
        self.settings = settings
        self.options = options or WorkerOptions()
        self.app = app
        self.companions = companions
        self.keys = settings.keys
        self.name = f"{self.keys.sink_worker_prefix()}{socket.gethostname()}.{os.getpid()}"
        self.client = create_sync_client(url, client_name="mozaiks-bus:sinks")  # RQ, ledger
        self.broker: Any = self.client if settings.queue_url is None else None  # see _start
        self.reconciler = Reconciler(self.client, settings, dead_after_s=self.options.dead_after_s,
                                     result_ttl=self.options.result_ttl_s)
        self._ctx = multiprocessing.get_context("spawn")
        self._children = [_Child(index) for index in range(self.options.processes)]
        self._stopping = asyncio.Event()
        self._scheduler = RQScheduler(
            [self.keys.sink_queue()], connection=self.client, interval=1,
            serializer=JSONSerializer, name=f"{self.name}.scheduler",
            logging_level=self.options.rq_log_level,
        )

    def request_stop(self) -> None:
        """Stop (from the loop's thread, or a signal handler)."""
        self._stopping.set()

    async def run(self) -> None:
        """Run until :meth:`request_stop`, SIGINT or SIGTERM.

        Redis need not be up first: start-up waits for it (logging what it waits for,
        never exiting for that) and can be stopped meanwhile."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stopping.set)
        bus = Bus(config=self.settings)
        tasks: list[asyncio.Task[None]] = []
        try:
            if not await self._until_stopped(self._start(bus)):
                return
            tasks = [asyncio.create_task(coro) for coro in (
                self._every(self.options.heartbeat_s, self._beat),
                self._every(1.0, self._schedule),
                self._every(self.options.sweep_interval_s, self._sweep),
                self._watch_children(),
            )]
            logger.info("mozaiks-bus worker ready: %d sink(s), %d RQ worker process(es), "
                        "queue %s", len(self.settings.sinks), len(self._children),
                        self.keys.sink_queue())
            await self._stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for companion in self.companions:
                await companion.stop()
            await bus.stop()
            if self.app is not None:
                await self.app.stop()
            await asyncio.to_thread(self._shutdown)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def _start(self, bus: Bus) -> None:
        availability = bus.transport.availability
        await availability.retry(lambda: asyncio.to_thread(refuse_cluster, self.client,
                                                           self.settings),
                                 what="the queue's Redis")
        if self.broker is None:  # made once it answers: a cluster client connects at once
            self.broker = await availability.retry(lambda: asyncio.to_thread(
                create_sync_any_client, str(self.settings.broker_url)), what="the broker")
        dispatcher = SinkDispatcher(bus, self.client,
                                    concurrency=self.options.dispatch_concurrency,
                                    result_ttl=self.options.result_ttl_s, broker=self.broker)
        starts = await availability.retry(lambda: asyncio.to_thread(dispatcher.starts),
                                          what="the sinks' start positions")
        dispatcher.register(starts)
        await availability.retry(lambda: asyncio.to_thread(self._beat), what="the supervisor")
        for child in self._children:
            self._spawn(child)
        await bus.start()
        if self.app is not None:
            await self.app.start()
        for companion in self.companions:
            await companion.start()
        await self._wait_ready()

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` unless a stop comes first; True if it finished."""
        task = asyncio.ensure_future(work)
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False
        task.result()
        return True

    # -- children ---------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        child.generation += 1
        child.name = f"{self.name}.w{child.index}-{child.generation}"
        ready = self._ctx.Event()
        process = self._ctx.Process(
            target=_child_main, name=f"sinkworker-{child.index}", daemon=False,
            args=(self.settings.model_dump(mode="json"), child.name),
            kwargs={"supervisor": self.name, "options": self.options,
                    "parent_pid": os.getpid(), "ready": ready},
        )
        process.start()
        child.process, child.ready = process, ready

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for child in self._children:
            while child.ready is not None and not child.ready.is_set():
                if child.process is not None and child.process.exitcode is not None:
                    raise ConfigError("worker", f"RQ worker process {child.index} exited "
                                      f"with code {child.process.exitcode} at start-up")
                if time.monotonic() > deadline:
                    raise TimeoutError("RQ worker processes did not start in time")
                await asyncio.sleep(0.05)

    async def _watch_children(self) -> None:
        while True:
            await asyncio.sleep(CHILD_POLL_S)
            for child in self._children:
                process = child.process
                if process is None or process.exitcode is None:
                    continue
                seen = time.monotonic()
                logger.warning("RQ worker process %s (pid %s) exited with code %s",
                               child.name, process.pid, process.exitcode)
                try:
                    report = await asyncio.to_thread(self.reconciler.sweep, {child.name})
                    await asyncio.to_thread(self.reconciler.forget, child.name)
                    logger.warning("reconciled %s in %.3fs: %s", child.name,
                                   time.monotonic() - seen, report)
                except Exception as exc:  # noqa: BLE001  # the periodic sweep retries it
                    logger.warning("reconciling %s failed: %s", child.name, exc)
                child.deaths = [t for t in child.deaths if seen - t < 60] + [seen]
                if len(child.deaths) > 3:  # crash loop: wait before the next start
                    await asyncio.sleep(min(30.0, 2.0 ** (len(child.deaths) - 3)))
                self._spawn(child)

    # -- periodic work ----------------------------------------------------------------

    async def _every(self, interval: float, action: Any) -> None:
        while True:
            try:
                await asyncio.to_thread(action)
            except Exception as exc:  # noqa: BLE001  # logged; the loop must survive
                logger.warning("%s failed: %s: %s", action.__name__, type(exc).__name__, exc)
            await asyncio.sleep(interval)

    def _beat(self) -> None:
        self.reconciler.heartbeat(self.name, pid=os.getpid(), role="supervisor")

    def _schedule(self) -> None:
        scheduler = self._scheduler
        if not scheduler.acquired_locks:
            scheduler.acquire_locks()  # type: ignore[no-untyped-call]
        if scheduler.acquired_locks:
            scheduler.heartbeat()  # type: ignore[no-untyped-call]
            scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]

    def _sweep(self) -> None:
        report = self.reconciler.sweep()
        if report.requeued or report.dead_lettered or report.redriven:
            logger.warning("reconciliation sweep: %s", report)

    def _shutdown(self) -> None:
        grace = max((sink.timeout_s for sink in self.settings.sinks), default=0.0) + 10.0
        for child in self._children:
            if child.process is not None and child.process.exitcode is None:
                child.process.terminate()
        deadline = time.monotonic() + grace
        for child in self._children:
            if child.process is not None:
                child.process.join(max(0.0, deadline - time.monotonic()))
                if child.process.exitcode is None:
                    child.process.kill()
                    child.process.join(5.0)
        with contextlib.suppress(*REDIS_ERRORS):
            self._scheduler.release_locks()  # type: ignore[no-untyped-call]
            self._scheduler.register_death()
            self.reconciler.forget(self.name)
            self.reconciler.sweep({child.name for child in self._children})
        self.client.close()
        if self.broker is not None and self.broker is not self.client:
            self.broker.close()


def run_worker(settings: BusSettings, options: WorkerOptions | None = None, *,
               app: Bus | None = None,
               companions: Callable[[], tuple[Companion, ...]] | None = None) -> None:
    """Run the worker service in this process until SIGINT/SIGTERM (blocking).

    ``companions`` builds the companion services on the worker's loop."""
    opts = options or WorkerOptions()
    _setup_logging(opts.log_level)

    async def main() -> None:
        built = companions() if companions is not None else ()
        await SinkWorker(settings, opts, app=app, companions=built).run()

    asyncio.run(main())
