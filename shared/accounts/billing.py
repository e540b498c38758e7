"""An organization's card: saved through Stripe Checkout in setup mode, or a test card in local mode."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import stripe

from shared.audit import log as audit
from shared.errors import Conflict, NotFound, PermissionDenied, StripeUnavailable, ValidationFailed
from shared.platform import db
from shared.vendors import stripe as stripe_api

# localstripe's canonical test cards (Stripe's too): one that charges, one that attaches but declines every charge.
TEST_CARDS = {
    "pm_card_visa": "Visa, charges succeed",
    "pm_card_chargeCustomerFail": "Visa, attaches but every charge is declined",
}


class ForeignCheckoutSession(PermissionDenied):
    """The Checkout session belongs to another Stripe customer than this organization's."""

    code = "foreign_checkout_session"
    message = "This card set-up belongs to another organization. Nothing was changed."


class CardSetupIncomplete(Conflict):
    """The Checkout session did not (yet) save a card: not in setup mode, not complete, or no payment method."""

    code = "card_setup_incomplete"
    message = "The card set-up was not completed, so no card was saved. Try again from the Billing page."


@dataclass(frozen=True)
class SavedCard:
    """What the billing page shows of a card; never the number."""

    payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int

    @property
    def exp(self) -> str:
        return f"{self.exp_month:02d}/{self.exp_year}"


def _id_of(value: Any) -> str | None:
    """An expandable Stripe field (an id string or an expanded object) as its id."""
    if value is None or isinstance(value, str):
        return value
    return str(value.id)


def _vendor_error(exc: stripe.StripeError, *, what: str) -> Exception:
    """Stripe's error as ours: unreachable or 5xx is StripeUnavailable, an unknown object is NotFound."""
    if isinstance(exc, stripe.InvalidRequestError) and exc.http_status == 404:
        return NotFound(f"No such {what} at Stripe.")
    if stripe_api.is_outage(exc):
        return StripeUnavailable()
    return ValidationFailed([{"field": what, "message": exc.user_message or str(exc.code or "refused by Stripe")}])


def saved_card(client: stripe.StripeClient, payment_method_id: str) -> SavedCard:
    """The brand, last four digits and expiry of a saved card, read from Stripe."""
    try:
        method = client.v1.payment_methods.retrieve(payment_method_id)
    except stripe.StripeError as exc:
        raise _vendor_error(exc, what="payment method") from exc
    card = method.card
    return SavedCard(
        payment_method_id=method.id,
        brand=str(getattr(card, "brand", None) or "card").title(),
        last4=str(getattr(card, "last4", None) or "????"),
        exp_month=int(getattr(card, "exp_month", None) or 0),
        exp_year=int(getattr(card, "exp_year", None) or 0),
    )


def start_card_setup(client: stripe.StripeClient, *, customer_id: str, base_url: str) -> str:
    """A Checkout session in setup mode for the organization's customer; the URL to send the admin's browser to."""
    try:
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "setup",
                "customer": customer_id,
                "currency": "usd",
                # stripe-python pins API version 2026-10-28.endive, which removed `payment_method_types` from
                # Checkout (a 400 there); `allowed_payment_method_types` is its replacement.
                "allowed_payment_method_types": ["card"],
                # Stripe replaces {CHECKOUT_SESSION_ID} itself; it must stay unencoded.
                "success_url": f"{base_url}/dashboard/billing/complete?session_id={{CHECKOUT_SESSION_ID}}",
                "cancel_url": f"{base_url}/dashboard/billing",
            }
        )
    except stripe.StripeError as exc:
        raise _vendor_error(exc, what="checkout session") from exc
    if not session.url:
        raise StripeUnavailable("Stripe did not return a Checkout URL. Retry later.")
    return str(session.url)


def complete_card_setup(
    client: stripe.StripeClient,
    *,
    organization_id: uuid.UUID,
    customer_id: str,
    session_id: str,
    request_id: str,
) -> str:
    """Save the card a completed setup-mode Checkout session collected; returns its payment method id.

    The session must be this organization's customer's: anyone can put any session id in the return URL.
    """
    try:
        session = client.v1.checkout.sessions.retrieve(session_id, params={"expand": ["setup_intent"]})
    except stripe.StripeError as exc:
        raise _vendor_error(exc, what="checkout session") from exc
    if _id_of(session.customer) != customer_id:
        raise ForeignCheckoutSession()
    intent = session.setup_intent
    if session.mode != "setup" or session.status != "complete" or intent is None or isinstance(intent, str):
        raise CardSetupIncomplete()
    payment_method_id = _id_of(intent.payment_method)
    if intent.status != "succeeded" or not payment_method_id:
        raise CardSetupIncomplete()
    _make_default(client, customer_id=customer_id, payment_method_id=payment_method_id)
    _record_card(
        organization_id,
        payment_method_id,
        details={"request_id": request_id, "source": "checkout", "checkout_session": session.id},
    )
    return payment_method_id


def attach_test_card(
    client: stripe.StripeClient,
    *,
    organization_id: uuid.UUID,
    customer_id: str,
    test_card: str,
    request_id: str,
) -> str:
    """Local mode only (localstripe has no Checkout): attach one of TEST_CARDS and make it the organization's card."""
    if test_card not in TEST_CARDS:
        raise ValidationFailed([{"field": "test_card", "message": "must be one of " + ", ".join(TEST_CARDS)}])
    try:
        method = client.v1.payment_methods.attach(test_card, params={"customer": customer_id})
    except stripe.StripeError as exc:
        raise _vendor_error(exc, what="payment method") from exc
    _make_default(client, customer_id=customer_id, payment_method_id=method.id)
    _record_card(
        organization_id, method.id, details={"request_id": request_id, "source": "test_card", "test_card": test_card}
    )
    return str(method.id)


def _make_default(client: stripe.StripeClient, *, customer_id: str, payment_method_id: str) -> None:
    """The customer's invoice default, so what Stripe's dashboard shows matches what AgentPay charges."""
    try:
        client.v1.customers.update(
            customer_id, params={"invoice_settings": {"default_payment_method": payment_method_id}}
        )
    except stripe.StripeError as exc:
        raise _vendor_error(exc, what="customer") from exc


def _record_card(organization_id: uuid.UUID, payment_method_id: str, *, details: dict[str, Any]) -> None:
    """Store the card on the organization and audit it, in one transaction; a repeat (a reloaded page) is a no-op."""
    with db.transaction() as conn:
        changed = conn.execute(
            """
            UPDATE organizations SET stripe_payment_method_id = %s
            WHERE id = %s AND stripe_payment_method_id IS DISTINCT FROM %s
            RETURNING id
            """,
            (payment_method_id, organization_id, payment_method_id),
        ).fetchone()
        if changed is not None:
            audit.record(
                conn,
                organization_id=organization_id,
                actor="admin",
                action="billing.payment_method_updated",
                details={**details, "payment_method": payment_method_id},
            )
