"""Transaction parses the API's object into typed, immutable attributes."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from agentpay_spend import Transaction

WIRE = {
    "id": "7b0f0d52-3a51-4c43-9d67-0c1f4b7f9a10",
    "object": "transaction",
    "organization_id": "5a3f7c3e-8f0e-4a55-9a0c-2f1c8c1e1b11",
    "agent_id": "c4b2a9d1-0e6f-4f4e-8b9a-6d5e4c3b2a10",
    "amount": 1250,
    "currency": "usd",
    "merchant": "api.example.com",
    "purpose": "text",
    "context": {"k": [1]},
    "status": "pending",
    "decision_reason": "approval_required",
    "idempotency_key": "k-1",
    "stripe_charge_id": None,
    "approval_expires_at": "2025-11-25T16:00:00Z",
    "created_at": "2025-11-24T11:00:00-05:00",
    "completed_at": None,
    "risk_score": 0.1,
}


def test_typed_attributes() -> None:
    tx = Transaction.from_dict(WIRE)
    assert tx.amount == 1250 and tx.context == {"k": [1]}
    assert tx.created_at == datetime(2025, 11, 24, 11, tzinfo=timezone(timedelta(hours=-5)))
    assert tx.approval_expires_at == datetime(2025, 11, 25, 16, tzinfo=UTC)
    assert tx.completed_at is None and tx.stripe_charge_id is None
    assert not tx.is_terminal


def test_unknown_fields_are_tolerated_and_kept() -> None:
    tx = Transaction.from_dict(WIRE)
    assert tx.extra == {"risk_score": 0.1}
    assert "risk_score" not in repr(tx)


def test_frozen() -> None:
    tx = Transaction.from_dict(WIRE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tx.status = "completed"  # type: ignore[misc]


def test_missing_required_field_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Transaction.from_dict({k: v for k, v in WIRE.items() if k != "created_at"})


def test_the_dashboards_shadow_verdict_is_typed_and_absent_from_agent_answers() -> None:
    assert Transaction.from_dict(WIRE).shadow is None
    verdict = {"status": "declined", "decision_reason": "merchant_blocked"}
    shadowed = Transaction.from_dict({**WIRE, "shadow": verdict})
    assert shadowed.shadow == verdict
    assert "shadow" not in shadowed.extra
