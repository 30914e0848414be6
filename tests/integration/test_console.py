"""The operator console in headless Chromium (Debian's package, driven by Playwright).

The API runs in-process on a private Redis; the browser signs in with the admin token,
reads streams and lag, replays and purges dead letters, and watches live events.
``MOZAIKS_CONSOLE_SCREENSHOTS=<dir>`` keeps screenshots (the README's come from there).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from mozaiks_bus import Bus, Event, Unprocessable
from tests.support import FAST, make_bus, wait_for
from tests.unit.server_support import TOKENS, Served, make_settings, serve_app

pytestmark = pytest.mark.integration

CHROMIUM = pathlib.Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
ADMIN, PUB = TOKENS["TEST_TOKEN_ADMIN"], TOKENS["TEST_TOKEN_PUB"]
TYPE = "orders.created"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect


@pytest.fixture
async def served(redis_url: str, key_prefix: str,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    async with serve_app(make_settings(redis_url, prefix=key_prefix, **FAST)) as app:
        yield app


@pytest.fixture
async def page(served: Served) -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        message = "Debian's chromium is not installed (apt-get install chromium)"
        if os.environ.get("MOZAIKS_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                   headless=True, args=ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.set_default_timeout(15_000)
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
            await page.goto(f"{served.url}/console")
            yield page
        finally:
            await browser.close()


async def sign_in(page: Any, token: str = ADMIN) -> None:
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def shot(page: Any, name: str) -> None:
    where = os.environ.get("MOZAIKS_CONSOLE_SCREENSHOTS")
    if where:
        await page.screenshot(path=str(pathlib.Path(where) / f"{name}.png"), full_page=True)


async def publish(served: Served, n: int) -> list[Event]:
    bus = make_bus(str(served.state.settings.broker_url), served.state.settings.prefix)
    async with bus:
        return [await bus.publish(TYPE, {"n": i}, durable=True, fanout=False) for i in range(n)]


async def test_sign_in_and_see_a_stream_with_its_lag(served: Served, page: Any) -> None:
    settings = served.state.settings
    idle = make_bus(str(settings.broker_url), settings.prefix)
    idle.consumer(TYPE, group="billing", start="0")(lambda event: None)
    async with idle:  # creates the group, then stops reading: what follows is lag
        pass
    await publish(served, 3)
    await sign_in(page)
    row = page.get_by_role("row").filter(has_text=TYPE).filter(has_text="billing")
    await expect(row).to_be_visible()
    await expect(row.get_by_role("cell").nth(6)).to_have_text("3")  # Lag
    await expect(page.get_by_role("status", name="Health")).to_contain_text("ready")
    await shot(page, "console-streams")


async def test_replay_a_dead_letter_and_see_it_delivered_then_purge_one(
    served: Served, page: Any,
) -> None:
    settings = served.state.settings
    healed: set[int] = set()
    handled: list[int] = []
    bus: Bus = make_bus(str(settings.broker_url), settings.prefix)

    @bus.consumer(TYPE, group="strict")
    async def handle(event: Event) -> None:
        if event.data["n"] not in healed:
            raise Unprocessable(f"order {event.data['n']} names no customer")
        handled.append(event.data["n"])

    async with bus:
        await publish(served, 2)
        await wait_for(lambda: bus.stats.get("dead_lettered") == 2, 10, "two dead letters")
        await sign_in(page)
        letters = page.get_by_role("table", name="Dead letters")
        await expect(letters.get_by_role("row")).to_have_count(3)  # header + 2
        await expect(letters).to_contain_text("order 0 names no customer")
        await shot(page, "console-dead-letters")
        healed.add(0)
        await letters.get_by_role("row").filter(has_text="order 0 ").get_by_role(
            "button", name="Replay").click()
        await wait_for(lambda: handled == [0], 10, "the replayed event to be handled")
        await expect(letters.get_by_role("row")).to_have_count(2)
        await letters.get_by_role("row").filter(has_text="order 1 ").get_by_role(
            "button", name="Purge").click()
        await expect(letters.get_by_role("row")).to_have_count(1)  # the header only
        assert await bus.streams.dead_letters([TYPE]) == []
    assert handled == [0], "a purged letter is never delivered"


async def test_watch_a_live_event_arrive(served: Served, page: Any) -> None:
    await sign_in(page)
    await page.get_by_label("Type pattern").fill("orders.*")
    await page.get_by_role("button", name="Watch").click()
    await expect(page.get_by_text("watching orders.*")).to_be_visible()
    [event] = await publish(served, 1)
    await expect(page.get_by_role("log", name="Live events")).to_contain_text(event.id)
    await shot(page, "console-live")


async def test_a_wrong_token_shows_the_sign_in_again_and_no_admin_data(
    served: Served, page: Any,
) -> None:
    await publish(served, 1)
    await sign_in(page, "not-a-token-at-all-0123456789")
    await expect(page.get_by_role("alert")).to_contain_text("refused")
    await expect(page.get_by_label("Admin token")).to_be_visible()
    assert await page.locator("#streams tr").count() == 0
    await sign_in(page, PUB)  # a real token without the admin scope
    await expect(page.get_by_role("alert")).to_contain_text("403")
    assert await page.locator("#streams tr").count() == 0
    stored = await page.evaluate("sessionStorage.getItem('mozaiks-bus.admin-token')")
    assert stored is None
    html = await page.content()
    assert TYPE not in html


async def test_the_tail_socket_sends_nothing_without_an_admin_token(served: Served) -> None:
    url = f"{served.ws_url}/v1/admin/tail"
    for hello in ({"token": "wrong-token-0123456789abcdef"}, {"token": PUB}, {}):
        async with websockets.connect(url) as socket:
            await socket.send(json.dumps({**hello, "pattern": "*"}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"token": ADMIN, "pattern": "orders.*"}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 10)) == {
            "ready": True, "pattern": "orders.*"}
        [event] = await publish(served, 1)
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["id"] == event.id
        settings = served.state.settings
        async with make_bus(str(settings.broker_url), settings.prefix) as other:
            fanned = await other.publish("orders.shipped", {"n": 2}, fanout=True,
                                         durable=False)  # fan-out only, from another bus
        assert json.loads(await asyncio.wait_for(socket.recv(), 10))["id"] == fanned.id


async def test_a_sink_dead_letter_is_listed_replayed_and_purged(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker gave up on two deliveries (their records written as it writes them);
    the console replays one (a new RQ job, queued for the sink) and purges the other."""
    from mozaiks_bus.connection import create_sync_client  # noqa: PLC0415
    from mozaiks_bus.sinks import sink_state  # noqa: PLC0415
    from mozaiks_bus.sinks.dead_letters import record_dead  # noqa: PLC0415

    if not HAVE_CHROMIUM:
        pytest.skip("Debian's chromium is not installed")
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    settings = make_settings(redis_url, prefix=key_prefix, **FAST, sinks=[
        {"name": "email", "url": "http://127.0.0.1:9/notify", "patterns": ["orders.*"]}])
    events = [Event.create(TYPE, {"n": n}) for n in range(2)]
    with create_sync_client(redis_url) as client:
        pipe = client.pipeline()
        for event in events:
            record_dead(pipe, settings.keys, "email", job_id=f"job-{event.id}",
                        event_json=event.to_json(), error="HTTP 400: bad address",
                        status=400, attempts=1)
        pipe.execute()
        async with serve_app(settings) as served, playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                               args=ARGS)
            try:
                page = await browser.new_page()
                page.set_default_timeout(15_000)
                page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
                await page.goto(f"{served.url}/console")
                await sign_in(page)
                letters = page.get_by_role("table", name="Dead letters")
                await expect(letters.get_by_role("row").filter(has_text="sink email")) \
                    .to_have_count(2)
                await expect(letters).to_contain_text("HTTP 400: bad address")
                await letters.get_by_role("row").filter(has_text=events[0].id).get_by_role(
                    "button", name="Replay").click()
                await expect(page.get_by_role("status").filter(
                    has_text=f"Replayed {events[0].id}")).to_be_visible()
                await letters.get_by_role("row").filter(has_text=events[1].id).get_by_role(
                    "button", name="Purge").click()
                await expect(letters.get_by_role("row").filter(has_text="sink email")) \
                    .to_have_count(0)
            finally:
                await browser.close()
        state = sink_state(client, settings, "email")
    assert state.queued == 1, "the replayed delivery waits in the sink's RQ queue"
    assert state.dead_letters == 0


async def test_open_mode_says_no_token_is_needed_and_shows_the_data(
    redis_url: str, key_prefix: str,
) -> None:
    """No API token configured: no sign-in form, a notice saying why, the streams at once."""
    if not HAVE_CHROMIUM:
        pytest.skip("Debian's chromium is not installed")
    settings = make_settings(redis_url, prefix=key_prefix, **FAST, api_tokens=[])
    async with serve_app(settings) as served, playwright_api.async_playwright() as pw:
        await publish(served, 2)
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                           args=ARGS)
        try:
            page = await browser.new_page()
            page.set_default_timeout(15_000)
            await page.goto(f"{served.url}/console")
            notice = page.get_by_role("region", name="No token needed")
            await expect(notice).to_be_visible()
            await expect(notice).to_contain_text("MOZAIKS_BUS_API_TOKENS")
            await expect(page.get_by_label("Admin token")).to_be_hidden()
            await expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
            row = page.get_by_role("table", name="Streams").get_by_role("row").filter(
                has_text=TYPE)
            await expect(row.get_by_role("cell").nth(1)).to_have_text("2")  # Length
            await shot(page, "console-open-mode")
        finally:
            await browser.close()
