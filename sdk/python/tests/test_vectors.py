"""The SDK agrees with every shared vector in sdk/testdata, as the server and the TypeScript SDK must."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import load_vectors

import agentpay_spend
from agentpay_spend._signing import sign_request

SIGNATURES = load_vectors("signatures.json")
IDEMPOTENCY_KEYS = load_vectors("idempotency_keys.json")
WEBHOOKS = load_vectors("webhooks.json")


def test_vector_files_cover_the_required_cases() -> None:
    assert len(SIGNATURES) >= 6
    assert len(IDEMPOTENCY_KEYS) >= 8
    assert {case["valid"] for case in WEBHOOKS} == {True, False}


@pytest.mark.parametrize("case", SIGNATURES, ids=[c["name"] for c in SIGNATURES])
def test_request_signature_vector(case: dict[str, Any]) -> None:
    signature = sign_request(
        case["api_key"],
        timestamp=str(case["timestamp"]),
        method=case["method"],
        path=case["path"],
        body=case["body"].encode("utf-8"),
    )
    assert signature == case["signature"]


@pytest.mark.parametrize("case", IDEMPOTENCY_KEYS, ids=[c["name"] for c in IDEMPOTENCY_KEYS])
def test_idempotency_key_vector(case: dict[str, Any]) -> None:
    assert agentpay_spend.derive_idempotency_key(**case["params"]) == case["key"]


@pytest.mark.parametrize("case", WEBHOOKS, ids=[c["name"] for c in WEBHOOKS])
def test_webhook_vector(case: dict[str, Any]) -> None:
    if case["valid"]:
        event = agentpay_spend.webhooks.verify(
            case["payload"], case["header"], case["api_key"], now=case["now"]
        )
        assert event["id"].startswith("evt_")
    else:
        with pytest.raises(agentpay_spend.WebhookSignatureError):
            agentpay_spend.webhooks.verify(case["payload"], case["header"], case["api_key"], now=case["now"])
