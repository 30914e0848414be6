"""A TCP proxy on loopback that the network-fault tests drive into partitions and bad links.

:class:`FaultProxy` listens on 127.0.0.1 (a free port) and forwards every connection to
one upstream port on 127.0.0.1 (a test's own ``redis-server``), on an event loop in a
thread of its own, so a busy test loop never slows the "network". From the test's thread:

* :meth:`FaultProxy.blackhole`: a partition that drops silently. Forwarding stops in
  both directions and every socket stays open (no FIN, no RST): each peer sees a
  half-open TCP connection that simply stops answering. What was already read waits in
  the proxy (a chunk or a few per direction) and the kernel buffers fill, so a writer
  blocks as it would behind a real partition. A connection opened meanwhile is accepted
  (the kernel completes the handshake) but gets no upstream, so the client's first
  command goes unanswered too. ``match`` limits the partition to some links, e.g. the
  pub/sub ones (``lambda link: link.subscribed``).
* :meth:`FaultProxy.heal`: forwarding resumes and what waited flows on, in order, as
  TCP's retransmissions deliver it after a partition shorter than their timeout (the
  peers' own timeouts decide what is still wanted).
* :meth:`FaultProxy.degrade`: added one-way latency on every chunk; per chunk a chance
  that it is "lost", i.e. that direction stalls for :data:`RETRANSMIT_S` with everything
  behind it waiting (head-of-line blocking: how TCP recovers a lost segment); and a
  chance that the link is reset (RST to both peers).
* :meth:`FaultProxy.reset_all`: every link closed with RST.

Only loopback is ever connected to. ``python -m tests.integration.netfault UPSTREAM_PORT``
runs one proxy in the foreground (for trying the CLI through it by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["RETRANSMIT_S", "Degradation", "FaultProxy", "Link", "open_sockets", "rss_mib"]

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
CHUNK = 65536
QUEUE_CHUNKS = 64  # chunks in flight per direction (delayed ones): bounded, then reads wait
RETRANSMIT_S = 0.3  # a "lost" chunk: about TCP's minimum RTO plus the added round trip
CALL_TIMEOUT_S = 10.0
SUBSCRIBE = re.compile(rb"\*\d+\r\n\$\d+\r\n[PS]?SUBSCRIBE\r\n", re.IGNORECASE)
"""A (P/S)SUBSCRIBE command in RESP (not the word inside some payload)."""


@dataclass(frozen=True)
class Degradation:
    """What :meth:`FaultProxy.degrade` does to every chunk: ``delay_s`` one way, a
    ``loss`` chance of a retransmission stall, a ``reset`` chance of RST."""

    delay_s: float = 0.0
    loss: float = 0.0
    reset: float = 0.0


@dataclass(eq=False)
class Link:
    """One client connection and its upstream connection."""

    number: int
    opened_at: float
    subscribed: bool = False  # the client sent (P)SUBSCRIBE: a pub/sub link
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


class FaultProxy:
    """A loopback TCP proxy to ``127.0.0.1:upstream_port`` (see the module docstring).

    Counters (read from any thread): ``accepted`` links, ``resets`` sent,
    ``lost_segments`` stalled. Use as a context manager or call :meth:`start` and
    :meth:`close`.
    """

    def __init__(self, upstream_port: int, *, seed: int = 23) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.accepted = 0
        self.resets = 0
        self.lost_segments = 0
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"fault-proxy-{upstream_port}")
        self._server: asyncio.Server | None = None
        self._changed: asyncio.Condition | None = None
        self._links: set[Link] = set()
        self._rule: Callable[[Link], bool] | None = None
        self._degradation = Degradation()

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<proxy port>``: give it to the client under test."""
        return f"redis://{LOOPBACK}:{self.port}"

    @property
    def links(self) -> int:
        """Links open now."""
        return len(self._links)

    def start(self) -> FaultProxy:
        """Listen (returns once the port is bound)."""
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        """Stop listening, close every link with RST, stop the thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT_S)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def blackhole(self, match: Callable[[Link], bool] | None = None) -> float:
        """Stop forwarding on every link (or those ``match`` accepts), silently; returns
        the ``time.monotonic()`` it began."""
        self._call(self._set_rule(match or (lambda _link: True)))
        return time.monotonic()

    def heal(self) -> float:
        """End a black hole (and any degradation); returns when forwarding resumed."""
        self._degradation = Degradation()
        self._call(self._set_rule(None))
        return time.monotonic()

    def degrade(self, degradation: Degradation) -> None:
        """Apply ``degradation`` to every chunk from now on (:meth:`heal` ends it)."""
        self._degradation = degradation

    def reset_all(self) -> int:
        """Close every open link with RST; returns how many."""
        return self._call(self._reset_all())

    # -- on the proxy's loop ---------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_S)

    async def _listen(self) -> None:
        self._changed = asyncio.Condition()
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        """Close the listener and every link, and end every task of the loop (none may
        be left pending when it closes)."""
        if self._server is not None:
            self._server.close()
        await self._reset_all()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _set_rule(self, rule: Callable[[Link], bool] | None) -> None:
        assert self._changed is not None
        async with self._changed:
            self._rule = rule
            self._changed.notify_all()

    async def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            self._reset(link)
        return len(links)

    def _stalled(self, link: Link) -> bool:
        return self._rule is not None and self._rule(link)

    async def _gate(self, link: Link) -> None:
        """Wait while ``link`` is in a black hole."""
        if self._stalled(link):
            assert self._changed is not None
            async with self._changed:
                await self._changed.wait_for(lambda: not self._stalled(link))

    def _reset(self, link: Link) -> None:
        """RST to both peers (SO_LINGER 0, then abort)."""
        for writer in link.writers:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            writer.transport.abort()
        self.resets += 1
        self._links.discard(link)

    async def _serve(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        link = Link(self.accepted, time.monotonic(), writers=[client_writer])
        self._links.add(link)
        try:
            await self._gate(link)  # a link opened inside a black hole gets no upstream
            try:
                up_reader, up_writer = await asyncio.open_connection(LOOPBACK,
                                                                     self.upstream_port)
            except OSError:
                self._reset(link)  # what a refused connection looks like to the client
                return
            link.writers.append(up_writer)
            pumps = [asyncio.create_task(self._pump(link, client_reader, up_writer,
                                                    outbound=True)),
                     asyncio.create_task(self._pump(link, up_reader, client_writer,
                                                    outbound=False))]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            for pump in pumps:
                pump.cancel()
            failed = [p for p in pumps if p.done() and not p.cancelled() and p.exception()]
            if failed:  # a peer reset or vanished: the other peer gets a reset too
                self._reset(link)
        finally:
            self._links.discard(link)
            for writer in link.writers:
                writer.close()

    async def _pump(self, link: Link, source: asyncio.StreamReader,
                    target: asyncio.StreamWriter, *, outbound: bool) -> None:
        """Forward one direction: read, (maybe) delay, write, through the gate."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        writer = asyncio.create_task(self._deliver(link, queue, target))
        try:
            while True:
                await self._gate(link)
                data = await source.read(CHUNK)
                if outbound and SUBSCRIBE.search(data):
                    link.subscribed = True
                degradation = self._degradation
                if data and degradation.reset and self._random.random() < degradation.reset:
                    self._reset(link)
                    return
                due = self._loop.time() + degradation.delay_s
                if data and degradation.loss and self._random.random() < degradation.loss:
                    self.lost_segments += 1
                    due += RETRANSMIT_S
                await queue.put((due, data))
                if not data:
                    break
            await writer
        finally:
            writer.cancel()

    async def _deliver(self, link: Link, queue: asyncio.Queue[tuple[float, bytes]],
                       target: asyncio.StreamWriter) -> None:
        """Write chunks in order once due (a late one holds up those behind it); an
        empty chunk is the end of the stream, passed on as a half-close."""
        try:
            while True:
                due, data = await queue.get()
                wait = due - self._loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._gate(link)
                if not data:
                    if target.can_write_eof() and not target.is_closing():
                        target.write_eof()
                    return
                target.write(data)
                await target.drain()
        except OSError:  # the target went away: so does the link (the reader then stops)
            self._reset(link)


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux ``/proc``); 0 when unknown."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_sockets(pid: int) -> int:
    """How many sockets process ``pid`` holds open (Linux ``/proc``); 0 when unknown."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0
    count = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            count += fd.readlink().name.startswith("socket:")
    return count


def main(argv: list[str]) -> None:
    """Run one proxy to ``127.0.0.1:argv[0]`` until Ctrl-C; prints its URL."""
    with FaultProxy(int(argv[0])) as proxy:
        sys.stdout.write(proxy.url + "\n")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
