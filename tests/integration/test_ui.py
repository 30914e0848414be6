"""The ui scope across buses on a real redis-server."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support import make_bus

pytestmark = pytest.mark.integration



async def test_resume_under_concurrent_sends_has_no_gap_and_no_duplicate(
    redis_url: str, key_prefix: str
) -> None:
    sender, reader = make_bus(redis_url, key_prefix), make_bus(redis_url, key_prefix)
    async with sender, reader:
        first_ids = [await sender.ui.send("chat-9", {"kind": "text", "content": str(n)})
                     for n in range(50)]

        async def keep_sending() -> None:
            for n in range(50, 300):
                await sender.ui.send("chat-9", {"kind": "text", "content": str(n)})

        producer = asyncio.create_task(keep_sending())
        stream = await reader.ui.open("chat-9", last_event_id=first_ids[24])
        got: list[int] = []
        while len(got) < 275:
            frame = json.loads(await asyncio.wait_for(stream.__anext__(), 5))
            got.append(int(frame["data"]["content"]))
        await producer
        await stream.close()
    assert got == list(range(25, 300))


async def test_chat_events_published_anywhere_reach_the_chat(
    redis_url: str, key_prefix: str
) -> None:
    publisher, holder = make_bus(redis_url, key_prefix), make_bus(redis_url, key_prefix)
    async with publisher, holder:
        stream = await holder.ui.open("chat-1")
        event = await publisher.publish("chat.run_complete", {
            "chat_id": "chat-1", "workflow_name": "wf", "status": "completed"},
            subject="chat-1")
        frame = json.loads(await asyncio.wait_for(stream.__anext__(), 5))
        await stream.close()
    assert frame["type"] == "chat.run_complete"
    assert frame["data"]["status"] == "completed"
    assert frame["event_id"] == event.id


async def test_input_registered_in_one_process_is_answered_from_another(
    redis_url: str, key_prefix: str
) -> None:
    owner, other, third = (make_bus(redis_url, key_prefix) for _ in range(3))
    answers: list[str] = []
    async with owner, other, third:
        rid = owner.ui.register_input_request("chat-2", "req-1", answers.append)
        await asyncio.sleep(0.3)  # the claim is written in the background
        results = await asyncio.gather(other.ui.submit_user_input(rid, "first"),
                                       third.ui.submit_user_input(rid, "second"))
        for _ in range(50):
            if answers:
                break
            await asyncio.sleep(0.02)
        assert sorted(results) == [False, True]
        assert len(answers) == 1

        waiter = asyncio.create_task(owner.ui.wait_for_response("evt-1", timeout=5))
        await asyncio.sleep(0.3)
        assert await other.ui.submit_response("evt-1", {"ok": True}) is True
        assert await waiter == {"ok": True}
        assert await third.ui.submit_response("evt-1", {"ok": False}) is False


async def test_an_owner_that_is_gone_is_reported_as_rejected(
    redis_url: str, key_prefix: str
) -> None:
    owner, other = make_bus(redis_url, key_prefix), make_bus(redis_url, key_prefix)
    async with other:
        async with owner:
            rid = owner.ui.register_input_request("chat-3", None, lambda text: None)
            await asyncio.sleep(0.3)
        assert await other.ui.submit_user_input(rid, "too late") is False
