"""webhooks.verify accepts genuine decision webhooks and rejects everything else."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

import agentpay_spend
from agentpay_spend import webhooks

API_KEY = "apk_test_" + "cd" * 32
EVENT = {"id": "evt_1", "type": "transaction.declined", "created_at": "2025-11-24T16:00:00+00:00", "data": {}}
BODY = json.dumps(EVENT).encode()
T = 1_764_000_000


def signed(body: bytes, t: int = T, api_key: str = API_KEY) -> str:
    key = hashlib.sha256(api_key.encode()).hexdigest().encode()
    return f"t={t},v1=" + hmac.new(key, f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def test_valid_webhook_returns_the_event() -> None:
    assert webhooks.verify(BODY, signed(BODY), API_KEY, now=T + 10) == EVENT
    assert webhooks.verify(BODY.decode(), signed(BODY), API_KEY, now=T + 10) == EVENT


def test_default_now_is_the_clock() -> None:
    import time

    t = int(time.time())
    assert webhooks.verify(BODY, signed(BODY, t), API_KEY) == EVENT
    with pytest.raises(agentpay_spend.WebhookSignatureError):
        webhooks.verify(BODY, signed(BODY, t - 301), API_KEY)


@pytest.mark.parametrize(
    ("body", "header", "now", "code"),
    [
        (BODY + b" ", signed(BODY), T, "invalid_signature"),
        (BODY, signed(BODY, api_key="apk_test_other"), T, "invalid_signature"),
        (BODY, signed(BODY), T + 301, "timestamp_out_of_range"),
        (BODY, None, T, "missing_signature"),
        (BODY, "garbage", T, "malformed_signature"),
        (BODY, f"t={T}", T, "malformed_signature"),
        (b"not json", signed(b"not json"), T, "invalid_payload"),
        (b"[1]", signed(b"[1]"), T, "invalid_payload"),
    ],
)
def test_rejections(body: bytes, header: str | None, now: int, code: str) -> None:
    with pytest.raises(agentpay_spend.WebhookSignatureError) as info:
        webhooks.verify(body, header, API_KEY, now=now)
    assert info.value.code == code
    assert isinstance(info.value, agentpay_spend.AgentPayError)


def test_custom_tolerance() -> None:
    webhooks.verify(BODY, signed(BODY), API_KEY, now=T + 1000, tolerance=1000)
    with pytest.raises(agentpay_spend.WebhookSignatureError):
        webhooks.verify(BODY, signed(BODY), API_KEY, now=T + 11, tolerance=10)
