"""A real local HTTP target for sink tests: 127.0.0.1 only, fails on cue, records everything.

``Target()`` starts a threaded HTTP/1.1 server on a free loopback port. Each path has a
script of :class:`Reply` objects consumed one per request, then ``default`` (200 with an
empty JSON body). A reply can hang (until :meth:`Target.release` or ``hang_s``), so a
client timeout can be observed. Every request is recorded (arrival time, method, path,
lower-cased headers, raw body) before the reply is chosen; ``on_request`` (optional)
runs then too, e.g. to kill a worker in the middle of the call.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Recorded", "Reply", "Target"]

HANG_LIMIT_S = 30.0


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"
    hang: bool = False
    hang_s: float = HANG_LIMIT_S
    echo: tuple[str, ...] = ()  # request headers to echo back in a JSON body


@dataclass(frozen=True)
class Recorded:
    at: float  # time.time()
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # socketserver's 5 resets connections under batches of 32
    target: Target

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and closed is expected here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        target = self.server.target
        record = Recorded(time.time(), self.command, self.path,
                          {k.lower(): v for k, v in self.headers.items()}, body)
        reply = target._record(record)
        if reply.hang:
            target._released.wait(reply.hang_s)
        payload = reply.body
        if reply.echo:
            payload = json.dumps({name: record.headers.get(name) for name in reply.echo}).encode()
        with contextlib.suppress(OSError):
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    do_POST = do_PUT = do_PATCH = do_GET = _any


class Target:
    """See the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply]] = {}
        self._defaults: dict[str, Reply] = {}
        self._released = threading.Event()
        self.requests: list[Recorded] = []
        self.on_request: Callable[[Recorded], None] | None = None
        # consulted first: a reply chosen from the request itself (None: the script's)
        self.decide: Callable[[Recorded], Reply | None] | None = None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.target = self
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, replies: list[Reply], default: Reply | None = None) -> None:
        with self._lock:
            self._scripts[path] = list(replies)
            if default is not None:
                self._defaults[path] = default

    def _record(self, record: Recorded) -> Reply:
        with self._lock:
            self.requests.append(record)
            chosen = self.decide(record) if self.decide is not None else None
            script = self._scripts.get(record.path, [])
            reply = chosen or (script.pop(0) if script else
                               self._defaults.get(record.path, Reply()))
        if self.on_request is not None:
            self.on_request(record)
        return reply

    def received(self, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def release(self) -> None:
        """Let every hanging reply (and future ones) answer now."""
        self._released.set()

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                     f"received {[(r.path, r.at) for r in self.received()]}")
            time.sleep(0.02)

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
