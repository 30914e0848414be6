"""The sink retry table, Retry-After parsing and redaction."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from mozaiks_bus.sinks.policy import (
    Verdict,
    classify_error,
    classify_status,
    parse_retry_after,
    redact,
)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED), (201, Verdict.DELIVERED), (204, Verdict.DELIVERED),
        (409, Verdict.DELIVERED),
        (408, Verdict.RETRY), (425, Verdict.RETRY), (429, Verdict.RETRY),
        (500, Verdict.RETRY), (502, Verdict.RETRY), (503, Verdict.RETRY), (504, Verdict.RETRY),
        (301, Verdict.RETRY), (302, Verdict.RETRY), (307, Verdict.RETRY),
        (400, Verdict.DEAD), (401, Verdict.DEAD), (403, Verdict.DEAD), (404, Verdict.DEAD),
        (410, Verdict.DEAD), (413, Verdict.DEAD), (422, Verdict.DEAD),
    ],
)
def test_the_retry_table(status: int, verdict: Verdict) -> None:
    assert classify_status(status) is verdict


def test_409_is_a_dead_letter_when_the_sink_turns_it_off() -> None:
    assert classify_status(409, accept_409=False) is Verdict.DEAD


def test_network_errors_and_timeouts_are_retried() -> None:
    for exc in (httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), TimeoutError("t")):
        outcome = classify_error(exc)
        assert outcome.verdict is Verdict.RETRY
        assert outcome.breaker_failure
        assert type(exc).__name__ in outcome.error


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 120 ") == 120.0
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30, abs=1)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None


def test_redact_masks_secrets_bearer_tokens_and_signatures_and_cuts() -> None:
    text = ('{"auth": "Bearer abc.def", "key": "s3cr3t-key", "sig": '
            '"v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="}')
    out = redact(text, ["s3cr3t-key"])
    assert "abc.def" not in out
    assert "s3cr3t-key" not in out
    assert "K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN" not in out
    assert "Bearer ***" in out
    assert "v1,***" in out
    assert len(redact("x" * 1000)) == 300
    assert redact("line one\n  line two") == "line one line two"
