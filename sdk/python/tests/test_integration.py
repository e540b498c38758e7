"""Against a running AgentPay (make run); needs AGENTPAY_BASE_URL and AGENTPAY_API_KEY (an agent key)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

import agentpay_spend

pytestmark = pytest.mark.skipif(
    not (os.environ.get("AGENTPAY_BASE_URL") and os.environ.get("AGENTPAY_API_KEY")),
    reason="integration tests need AGENTPAY_BASE_URL and AGENTPAY_API_KEY (an agent key from `make run`)",
)


@pytest.fixture
def client() -> Iterator[agentpay_spend.AgentPay]:
    with agentpay_spend.AgentPay() as c:
        yield c


@pytest.fixture
def run_id() -> str:
    """Makes each test run's purchases distinct, so derived keys do not replay an earlier run."""
    return uuid.uuid4().hex


def test_small_payment_is_auto_approved(client: agentpay_spend.AgentPay, run_id: str) -> None:
    tx = client.pay.request(
        amount=1, purpose="SDK integration: auto-approve", merchant="sdk.test", context={"run": run_id}
    )

    assert tx.status in ("approved", "completed")
    assert tx.decision_reason == "auto_approved"
    assert (tx.amount, tx.currency, tx.context) == (1, "usd", {"run": run_id})
    assert tx.idempotency_key == agentpay_spend.derive_idempotency_key(
        amount=1, purpose="SDK integration: auto-approve", merchant="sdk.test", context={"run": run_id}
    )
    assert client.transactions.retrieve(tx.id).id == tx.id


def test_replay_with_the_derived_key_returns_the_same_transaction(
    client: agentpay_spend.AgentPay, run_id: str
) -> None:
    params = {
        "amount": 2,
        "purpose": "SDK integration: replay",
        "merchant": "sdk.test",
        "context": {"run": run_id},
    }
    first = client.pay.request(**params)  # type: ignore[arg-type]
    again = client.pay.request(**params)  # type: ignore[arg-type]

    assert again.id == first.id
    assert again.idempotency_key == first.idempotency_key


def test_over_the_limit_raises_budget_exceeded(client: agentpay_spend.AgentPay, run_id: str) -> None:
    with pytest.raises(agentpay_spend.BudgetExceededError) as info:
        client.pay.request(
            amount=100_000_000,
            purpose="SDK integration: over limit",
            merchant="sdk.test",
            context={"run": run_id},
        )

    exc = info.value
    assert exc.http_status == 402
    assert exc.code in ("per_transaction_limit_exceeded", "daily_limit_exceeded")
    assert exc.request_id
    assert exc.transaction is not None
    assert (exc.transaction.status, exc.transaction.decision_reason) == ("declined", exc.code)


def test_unknown_transaction_is_not_found(client: agentpay_spend.AgentPay) -> None:
    with pytest.raises(agentpay_spend.NotFoundError):
        client.transactions.retrieve(str(uuid.uuid4()))
