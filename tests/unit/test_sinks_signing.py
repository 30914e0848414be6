"""Standard Webhooks signatures: ours against the reference library, both directions."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mozaiks_bus.errors import ConfigError
from mozaiks_bus.sinks.signing import (
    SignatureError,
    decode_secret,
    sign,
    sign_headers,
    verify,
)

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
BODY = b'{"specversion":"1.0","id":"01J0","type":"orders.created","data":{"n":1}}'


def test_headers_verify_with_the_reference_library() -> None:
    headers = sign_headers([decode_secret(SECRET)], "msg_1", BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(BODY, headers) == {
        "specversion": "1.0", "id": "01J0", "type": "orders.created", "data": {"n": 1}}


def test_reference_library_signatures_verify_with_ours() -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    stamp = int(time.time())
    signature = Webhook(SECRET).sign("msg_2", datetime.fromtimestamp(stamp, UTC), BODY.decode())
    assert signature == sign(KEY, "msg_2", stamp, BODY)
    verify(SECRET, BODY, {"Webhook-Id": "msg_2", "Webhook-Timestamp": str(stamp),
                          "Webhook-Signature": signature})


def test_a_tampered_body_fails_in_both_verifiers() -> None:
    headers = sign_headers([KEY], "msg_3", BODY)
    tampered = BODY.replace(b'"n":1', b'"n":2')
    with pytest.raises(SignatureError, match="no matching"):
        verify(SECRET, tampered, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, headers)


@pytest.mark.parametrize("offset", [-360, 360])
def test_a_timestamp_six_minutes_off_fails_in_both_verifiers(offset: int) -> None:
    headers = sign_headers([KEY], "msg_4", BODY, timestamp=int(time.time()) + offset)
    with pytest.raises(SignatureError, match="from now"):
        verify(SECRET, BODY, headers)
    with pytest.raises(WebhookVerificationError, match=r"too (old|new)"):
        Webhook(SECRET).verify(BODY, headers)


def test_four_minutes_off_is_still_accepted() -> None:
    headers = sign_headers([KEY], "msg_5", BODY, timestamp=int(time.time()) - 240)
    verify(SECRET, BODY, headers)
    Webhook(SECRET).verify(BODY, headers)


def test_key_rotation_signs_with_every_secret() -> None:
    other = bytes(reversed(range(32)))
    headers = sign_headers([KEY, other], "msg_6", BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    verify(SECRET, BODY, headers)
    verify(other, BODY, headers)
    Webhook("whsec_" + base64.b64encode(other).decode()).verify(BODY, headers)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_fail(missing: str) -> None:
    headers = sign_headers([KEY], "msg_7", BODY)
    del headers[missing]
    with pytest.raises(SignatureError, match="missing"):
        verify(SECRET, BODY, headers)


def test_a_wrong_secret_or_a_foreign_version_fails() -> None:
    headers = sign_headers([KEY], "msg_8", BODY)
    with pytest.raises(SignatureError):
        verify(bytes(32), BODY, headers)
    headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    with pytest.raises(SignatureError):
        verify(SECRET, BODY, headers)


def test_bad_secrets_name_the_field_never_the_value() -> None:
    with pytest.raises(ConfigError) as info:
        decode_secret("whsec_not*base64!", field="sinks.0.signing_secret_env (HOOK_SECRET)")
    assert info.value.field == "sinks.0.signing_secret_env (HOOK_SECRET)"
    assert "not*base64" not in str(info.value)
    with pytest.raises(ConfigError, match="16 bytes"):
        decode_secret("whsec_" + base64.b64encode(b"short").decode())
    assert decode_secret(base64.b64encode(KEY).decode()) == KEY  # bare base64 works too
