"""The short chaos run of `make test`: every fault once under a steady load, then every invariant checked."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.chaos.scenario import FAULTS, run_chaos
from tests.conftest import Agent, signed_post
from tests.integration.test_money_movement import stripe_intents_for, transaction
from tests.support.jobs import post_job


def test_payments_survive_every_fault_under_load(stack: Any, services: Any) -> None:
    report = run_chaos(stack, services, duration_s=25, rate_per_s=8, faults=list(FAULTS), settle_s=20)
    print(report.table())
    statuses = report.by_status()
    assert statuses["201"] and statuses["202"] and statuses["402"], statuses
    assert statuses["503"], "Valkey and PostgreSQL going away must show as 503s, never as approvals"
    assert report.faults_injected() == dict.fromkeys(FAULTS, 1)
    (kill,) = [f for f in report.faults if f.name == "worker_kill"]
    assert kill.details["charges_in_flight"] >= 1, "the worker was killed with charges in flight"
    assert report.violations == []


def test_a_charge_whose_row_update_failed_after_stripe_answered_makes_no_second_payment_intent(
    client: Any, agent: Agent, services: Any, monkeypatch: Any
) -> None:
    """Found by the chaos run (PostgreSQL restarted while charges were in flight). ARCHITECTURE.md I4: a worker
    dying between Stripe and the database must not lead to a second PaymentIntent for the transaction."""
    import psycopg

    from shared import charges, db
    from shared.config import get_settings
    from shared.stripe_api import get_client

    body = {"amount": 600, "merchant": "api.example.com", "purpose": "tokens", "idempotency_key": uuid.uuid4().hex}
    tx = signed_post(client, agent.api_key, "/v1/payment-request", body).json()
    assert tx["status"] == "approved"

    real_connection = db.connection
    calls = 0

    def connection_lost_after_stripe(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # 1: the lease; 2: recording the PaymentIntent Stripe just created
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real_connection(*args, **kwargs)

    monkeypatch.setattr(charges.db, "connection", connection_lost_after_stripe)
    with pytest.raises(psycopg.OperationalError):
        charges.charge_transaction(get_client(), uuid.UUID(tx["id"]), settings=get_settings(), request_id="chaos")
    monkeypatch.setattr(charges.db, "connection", real_connection)
    assert len(stripe_intents_for(services, tx["id"])) == 1, "Stripe created the PaymentIntent before the failure"

    # The job is delivered again once the lease has run out.
    with db.connection() as conn:
        conn.execute(
            "UPDATE transactions SET charge_attempt_at = now() - interval '10 minutes' WHERE id = %s", (tx["id"],)
        )
    assert post_job(client, "charge", {"transaction_id": tx["id"]}).status_code == 200
    assert transaction(client, agent, tx["id"])["status"] == "completed"
    intents = stripe_intents_for(services, tx["id"])
    assert [i["status"] for i in intents] == ["succeeded"], [(i["id"], i["status"]) for i in intents]
