"""The one RESP exchange and the one redirect policy, against a scripted connection
(no network): what a caller of either relies on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis import exceptions as rexc

from mozaiks_bus.connection.exchange import exchange
from mozaiks_bus.connection.redirects import Follow, Redirects, redirect_of
from mozaiks_bus.retry import Backoff


class ScriptedConnection:
    """A redis-py connection whose replies are scripted (an exception is raised by
    ``read_response``, as redis-py raises an error reply; ``...`` never answers)."""

    def __init__(self, replies: list[Any], socket_timeout: float | None = 1.0) -> None:
        self.replies = replies
        self.socket_timeout = socket_timeout
        self.sent: list[bytes] = []
        self.is_connected = True

    async def send_packed_command(self, command: bytes, check_health: bool = True) -> None:
        assert check_health is False
        self.sent.append(command)

    async def read_response(self, timeout: float | None = None) -> Any:
        reply = self.replies.pop(0)
        if reply is ...:
            await asyncio.sleep(3600)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def disconnect(self) -> None:
        self.is_connected = False


async def test_a_batch_is_one_write_and_error_replies_come_back_as_values() -> None:
    refused = rexc.ResponseError("WRONGTYPE no")
    connection = ScriptedConnection([b"OK", refused, 3])
    replies = await exchange(connection, [("SET", "a", 1), ("LPUSH", "a", "x"),
                                          ("INCR", "n")], timeout_s=1.0)
    assert replies == [b"OK", refused, 3]
    assert len(connection.sent) == 1
    assert connection.sent[0].startswith(b"*3\r\n$3\r\nSET")
    assert connection.is_connected  # an error reply keeps the stream in step


async def test_a_lost_link_or_the_deadline_drops_the_connection() -> None:
    lost = ScriptedConnection([b"OK", rexc.ConnectionError("reset")])
    with pytest.raises(rexc.ConnectionError):
        await exchange(lost, [("PING",), ("PING",)], timeout_s=1.0)
    assert not lost.is_connected
    silent = ScriptedConnection([b"OK", ...])
    with pytest.raises(rexc.TimeoutError, match="did not answer 2 commands"):
        await exchange(silent, [("PING",), ("PING",)], timeout_s=0.05)
    assert not silent.is_connected


async def test_a_wait_extends_the_deadline_by_its_own_timeout() -> None:
    class SlowWait(ScriptedConnection):
        async def read_response(self, timeout: float | None = None) -> Any:
            if self.replies == [1]:
                await asyncio.sleep(0.2)  # the server holds WAIT's reply back
            return await super().read_response(timeout)

    connection = SlowWait([b"1-0", 1])
    replies = await exchange(connection, [("XADD", "s", "*", "e", "x"), ("WAIT", 1, 1000)],
                             timeout_s=0.1)
    assert replies == [b"1-0", 1]


def test_each_redirect_says_what_to_do() -> None:
    ask = redirect_of([b"OK", rexc.AskError("12 10.0.0.2:7001")])
    assert ask is not None
    assert ask.follow is Follow.ASK
    assert ask.node == ("10.0.0.2", 7001)
    assert not ask.waits
    moved = redirect_of([rexc.MovedError("12 10.0.0.3:7002")])
    assert moved is not None
    assert moved.follow is Follow.REFRESH
    assert moved.node is None
    assert moved.waits
    again = redirect_of([rexc.TryAgainError("TRYAGAIN")])
    assert again is not None
    assert again.follow is Follow.RETRY
    down = redirect_of([rexc.ClusterDownError("CLUSTERDOWN")])
    assert down is not None
    assert down.follow is Follow.REFRESH
    assert redirect_of([b"OK", rexc.ResponseError("WRONGTYPE"), 1]) is None


async def test_redirects_are_bounded_by_count_and_by_time() -> None:
    counted = Redirects(limit=2, backoff=Backoff(min_s=0.001, max_s=0.002))
    await counted.pause(wait=True)
    assert not counted.exhausted()
    await counted.pause(wait=False)
    assert counted.exhausted()
    timed = Redirects(window_s=0.01)
    await timed.pause(wait=True)  # never sleeps past the window
    await asyncio.sleep(0.02)
    assert timed.exhausted()
    assert timed.left_s() == 0
