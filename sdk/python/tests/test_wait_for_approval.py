"""wait_for_approval returns a completed payment, raises on decline or timeout, polls through `approved`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import API_KEY
from fake_agentpay import FakeAgentPay

import agentpay_spend


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def slow_fake() -> Iterator[FakeAgentPay]:
    server = FakeAgentPay(API_KEY, polls_until_decided=3).start()
    yield server
    server.stop()


def test_pending_then_approved_then_completed(slow_fake: FakeAgentPay) -> None:
    clock = FakeClock()
    with agentpay_spend.AgentPay(API_KEY, slow_fake.url) as client:
        tx = client.pay.request(amount=2500, purpose="needs a human", merchant="m")
        assert (tx.status, tx.decision_reason) == ("pending", "approval_required")
        assert tx.approval_expires_at is not None

        done = client.pay.wait_for_approval(tx.id, poll_interval=5.0, sleep=clock.sleep, clock=clock)

    assert done.id == tx.id
    assert (done.status, done.decision_reason) == ("completed", "approved_by_admin")
    assert done.stripe_charge_id and done.completed_at
    # pending, pending, approved (not terminal: keep polling), completed
    assert slow_fake.polls[tx.id] == 4
    assert clock.sleeps == [5.0, 5.0, 5.0]


def test_auto_approved_payment_completes(client: agentpay_spend.AgentPay, fake: FakeAgentPay) -> None:
    clock = FakeClock()
    tx = client.pay.request(amount=100, purpose="small", merchant="m")
    done = client.pay.wait_for_approval(
        tx, sleep=clock.sleep, clock=clock
    )  # a Transaction works as well as an id
    assert done.status == "completed"
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("outcome", "reason"), [("declined", "declined_by_admin"), ("timed_out", "approval_timed_out")]
)
def test_declined_or_timed_out_raises(
    client: agentpay_spend.AgentPay, fake: FakeAgentPay, outcome: str, reason: str
) -> None:
    clock = FakeClock()
    tx = client.pay.request(amount=2500, purpose="p", merchant="m")
    fake.outcome[tx.id] = outcome

    with pytest.raises(agentpay_spend.PaymentDeclinedError) as info:
        client.pay.wait_for_approval(tx.id, sleep=clock.sleep, clock=clock)

    assert info.value.reason == reason
    assert info.value.transaction.id == tx.id
    assert info.value.transaction.status == outcome


def test_local_timeout(client: agentpay_spend.AgentPay, fake: FakeAgentPay) -> None:
    clock = FakeClock()
    tx = client.pay.request(amount=2500, purpose="p", merchant="m")
    fake.outcome[tx.id] = "never"

    with pytest.raises(agentpay_spend.ApprovalTimeoutError) as info:
        client.pay.wait_for_approval(tx.id, timeout=12.0, poll_interval=5.0, sleep=clock.sleep, clock=clock)

    assert clock.sleeps == [5.0, 5.0, 2.0]  # never sleeps past the deadline
    assert info.value.transaction is not None and info.value.transaction.status == "pending"


def test_unknown_transaction_is_not_found(client: agentpay_spend.AgentPay) -> None:
    with pytest.raises(agentpay_spend.NotFoundError):
        client.pay.wait_for_approval("00000000-0000-0000-0000-000000000000", sleep=lambda s: None)
