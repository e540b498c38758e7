"""Charging an approved transaction through Stripe, exactly once, however often its job is delivered."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import stripe

from shared.config import Settings
from shared.errors import Conflict, StripeUnavailable
from shared.payments import lifecycle
from shared.payments.transactions import TRANSACTION_COLUMNS
from shared.platform import db
from shared.platform.clock import clock
from shared.vendors import stripe as stripe_api

log = logging.getLogger("agentpay.charges")


class ChargeInProgress(Conflict):
    """Another delivery of this charge job holds the lease; this one is retried later."""

    code = "charge_in_progress"
    message = "This transaction is being charged by another worker; retry later."


@dataclass(frozen=True)
class ChargeResult:
    """What the worker did: completed, declined (charge_failed), or nothing (already done / not chargeable)."""

    outcome: str
    transaction: dict[str, Any] | None = None


def idempotency_key(transaction_id: uuid.UUID | str) -> str:
    return f"agentpay-charge-{transaction_id}"


def charge_transaction(
    client: stripe.StripeClient, transaction_id: uuid.UUID, *, settings: Settings, request_id: str
) -> ChargeResult:
    """Charge an `approved` transaction once; see ARCHITECTURE.md I4.

    1. A lease in Postgres (a conditional update) lets one delivery at a time through.
    2. The PaymentIntent is created unconfirmed with our idempotency key and recorded before it is confirmed, so a
       worker that dies after Stripe answered is followed by one that confirms or reads that same PaymentIntent
       instead of creating another (real Stripe honours the key too; localstripe does not, which this covers).
    3. Stripe's verdict moves the transaction: completed, or declined / charge_failed with its hold freed.
    """
    row = _lease(transaction_id, settings.charge_lease_seconds)
    if row is None:
        return ChargeResult("nothing_to_do")
    if not row["stripe_customer_id"] or not row["stripe_payment_method_id"]:
        return _fail(row, "The organization has no saved payment method to charge.", request_id=request_id)
    try:
        intent = _intent_for(client, row)
        if intent.status == "requires_confirmation":
            try:
                intent = client.v1.payment_intents.confirm(
                    intent.id,
                    params={"off_session": True},
                    options={"idempotency_key": idempotency_key(transaction_id) + "-confirm"},
                )
            except stripe.InvalidRequestError:
                # Another delivery confirmed it meanwhile (its lease ran out while Stripe was slow): read the verdict.
                intent = client.v1.payment_intents.retrieve(intent.id)
    except stripe.CardError as exc:
        return _fail(row, _card_message(exc), request_id=request_id, intent_id=_intent_id(exc))
    except stripe.StripeError as exc:
        if stripe_api.is_outage(exc):
            _release_lease(transaction_id)
            raise StripeUnavailable() from exc
        return _fail(
            row,
            f"Stripe refused the charge: {exc.user_message or exc.code or 'invalid request'}.",
            request_id=request_id,
        )
    return _settle(row, intent, request_id=request_id)


def _lease(transaction_id: uuid.UUID, lease_seconds: int) -> dict[str, Any] | None:
    """Take the charge lease of an approved transaction. None when there is nothing to charge."""
    with db.connection() as conn:
        leased = conn.execute(
            f"""
            WITH leased AS (
                UPDATE transactions SET charge_attempt_at = %(now)s, charge_attempts = charge_attempts + 1
                WHERE id = %(id)s AND status = 'approved'
                  AND (charge_attempt_at IS NULL OR charge_attempt_at < %(now)s - make_interval(secs => %(lease)s))
                RETURNING {TRANSACTION_COLUMNS}, payment_intent_id, charge_attempts
            )
            SELECT leased.*, o.stripe_customer_id, o.stripe_payment_method_id
            FROM leased JOIN organizations o ON o.id = leased.organization_id
            """,
            {"now": clock.now(), "id": transaction_id, "lease": lease_seconds},
        ).fetchone()
        if leased is not None:
            return leased
        current = conn.execute("SELECT status FROM transactions WHERE id = %s", (transaction_id,)).fetchone()
    if current is not None and current["status"] == "approved":
        raise ChargeInProgress()
    return None  # completed, declined, never approved or unknown: acknowledge without charging


def _release_lease(transaction_id: uuid.UUID) -> None:
    with db.connection() as conn:
        conn.execute(
            "UPDATE transactions SET charge_attempt_at = NULL WHERE id = %s AND status = 'approved'", (transaction_id,)
        )


def _intent_for(client: stripe.StripeClient, row: dict[str, Any]) -> Any:
    """The transaction's PaymentIntent: the one recorded earlier, or a new unconfirmed one, recorded at once."""
    if row["payment_intent_id"]:
        return client.v1.payment_intents.retrieve(row["payment_intent_id"])
    earlier = _unrecorded_intent(client, row) if row["charge_attempts"] > 1 else None
    if earlier is not None:
        return _record_intent(client, row, earlier)
    intent = client.v1.payment_intents.create(
        params={
            "amount": int(row["amount_cents"]),
            "currency": row["currency"],
            "customer": row["stripe_customer_id"],
            "payment_method": row["stripe_payment_method_id"],
            "confirm": False,
            "metadata": {
                "transaction_id": str(row["id"]),
                "agent_id": str(row["agent_id"]),
                "merchant": str(row["merchant"])[:500],
            },
        },
        options={"idempotency_key": idempotency_key(row["id"])},
    )
    return _record_intent(client, row, intent)


def _unrecorded_intent(client: stripe.StripeClient, row: dict[str, Any]) -> Any | None:
    """A PaymentIntent an earlier attempt created for this transaction but died (or lost Postgres) before recording.

    Real Stripe would hand the same intent back for our idempotency key within 24 h; this also covers a later
    retry and servers that ignore idempotency keys (localstripe).
    """
    since = int(row["created_at"].timestamp()) - 300
    try:
        page = client.v1.payment_intents.list(
            params={"customer": row["stripe_customer_id"], "created": {"gte": since}, "limit": 100}
        )
    except stripe.InvalidRequestError:  # a Stripe-compatible server without list filters
        page = client.v1.payment_intents.list(params={"limit": 100})
    for intent in page.auto_paging_iter():
        if (intent.to_dict().get("metadata") or {}).get("transaction_id") == str(row["id"]):
            return intent
    return None


def _record_intent(client: stripe.StripeClient, row: dict[str, Any], intent: Any) -> Any:
    """Record the intent before anything confirms it; if another attempt recorded one first, use that one."""
    with db.connection() as conn:
        recorded = conn.execute(
            """
            UPDATE transactions SET payment_intent_id = %s
            WHERE id = %s AND payment_intent_id IS NULL RETURNING payment_intent_id
            """,
            (intent.id, row["id"]),
        ).fetchone()
        if recorded is None:  # another worker recorded one first (its lease had expired): use that one
            other = conn.execute("SELECT payment_intent_id FROM transactions WHERE id = %s", (row["id"],)).fetchone()
            assert other is not None
            if other["payment_intent_id"] == intent.id:
                return intent
            client.v1.payment_intents.cancel(intent.id)
            return client.v1.payment_intents.retrieve(other["payment_intent_id"])
    return intent


def _settle(row: dict[str, Any], intent: Any, *, request_id: str) -> ChargeResult:
    if intent.status == "succeeded":
        with db.transaction() as conn:
            change = lifecycle.change_status(
                conn,
                transaction_id=row["id"],
                from_status="approved",
                to_status="completed",
                reason=None,
                actor="system",
                action="payment.completed",
                details={"request_id": request_id, "payment_intent": intent.id},
                completed_charge_id=intent.id,
            )
        lifecycle.after_commit(change)
        return ChargeResult("completed", change.transaction if change else None)
    if intent.status in ("processing", "requires_capture"):
        _release_lease(row["id"])
        raise StripeUnavailable("Stripe is still processing the charge; retry later.")
    message = "The card needs the cardholder to authenticate, which an off-session charge cannot do."
    if intent.status != "requires_action":
        error = getattr(intent, "last_payment_error", None)
        message = _card_message_from(error) or f"The charge did not go through (PaymentIntent {intent.status})."
    return _fail(row, message, request_id=request_id, intent_id=intent.id)


def _fail(row: dict[str, Any], message: str, *, request_id: str, intent_id: str | None = None) -> ChargeResult:
    """A charge Stripe refused for good: declined / charge_failed, hold freed, audited."""
    with db.transaction() as conn:
        change = lifecycle.change_status(
            conn,
            transaction_id=row["id"],
            from_status="approved",
            to_status="declined",
            reason="charge_failed",
            actor="system",
            action="payment.charge_failed",
            details={"request_id": request_id, "message": message, "payment_intent": intent_id},
        )
    lifecycle.after_commit(change)
    log.warning("charge failed", extra={"fields": {"transaction_id": str(row["id"]), "message": message}})
    return ChargeResult("charge_failed", change.transaction if change else None)


def _intent_id(exc: stripe.CardError) -> str | None:
    error = getattr(exc, "error", None)
    intent = getattr(error, "payment_intent", None) if error is not None else None
    return getattr(intent, "id", None) if intent is not None else None


def _card_message(exc: stripe.CardError) -> str:
    return f"The card was declined: {str(exc.user_message or exc.code or 'card_declined').rstrip('.')}."


def _card_message_from(error: Any) -> str | None:
    if not error:
        return None
    message = getattr(error, "message", None) or (error.get("message") if isinstance(error, dict) else None)
    return f"The card was declined: {str(message).rstrip('.')}." if message else None
