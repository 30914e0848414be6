"""Real ``mozaiks-bus serve`` processes for the server tests, and a helper process.

:class:`ServeProcess` runs ``python -m mozaiks_bus.cli serve --port P`` with its own
environment (broker URL, prefix, tokens), waits (bounded) until ``/readyz`` answers 200,
and is always stopped: SIGTERM, then SIGKILL; on Linux it also dies with the test
process (PR_SET_PDEATHSIG). :func:`helper` runs ``tests.integration.server_proc``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import redis

from mozaiks_bus._process import die_with_parent
from tests.redis_server import free_port
from tests.support import clean_env

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0

TOKENS = {
    "TEST_TOKEN_ALL": "all-scopes-token-0123456789",
    "TEST_TOKEN_PUB": "publisher-token-0123456789",
    "TEST_TOKEN_ADMIN": "admin-only-token-0123456789",
    "TEST_TOKEN_UI": "ui-only-token-0123456789abc",
}
ALL, PUB, ADMIN, UI = (TOKENS[k] for k in ("TEST_TOKEN_ALL", "TEST_TOKEN_PUB",
                                           "TEST_TOKEN_ADMIN", "TEST_TOKEN_UI"))
TOKEN_CONFIG = [
    {"name": "all", "token_env": "TEST_TOKEN_ALL", "scopes": ["publish", "admin", "ui"]},
    {"name": "pub", "token_env": "TEST_TOKEN_PUB", "scopes": ["publish"],
     "publish_patterns": ["chat.*", "notification.*", "bench.*"]},
    {"name": "admin", "token_env": "TEST_TOKEN_ADMIN", "scopes": ["admin"]},
    {"name": "ui", "token_env": "TEST_TOKEN_UI", "scopes": ["ui"]},
]
ORIGIN = "http://app.example"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}



class ServeProcess:
    """One ``mozaiks-bus serve`` on a free loopback port."""

    def __init__(self, redis_url: str, prefix: str, **settings: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        env = {"MOZAIKS_BROKER_URL": redis_url, "MOZAIKS_BUS_PREFIX": prefix,
               "MOZAIKS_BUS_API_TOKENS": json.dumps(TOKEN_CONFIG),
               "MOZAIKS_BUS_API_ALLOWED_ORIGINS": json.dumps([ORIGIN]),
               "MOZAIKS_BUS_HEALTH_CHECK_INTERVAL_S": "0.5", **TOKENS}
        for name, value in settings.items():
            env[f"MOZAIKS_BUS_{name.upper()}"] = str(value)
        self.env = clean_env(env)
        self.log = Path(tempfile.mkdtemp(prefix="mozaiks-serve-")) / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServeProcess:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mozaiks_bus.cli", "serve", "--port", str(self.port),
                 "--log-level", "warning"],
                cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )
        return self

    def wait_ready(self) -> ServeProcess:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited with {self.proc.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"serve was not ready within {START_TIMEOUT_S}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        shutil.rmtree(self.log.parent, ignore_errors=True)

    def metric(self, name: str) -> float:
        """The sum of every sample of ``name`` in /metrics."""
        text = httpx.get(self.url + "/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                total += float(line.rsplit(" ", 1)[1])
        return total


@contextlib.contextmanager
def serving(redis_url: str, prefix: str, count: int, **settings: Any
            ) -> Iterator[list[ServeProcess]]:
    """``count`` servers started together (in parallel), always stopped."""
    servers = [ServeProcess(redis_url, prefix, **settings) for _ in range(count)]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


def helper(*args: str, redis_url: str, prefix: str) -> subprocess.Popen[str]:
    """``python -m tests.integration.server_proc ARGS`` (stdin/stdout as text pipes)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.server_proc", redis_url, prefix, *args],
        cwd=ROOT, env=clean_env({}), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
    )


def keyspace(redis_url: str, prefix: str) -> dict[str, Any]:
    """Everything stored under ``prefix``, as comparable values."""
    client = redis.Redis.from_url(redis_url)
    try:
        out: dict[str, Any] = {}
        for key in client.scan_iter(match=f"{prefix}:*", count=500):
            kind = client.type(key).decode()
            value: Any
            if kind == "string":
                value = client.get(key)
            elif kind == "stream":
                value = (client.xlen(key), client.xrevrange(key, count=1))
            elif kind == "hash":
                value = client.hgetall(key)
            elif kind == "set":
                value = sorted(client.smembers(key))
            elif kind == "zset":
                value = client.zrange(key, 0, -1, withscores=True)
            else:
                value = kind
            out[key.decode()] = value
        return out
    finally:
        client.close()
