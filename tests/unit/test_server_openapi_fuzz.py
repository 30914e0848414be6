"""Every request schemathesis generates from the app's own OpenAPI gets an answer below
500: bad input is refused with a 4xx naming what is wrong, never a crash.

The app runs in-process (schemathesis's ASGI client, lifespan included) on a
``memory://`` broker, with a token that has every scope, so generated requests reach
the handlers instead of stopping at 401. Examples are bounded and derandomized: the same
requests on every run.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import shutdown_lifespans

from mozaiks_bus.server import create_app
from mozaiks_bus.settings import load_settings
from tests.unit.server_support import TOKENS, make_settings

ALL = TOKENS["TEST_TOKEN_ALL"]
MAX_BATCH = 10

pytestmark = pytest.mark.slow

# The document only: no token is needed to describe the API, and no lifespan runs.
schema = schemathesis.openapi.from_dict(create_app(settings=load_settings(
    broker_url="memory://openapi-doc", api_tokens=[], api_max_batch=MAX_BATCH)).openapi())


@pytest.fixture
def app(memory_url: str, api_tokens: None) -> Iterator[FastAPI]:
    try:
        yield create_app(settings=make_settings(memory_url, api_max_batch=MAX_BATCH))
    finally:
        shutdown_lifespans()  # the app's lifespan (its Bus) stops with the test


@schema.parametrize()
@settings(max_examples=50, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_5xx(case: schemathesis.Case, app: FastAPI) -> None:
    response = case.call(app=app, headers={"Authorization": f"Bearer {ALL}"})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}")
