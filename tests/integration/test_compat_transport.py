"""``attach_transport``: the runtime's SimpleTransport, unchanged, gains cross-worker frames
and inputs. Two "API workers" (a transport and a bus each) share a real Redis.

``PlatformTransport`` below reproduces the three methods of the platform's
``SimpleTransport`` as the platform's runtime behaves (a local one-shot registry; sends go
to this process's sockets only): the runtime side we attach to, not code of ours.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from mozaiks_bus.compat import attach_transport, detach_transport
from tests.support import make_bus, wait_for

pytestmark = pytest.mark.integration


class PlatformTransport:
    """SimpleTransport's documented behaviour for the attached methods."""

    def __init__(self) -> None:
        self.local_frames: list[tuple[str | None, Any]] = []
        self.registry: dict[str, Any] = {}

    async def send_event_to_ui(self, event: Any, chat_id: str | None = None) -> None:
        self.local_frames.append((chat_id, event))

    def register_input_request(self, chat_id: str, request_id: Any, respond_cb: Any) -> str:
        rid = str(request_id) if request_id not in (None, "", "none") else uuid.uuid4().hex
        self.registry[rid] = respond_cb
        return rid

    async def submit_user_input(self, input_request_id: str, user_input: str) -> bool:
        callback = self.registry.pop(input_request_id, None)
        if callback is None:
            return False
        result = callback(user_input)
        if hasattr(result, "__await__"):
            await result
        return True


async def test_frames_and_inputs_cross_workers(redis_url: str, key_prefix: str) -> None:
    worker_a, worker_b = make_bus(redis_url, key_prefix), make_bus(redis_url, key_prefix)
    transport_a, transport_b = PlatformTransport(), PlatformTransport()
    attach_transport(transport_a, worker_a)
    attach_transport(transport_b, worker_b)
    answers: list[str] = []
    chat = f"chat-{uuid.uuid4().hex[:8]}"
    async with worker_a, worker_b, \
            await worker_b.ui.open(chat, last_event_id=None) as browser_on_b:
        frames = aiter(browser_on_b)
        await transport_a.send_event_to_ui(
            {"kind": "text", "agent": "planner", "content": "hi"}, chat)
        frame = json.loads(await anext(frames))
        assert (frame["type"], frame["data"]["content"]) == ("chat.text", "hi")
        assert transport_a.local_frames[0][0] == chat, "its own sockets still get it"

        async def respond(text: str) -> None:
            answers.append(text)

        # the runtime's order: register, then send the request to the browser
        rid = transport_a.register_input_request(chat, "req-1", respond)
        assert rid == "req-1"
        await transport_a.send_event_to_ui(
            {"kind": "input_request", "request_id": rid, "prompt": "Approve?"}, chat)
        request = json.loads(await anext(frames))
        assert request["data"]["request_id"] == "req-1"
        # the browser answers through worker B
        assert await transport_b.submit_user_input(rid, "approved") is True
        await wait_for(lambda: answers == ["approved"], 10, "the answer on worker A")
        assert await transport_b.submit_user_input(rid, "again") is False, "one-shot"
        local = transport_a.register_input_request(chat, None, respond)
        assert await transport_a.submit_user_input(local, "here") is True  # same worker
        assert answers == ["approved", "here"]
    detach_transport(transport_a)
    assert transport_a.submit_user_input.__func__ is PlatformTransport.submit_user_input  # type: ignore[attr-defined]
