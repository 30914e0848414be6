"""The pages a browser opens: /docs, /redoc and /console load nothing from elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.unit.server_support import Served, make_settings, serve_app


class _Assets(HTMLParser):
    """Every URL a page loads: script src, stylesheet / icon href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("script", "img", "iframe") and found.get("src"):
            self.urls.append(str(found["src"]))
        if tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))


def assets_of(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


@pytest.fixture
async def served(memory_url: str, api_tokens: None) -> AsyncIterator[Served]:
    async with serve_app(make_settings(memory_url)) as app:
        yield app


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_api_docs_load_only_assets_of_this_server(served: Served, page: str) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        response = await http.get(page)
        assert response.status_code == 200
        urls = assets_of(response.text)
        assert any(url.endswith(".js") for url in urls), urls  # the UI's own script
        for url in urls:
            absolute = urljoin(f"{served.url}{page}", url)
            assert urlsplit(absolute).netloc == urlsplit(served.url).netloc, url
            assert (await http.get(absolute)).status_code == 200, url
        for cdn in ("cdn.jsdelivr.net", "unpkg.com", "fonts.googleapis.com"):
            assert cdn not in response.text


async def test_the_console_page_names_its_auth_mode(memory_url: str, api_tokens: None) -> None:
    """With tokens the page asks for one; with none it says so (the script reads it)."""
    async with serve_app(make_settings(memory_url)) as served, \
            httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        page = (await http.get("/console")).text
        assert 'data-auth="tokens"' in page
        assert "MOZAIKS_BUS_API_TOKENS" in page  # where tokens come from
    async with serve_app(make_settings(memory_url, api_tokens=[])) as served, \
            httpx.AsyncClient(base_url=served.url, timeout=10) as http:
        page = (await http.get("/console")).text
        assert 'data-auth="open"' in page
        assert 'data-auth="tokens"' not in page
        for url in assets_of(page):
            assert url.startswith("/console/"), url
            assert (await http.get(url)).status_code == 200
