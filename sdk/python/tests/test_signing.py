"""Requests are signed exactly as API.md says and carry the right idempotency key."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from conftest import API_KEY
from fake_agentpay import FakeAgentPay

import agentpay_spend


def test_payment_request_is_signed_over_the_exact_bytes_sent(
    client: agentpay_spend.AgentPay, fake: FakeAgentPay
) -> None:
    client.pay.request(amount=500, purpose="Café ☕ für 2", merchant="café.example", context={"ü": 1})

    [sent] = fake.requests
    assert sent.signature_ok
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    # Recompute independently of the SDK over what arrived on the wire.
    key = hashlib.sha256(API_KEY.encode()).hexdigest().encode()
    message = f"{sent.headers['agentpay-timestamp']}.POST./v1/payment-request.".encode() + sent.body
    assert sent.headers["agentpay-signature"] == "v1=" + hmac.new(key, message, hashlib.sha256).hexdigest()
    assert "Café ☕".encode() in sent.body  # raw UTF-8, not \u escapes


def test_get_is_signed_with_an_empty_body(client: agentpay_spend.AgentPay, fake: FakeAgentPay) -> None:
    tx = client.pay.request(amount=100, purpose="p", merchant="m")
    client.transactions.retrieve(tx.id)

    get = fake.requests[-1]
    assert (get.method, get.path, get.body) == ("GET", f"/v1/transactions/{tx.id}", b"")
    assert get.signature_ok


def test_transaction_id_is_escaped_and_signed_as_sent(
    client: agentpay_spend.AgentPay, fake: FakeAgentPay
) -> None:
    with pytest.raises(agentpay_spend.NotFoundError):
        client.transactions.retrieve("../dashboard/agents?x=1")
    sent = fake.requests[-1]
    assert sent.path == "/v1/transactions/..%2Fdashboard%2Fagents%3Fx%3D1"
    assert sent.signature_ok


def test_derived_idempotency_key_is_in_body_and_header(
    client: agentpay_spend.AgentPay, fake: FakeAgentPay
) -> None:
    tx = client.pay.request(amount=250, purpose="p", merchant="m", context={"b": 1, "a": [1.0, 2]})

    expected = agentpay_spend.derive_idempotency_key(
        amount=250, purpose="p", merchant="m", context={"a": [1, 2], "b": 1}
    )
    body = json.loads(fake.requests[0].body)
    assert body["idempotency_key"] == fake.requests[0].headers["idempotency-key"] == expected
    assert tx.idempotency_key == expected
    assert body["context"] == {"b": 1, "a": [1, 2]}  # sent normalised too: 1.0 went out as 1
    assert b"1.0" not in fake.requests[0].body


def test_explicit_idempotency_key_wins(client: agentpay_spend.AgentPay, fake: FakeAgentPay) -> None:
    client.pay.request(amount=250, purpose="p", merchant="m", idempotency_key="order-42")

    assert json.loads(fake.requests[0].body)["idempotency_key"] == "order-42"
    assert fake.requests[0].headers["idempotency-key"] == "order-42"


def test_replaying_the_same_call_returns_the_same_transaction(client: agentpay_spend.AgentPay) -> None:
    first = client.pay.request(amount=300, purpose="p", merchant="m", context={"run": 1})
    again = client.pay.request(amount=300, purpose="p", merchant="m", context={"run": 1})
    separate = client.pay.request(
        amount=300, purpose="p", merchant="m", context={"run": 1}, idempotency_key="2nd"
    )

    assert again.id == first.id
    assert separate.id != first.id


def test_callback_url_is_sent_only_when_given(client: agentpay_spend.AgentPay, fake: FakeAgentPay) -> None:
    client.pay.request(amount=1, purpose="p", merchant="m")
    client.pay.request(amount=2, purpose="p", merchant="m", callback_url="https://agent.example/hook")

    assert "callback_url" not in json.loads(fake.requests[0].body)
    assert json.loads(fake.requests[1].body)["callback_url"] == "https://agent.example/hook"


def test_wrong_key_is_an_authentication_error(fake: FakeAgentPay) -> None:
    with agentpay_spend.AgentPay("apk_test_wrong", fake.url) as other:
        try:
            other.pay.request(amount=1, purpose="p", merchant="m")
        except agentpay_spend.AuthenticationError as exc:
            assert (exc.http_status, exc.code) == (401, "invalid_api_key")
        else:
            raise AssertionError("expected AuthenticationError")
