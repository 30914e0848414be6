"""``mozaiks-bus serve``: safe by default, and what it hands to uvicorn."""

from __future__ import annotations

import json
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner

from mozaiks_bus.cli import cli
from tests.integration.server_harness import TOKEN_CONFIG, TOKENS


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.append({"app": app, **kw}))
    monkeypatch.setenv("MOZAIKS_BROKER_URL", "memory://cli")
    return seen


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, ["serve", *args])


def test_no_token_binds_loopback_and_says_so(calls: list[dict[str, Any]]) -> None:
    result = run("--port", "9123")
    assert result.exit_code == 0, result.output
    assert "no API token configured: serving loopback only" in result.output
    (call,) = calls
    assert call["app"] == "mozaiks_bus.server:create_app"
    assert call["factory"] is True
    assert (call["host"], call["port"], call["workers"]) == ("127.0.0.1", 9123, 1)
    assert call["access_log"] is False
    assert call["ws_max_size"] == 1024 * 1024


def test_no_token_refuses_a_public_bind(calls: list[dict[str, Any]]) -> None:
    result = run("--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "refusing to bind 0.0.0.0" in result.output
    assert not calls


def test_tokens_allow_a_public_bind_and_are_never_printed(
    calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOZAIKS_BUS_API_TOKENS", json.dumps(TOKEN_CONFIG))
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    result = run("--host", "0.0.0.0", "--workers", "3")
    assert result.exit_code == 0, result.output
    assert "4 token(s) configured" in result.output
    assert all(token not in result.output for token in TOKENS.values())
    assert calls[0]["workers"] == 3


def test_unset_token_variable_and_missing_broker_stop_start_up(
    calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOZAIKS_BUS_API_TOKENS", json.dumps(TOKEN_CONFIG[:1]))
    result = run()
    assert result.exit_code == 2
    assert "api_tokens.0.token_env" in result.output
    assert "TEST_TOKEN_ALL" in result.output
    monkeypatch.delenv("MOZAIKS_BUS_API_TOKENS")
    monkeypatch.delenv("MOZAIKS_BROKER_URL")
    result = run()
    assert result.exit_code == 2
    assert "needs a broker" in result.output
    assert not calls
