"""Durable delivery under faults: killed consumers, poison events, killed and stopped Redis.

Every test runs against its own private redis-server (it may flush, kill or stop it);
consumer processes are real OS processes (``tests.integration.durable_proc``).
Timing settings are small (min idle 1 s, claim every 0.2 s, block 100 ms) so reclaim is
fast; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mozaiks_bus import BrokerUnavailable, Bus, Event, PublishFailed
from mozaiks_bus.connection import create_sync_any_client, text
from mozaiks_bus.keys import Keys
from mozaiks_bus.retry import RetryPolicy
from tests.integration.durable_proc import calls_key, effects_key
from tests.redis_server import RedisServer
from tests.support import clean_env, make_bus, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TYPE = "orders.created"  # unknown to the catalog: any JSON object, durable by override
GROUP = "billing"


# -- helpers ----------------------------------------------------------------------------




async def publish(bus: Bus, n: int, **attrs: Any) -> Event:
    return await bus.publish(TYPE, {"n": n}, durable=True, fanout=False, **attrs)


async def publish_many(bus: Bus, count: int, publishers: int = 64) -> list[str]:
    """``count`` confirmed publishes by ``publishers`` concurrent tasks; ids by ``n``."""
    ids: list[str] = [""] * count
    numbers = iter(range(count))

    async def worker() -> None:
        for n in numbers:  # shared iterator: each n once
            ids[n] = (await publish(bus, n)).id

    await asyncio.gather(*(worker() for _ in range(publishers)))
    return ids


class Admin:
    """A plain redis-py client for assertions (the test's own view of Redis)."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client: Any = create_sync_any_client(url)  # a RedisCluster for a cluster URL
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.stream = self.keys.stream(TYPE)

    def close(self) -> None:
        self.client.close()

    def groups(self) -> dict[str, dict[str, Any]]:
        if not self.client.exists(self.stream):
            return {}
        return {text(g["name"]): g for g in self.client.xinfo_groups(self.stream)}

    def pending(self, group: str = GROUP) -> int:
        info = self.groups().get(group)
        return -1 if info is None else int(info["pending"])

    def pending_by_consumer(self, group: str = GROUP) -> dict[str, int]:
        summary = self.client.xpending(self.stream, group)
        return {text(c["name"]): int(c["pending"]) for c in summary.get("consumers") or []}

    def dead_letters(self) -> int:
        return int(self.client.xlen(self.keys.dead_letter_stream(TYPE)))

    def calls(self) -> list[str]:
        return [text(v) for v in self.client.lrange(calls_key(self.prefix, TYPE), 0, -1)]

    def calls_len(self) -> int:
        return int(self.client.llen(calls_key(self.prefix, TYPE)))

    def effects(self) -> dict[str, int]:
        raw = self.client.hgetall(effects_key(self.prefix, TYPE))
        return {text(k): int(v) for k, v in raw.items()}

    def effects_len(self) -> int:
        return int(self.client.hlen(effects_key(self.prefix, TYPE)))

    def stream_ids(self) -> set[str]:
        """Event ids (not entry ids) of everything in the stream."""
        found: set[str] = set()
        for _, fields in self.client.xrange(self.stream):
            found.add(Event.from_json(fields[b"e"]).id)
        return found


@pytest.fixture
def admin_factory() -> Iterator[Callable[[str, str], Admin]]:
    made: list[Admin] = []

    def make(url: str, prefix: str) -> Admin:
        made.append(Admin(url, prefix))
        return made[-1]

    yield make
    for admin in made:
        admin.close()


class Proc:
    """A durable_proc consumer process; its stdout and stderr are read by threads."""

    def __init__(self, url: str, prefix: str, *args: str, stdin: bool = False) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.durable_proc", url, prefix, TYPE, *args],
            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            env=clean_env(),
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def stderr_tail(self) -> str:
        return "\n".join(self.err[-30:])

    async def wait_line(self, line: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.out:
            if self.popen.poll() is not None:
                raise AssertionError(f"consumer exited {self.popen.returncode} before "
                                     f"{line!r}:\n{self.stderr_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {line!r} within {timeout}s:\n{self.stderr_tail()}")
            await asyncio.sleep(0.02)

    def go(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write("go\n")
        self.popen.stdin.flush()

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(10)

    async def terminate(self, timeout: float = 20) -> int:
        """SIGTERM, wait (bounded) for the exit and the end of its output."""
        self.popen.terminate()
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"consumer ignored SIGTERM for {timeout}s")
            await asyncio.sleep(0.05)
        for thread in self._threads:
            thread.join(5)
        return int(self.popen.returncode)

    def handled(self) -> list[str]:
        return [line.split()[1] for line in self.out if line.startswith("done ")]

    def started(self) -> list[str]:
        return [line.split()[1] for line in self.out if line.startswith("start ")]

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)
        for thread in self._threads:
            thread.join(5)
        for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def procs() -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def spawn(url: str, prefix: str, *args: str, stdin: bool = False) -> Proc:
        started.append(Proc(url, prefix, *args, stdin=stdin))
        return started[-1]

    yield spawn
    for proc in started:
        proc.close()


# -- 1. SIGKILLed consumer processes ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("guard", [True, False], ids=["guard-exactly-once", "no-guard"])
async def test_sigkilled_consumers_lose_nothing(
    redis_server: RedisServer, key_prefix: str, procs: Callable[..., Proc],
    admin_factory: Callable[[str, str], Admin], guard: bool,
) -> None:
    """10,000 events; the consumer process is SIGKILLed mid-batch twice, a third (each
    with a new consumer name, so the dead ones' entries must be reclaimed) finishes.
    With the guard and effects through ``delivery.tx``: every effect exactly once.
    Without: every event handled at least once."""
    url, count = redis_server.url, 10_000
    admin = admin_factory(url, key_prefix)
    publisher = make_bus(url, key_prefix)
    async with publisher:
        ids = await publish_many(publisher, count)
    assert len(set(ids)) == count
    assert admin.client.xlen(admin.stream) == count

    args = ["--guard", "--mode", "tx"] if guard else ["--mode", "list"]
    done = admin.effects_len if guard else admin.calls_len
    for round_no, kill_at in enumerate((2_000, 5_000)):
        name = f"billing-{round_no}"
        proc = procs(url, key_prefix, "--name", name, "--concurrency", "16", *args)
        await proc.wait_line("ready", 30)
        await wait_for(lambda at=kill_at: done() >= at, 60, f"{kill_at} events handled")
        proc.kill()
        left = admin.pending_by_consumer().get(name, 0)
        assert left > 0, f"{name} was killed with nothing in flight: not mid-batch"
        assert done() < count, "the consumer finished before it was killed"

    final = procs(url, key_prefix, "--name", "billing-final", "--concurrency", "16", *args)
    await final.wait_line("ready", 30)
    await wait_for(lambda: done() >= count and admin.pending() == 0, 60,
                   "every event handled and nothing pending")
    await asyncio.sleep(1.5)  # would anything be handled again (a late reclaim)?
    assert await final.terminate() == 0, final.stderr_tail()

    assert admin.pending() == 0
    assert admin.pending_by_consumer() == {}
    assert admin.dead_letters() == 0
    calls = admin.calls()
    assert set(calls) == set(ids)  # at least once, whatever the guard
    if guard:
        effects = admin.effects()
        assert set(effects) == set(ids)
        twice = {k: v for k, v in effects.items() if v != 1}
        assert not twice, f"{len(twice)} effects not exactly once"
        # the dead consumers had entries in flight: some handlers ran twice (the RPUSH
        # outside the transaction shows it), yet their tx effect happened once
        assert len(calls) >= count


# -- 2. poison event, dead letter, replay to one group --------------------------------------


async def test_poison_event_is_dead_lettered_without_holding_up_others_and_replays(
    redis_server: RedisServer, key_prefix: str, admin_factory: Callable[[str, str], Admin],
) -> None:
    url = redis_server.url
    admin = admin_factory(url, key_prefix)
    bus = make_bus(url, key_prefix)
    fixed = False
    billing: list[tuple[str, float]] = []  # (event id, wall time ms) of successful calls
    billing_attempts: Counter[str] = Counter()
    audit: Counter[str] = Counter()

    @bus.consumer(TYPE, group=GROUP, max_deliveries=3, concurrency=4,
                  retry=RetryPolicy(base_s=0.5, max_s=0.5, jitter=False))
    async def handle_billing(event: Event) -> None:
        billing_attempts[event.id] += 1
        if event.data["n"] == 0 and not fixed:
            raise RuntimeError("cannot bill order 0")
        billing.append((event.id, time.time() * 1000))

    @bus.consumer(TYPE, group="audit", concurrency=4)
    async def handle_audit(event: Event) -> None:
        audit[event.id] += 1

    async with bus:
        poison = await publish(bus, 0)
        others = [(await publish(bus, n)).id for n in range(1, 21)]
        await wait_for(lambda: admin.dead_letters() == 1, 15, "the dead letter")
        assert {eid for eid, _ in billing} == set(others)  # not held up by the poison
        assert billing_attempts[poison.id] == 3

        letters = await bus.streams.dead_letters([TYPE])
        assert len(letters) == 1
        letter = letters[0]
        assert letter.event["id"] == poison.id
        assert letter.group == GROUP
        assert letter.deliveries == 3
        assert "RuntimeError: cannot bill order 0" in letter.error
        assert letter.source_id
        # the others were all handled before the poison was given up (~2 x 0.5 s later)
        assert max(at for _, at in billing) < letter.dead_at_ms
        await wait_for(lambda: admin.pending(GROUP) == 0, 5, "billing to ack everything")

        fixed = True
        await bus.streams.replay_dead_letter(TYPE, letter.id)
        await wait_for(lambda: any(eid == poison.id for eid, _ in billing), 10,
                       "the replayed event")
        await wait_for(lambda: admin.pending(GROUP) == 0 and admin.pending("audit") == 0,
                       5, "both groups to ack the replayed copy")
        await asyncio.sleep(0.5)  # room for a wrong second delivery

    assert [eid for eid, _ in billing].count(poison.id) == 1
    assert billing_attempts[poison.id] == 4  # 3 failures + the replay
    assert admin.dead_letters() == 0
    assert dead_letter_gone(letter.id, admin)
    # the audit group got the original once and skipped the copy replayed for billing
    assert audit == Counter(dict.fromkeys([poison.id, *others], 1))


def dead_letter_gone(letter_id: str, admin: Admin) -> bool:
    """The replayed dead letter is gone from the dead-letter stream."""
    rows = admin.client.xrange(admin.keys.dead_letter_stream(TYPE), min=letter_id,
                               max=letter_id)
    return rows == []


# -- 3. events published before any group existed -------------------------------------------


async def test_events_published_before_any_consumer_are_delivered(
    redis_server: RedisServer, key_prefix: str, admin_factory: Callable[[str, str], Admin],
) -> None:
    url = redis_server.url
    admin = admin_factory(url, key_prefix)
    publisher = make_bus(url, key_prefix)
    async with publisher:
        early = [(await publish(publisher, n)).id for n in range(50)]
    assert admin.client.xlen(admin.stream) == 50
    assert admin.groups() == {}  # no group yet

    got: list[str] = []
    consumer = make_bus(url, key_prefix)
    consumer.consumer(TYPE, group=GROUP)(lambda event: got.append(event.id))
    async with consumer:
        await wait_for(lambda: len(got) >= 50, 10, "the early events")
        late = await publish(consumer, 50)
        await wait_for(lambda: len(got) >= 51, 10, "a later event")
    assert sorted(got) == sorted([*early, late.id])


# -- 4. ten consumer processes start at once on a new stream --------------------------------


@pytest.mark.slow
async def test_ten_consumer_processes_starting_at_once_make_one_group(
    redis_server: RedisServer, key_prefix: str, procs: Callable[..., Proc],
    admin_factory: Callable[[str, str], Admin],
) -> None:
    url = redis_server.url
    admin = admin_factory(url, key_prefix)
    assert not admin.client.exists(admin.stream)  # brand new
    # min idle 5 s: no reclaim is wanted here, and ten processes on a small machine
    # must not lose a heartbeat to CPU starvation
    consumers = [
        procs(url, key_prefix, "--wait-go", "--print", "--mode", "list", "--name", f"c{i}",
              "--concurrency", "4", "--min-idle", "5", stdin=True)
        for i in range(10)
    ]
    for proc in consumers:
        await proc.wait_line("loaded", 60)
    for proc in consumers:  # as close to the same moment as a loop allows
        proc.go()
    for proc in consumers:
        await proc.wait_line("ready", 30)
    groups = admin.groups()
    assert list(groups) == [GROUP]

    count = 500
    bus = make_bus(url, key_prefix)
    async with bus:
        ids = await publish_many(bus, count, publishers=16)
    await wait_for(lambda: admin.calls_len() >= count and admin.pending() == 0, 30,
                   "every event handled")
    await asyncio.sleep(0.5)
    handled: list[str] = []
    for proc in consumers:
        assert await proc.terminate() == 0, proc.stderr_tail()
        assert "stopped" in proc.out
        assert "Traceback" not in "\n".join(proc.err), proc.stderr_tail()
        handled.extend(proc.handled())
    duplicates = [eid for eid, n in Counter(handled).items() if n > 1]
    assert not duplicates
    assert sorted(handled) == sorted(ids)
    assert sum(1 for proc in consumers if proc.handled()) > 1  # the work was shared
    assert list(admin.groups()) == [GROUP]


# -- 5. Redis with AOF SIGKILLed and restarted mid-run --------------------------------------


@pytest.mark.slow
async def test_redis_sigkill_and_restart_loses_no_confirmed_event(
    make_redis_server: Callable[..., RedisServer], key_prefix: str,
    admin_factory: Callable[[str, str], Admin],
) -> None:
    server = make_redis_server(appendonly=True)
    admin = admin_factory(server.url, key_prefix)
    assert admin.client.config_get("appendonly")["appendonly"] == "yes"
    assert admin.client.config_get("appendfsync")["appendfsync"] == "always"

    got: set[str] = set()
    consumer = make_bus(server.url, key_prefix)
    consumer.consumer(TYPE, group=GROUP, concurrency=16)(lambda event: got.add(event.id))
    publisher = make_bus(server.url, key_prefix, publish_timeout_s=2.0)
    confirmed: list[str] = []
    failed: list[str] = []
    stop = asyncio.Event()

    async def publish_loop(worker: int) -> None:
        n = 0
        while not stop.is_set():
            event_id = f"w{worker}-{n}"
            n += 1
            try:
                await publish(publisher, n, id=event_id)
            except (BrokerUnavailable, PublishFailed):
                failed.append(event_id)
                await asyncio.sleep(0.05)
            else:
                confirmed.append(event_id)

    async with consumer, publisher:
        tasks = [asyncio.create_task(publish_loop(w)) for w in range(8)]
        try:
            await wait_for(lambda: len(confirmed) >= 300, 20, "publishing to run")
            server.kill()  # SIGKILL in the middle of the publish run
            before_kill = len(confirmed)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(server.start)  # same port, same dir: AOF reloaded
            await wait_for(lambda: len(confirmed) >= before_kill + 300, 20,
                           "publishing to resume after the restart")
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        await wait_for(lambda: set(confirmed) <= got, 30,
                       "every confirmed event at the consumer")
    assert failed, "no publish failed: the kill did not hit the publish run"
    lost = set(confirmed) - got
    assert not lost
    stored = admin.stream_ids()
    assert set(confirmed) <= stored


# -- 6. Redis stopped for 10 s while publishing ----------------------------------------------


@pytest.mark.slow
async def test_redis_stopped_publish_raises_then_everything_resumes(
    make_redis_server: Callable[..., RedisServer], key_prefix: str,
    admin_factory: Callable[[str, str], Admin],
) -> None:
    # With AOF: a Redis without persistence forgets everything on a stop, so confirmed
    # but not yet consumed events would be lost by design (not by the bus).
    redis_server = make_redis_server(appendonly=True)
    timeout_s, outage_s = 2.0, 10.0
    url = redis_server.url
    admin = admin_factory(url, key_prefix)
    got: set[str] = set()
    consumer = make_bus(url, key_prefix)
    consumer.consumer(TYPE, group=GROUP)(lambda event: got.add(event.id))
    publisher = make_bus(url, key_prefix, publish_timeout_s=timeout_s)
    confirmed: list[str] = []
    failed: list[tuple[str, float, BaseException]] = []  # (id, seconds it took, error)
    outage = {"down": False}
    confirmed_while_down: list[str] = []

    async def publish_loop(worker: int, until: Callable[[], bool]) -> None:
        n = 0
        while not until():
            event_id = f"w{worker}-{n}"
            n += 1
            started = time.monotonic()
            try:
                await publish(publisher, n, id=event_id)
            except (BrokerUnavailable, PublishFailed) as exc:
                failed.append((event_id, time.monotonic() - started, exc))
            else:
                confirmed.append(event_id)
                if outage["down"]:
                    confirmed_while_down.append(event_id)
            await asyncio.sleep(0.05)

    async with consumer, publisher:
        phase = {"done": False}
        tasks = [asyncio.create_task(publish_loop(w, lambda: phase["done"])) for w in range(4)]
        try:
            await wait_for(lambda: len(confirmed) >= 40, 10, "publishing to run")
            await asyncio.to_thread(redis_server.stop)
            outage["down"] = True
            failures_before = len(failed)
            await asyncio.sleep(outage_s)
            during = len(failed) - failures_before
            outage["down"] = False
            up_at = len(confirmed)
            await asyncio.to_thread(redis_server.start)
            await wait_for(lambda: len(confirmed) >= up_at + 40, 15,
                           "publishing to resume after Redis returned")
        finally:
            phase["done"] = True
            await asyncio.gather(*tasks)
        await wait_for(lambda: set(confirmed) <= got, 20,
                       "every confirmed event at the consumer")
    assert during >= 10, "publishing did not go on failing during the outage"
    assert not confirmed_while_down, "publish reported success while Redis was stopped"
    slow = [(eid, took) for eid, took, _ in failed if took > timeout_s + 1.0]
    assert not slow, f"publishes took longer than publish_timeout_s + 1 s to fail: {slow}"
    assert set(confirmed) <= admin.stream_ids()
    assert set(confirmed) <= got


# -- 7. FLUSHALL under a running consumer ---------------------------------------------------


async def test_flushall_recreates_the_group_and_delivery_goes_on(
    redis_server: RedisServer, key_prefix: str, admin_factory: Callable[[str, str], Admin],
) -> None:
    url = redis_server.url
    admin = admin_factory(url, key_prefix)
    got: list[str] = []
    bus = make_bus(url, key_prefix)
    bus.consumer(TYPE, group=GROUP)(lambda event: got.append(event.id))
    async with bus:
        before = [(await publish(bus, n)).id for n in range(5)]
        await wait_for(lambda: len(got) >= 5, 10, "the first events")
        admin.client.flushall()
        await wait_for(lambda: bus.stats.get("groups_recreated") >= 1, 10,
                       "the group to be recreated")
        assert list(admin.groups()) == [GROUP]
        after = [(await publish(bus, n)).id for n in range(5, 10)]
        await wait_for(lambda: len(got) >= 10, 10, "the events published after FLUSHALL")
        await asyncio.sleep(0.3)
    assert sorted(got) == sorted([*before, *after])
    assert bus.stats.get("groups_recreated") == 1


async def test_events_published_right_after_flushall_are_not_skipped(
    redis_server: RedisServer, key_prefix: str, admin_factory: Callable[[str, str], Admin],
) -> None:
    """Published before the consumer notices the flush (the stream is recreated by the
    XADD, without the group): the group is recreated at 0, so they are delivered."""
    url = redis_server.url
    admin = admin_factory(url, key_prefix)
    got: list[str] = []
    bus = make_bus(url, key_prefix, consumer_block_ms=2000)
    bus.consumer(TYPE, group=GROUP)(lambda event: got.append(event.id))
    async with bus:
        first = await publish(bus, 0)
        await wait_for(lambda: got == [first.id], 10, "the first event")
        admin.client.flushall()
        after = [(await publish(bus, n)).id for n in range(1, 6)]
        await wait_for(lambda: len(got) >= 6, 15, "the events published after FLUSHALL")
    assert sorted(got) == sorted([first.id, *after])


# -- 8. a slow handler keeps its claim ------------------------------------------------------


@pytest.mark.slow
async def test_slow_handler_is_not_reclaimed_by_another_live_consumer(
    redis_server: RedisServer, key_prefix: str, procs: Callable[..., Proc],
    admin_factory: Callable[[str, str], Admin],
) -> None:
    url, min_idle = redis_server.url, 1.0
    admin = admin_factory(url, key_prefix)
    consumers = [
        procs(url, key_prefix, "--print", "--mode", "list", "--name", name,
              "--sleep", str(3 * min_idle), "--min-idle", str(min_idle))
        for name in ("slow-a", "slow-b")
    ]
    for proc in consumers:
        await proc.wait_line("ready", 30)
    bus = make_bus(url, key_prefix)
    async with bus:
        ids = [(await publish(bus, n)).id for n in range(4)]
    await wait_for(lambda: admin.calls_len() >= 4, 10, "the handlers to start")
    await wait_for(lambda: admin.pending() == 0, 3 * min_idle + 10, "the slow handlers")
    await asyncio.sleep(min_idle + 1.0)  # a wrong reclaim would show now
    started: list[str] = []
    for proc in consumers:
        assert await proc.terminate() == 0, proc.stderr_tail()
        started.extend(proc.started())
    assert Counter(admin.calls()) == Counter(ids)  # each handler call exactly once
    assert Counter(started) == Counter(ids)
    assert admin.dead_letters() == 0


# -- 9. the processed-id guard: regressions for two bugs found while writing the tests above --


async def test_guard_suppresses_a_duplicate_id_read_while_the_first_is_in_flight(
    redis_server: RedisServer, key_prefix: str, admin_factory: Callable[[str, str], Admin],
) -> None:
    url = redis_server.url
    admin = admin_factory(url, key_prefix)
    effects = effects_key(key_prefix, TYPE)
    bus = make_bus(url, key_prefix)

    @bus.consumer(TYPE, group=GROUP, guard=True, concurrency=4)
    async def handle(event: Event, delivery: Any) -> None:
        await asyncio.sleep(0.5)  # still in flight when the duplicate is read
        delivery.tx.hincrby(effects, event.id, 1)

    async with bus:
        await publish(bus, 1, id="order-1")
        await publish(bus, 1, id="order-1")  # the same event, stored twice
        await wait_for(lambda: admin.client.xlen(admin.stream) == 2
                       and admin.pending() == 0, 10, "both entries acked")
    assert admin.effects() == {"order-1": 1}


async def test_guard_processed_ids_expire_after_processed_ttl_s(
    redis_server: RedisServer, key_prefix: str, admin_factory: Callable[[str, str], Admin],
) -> None:
    url, ttl_s = redis_server.url, 0.5
    admin = admin_factory(url, key_prefix)
    processed = Keys(key_prefix).processed_ids(GROUP, TYPE)
    got: list[str] = []
    bus = make_bus(url, key_prefix, processed_ttl_s=ttl_s, retention_interval_s=0.2)
    bus.consumer(TYPE, group=GROUP, guard=True)(lambda event: got.append(event.id))
    async with bus:
        first = await publish(bus, 1)
        await wait_for(lambda: got == [first.id] and admin.pending() == 0, 10,
                       "the first event")
        assert admin.client.zscore(processed, first.id) is not None  # the guard is on
        await asyncio.sleep(ttl_s + 1.0)
        second = await publish(bus, 2)  # activity, for an implementation that trims on ack
        await wait_for(lambda: len(got) == 2 and admin.pending() == 0, 10, "the second")
        await asyncio.sleep(0.5)
        expired = admin.client.zscore(processed, first.id) is None
        bounded = 0 < admin.client.pttl(processed) <= ttl_s * 1000
    assert second.id in got
    assert expired or bounded, "the processed-id set keeps ids past processed_ttl_s"
