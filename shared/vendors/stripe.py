"""The container's Stripe client (real Stripe, or localstripe in local mode) and the calls AgentPay makes."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import stripe

from shared.config import get_settings
from shared.errors import (
    StripeUnavailable,
)

LOCAL_STRIPE_KEY = "sk_test_agentpay_local"
LOCAL_TEST_CARD = "pm_card_visa"


def is_outage(exc: stripe.StripeError) -> bool:
    """Whether a Stripe error means Stripe could not answer (unreachable, rate-limited, a 5xx or no status): the
    caller's StripeUnavailable, which a retry may end. Anything else is Stripe's answer about the request itself.
    The one place that tells the two apart, for customers, charges and cards alike."""
    if isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)):
        return True
    return exc.http_status is None or exc.http_status >= 500


@dataclass(frozen=True)
class BillingSetup:
    """The Stripe customer of an organization and its saved card, if any."""

    customer_id: str
    payment_method_id: str | None


def create_client(api_key: str, api_base: str | None, *, timeout_seconds: float = 10.0) -> stripe.StripeClient:
    # Our own retries are the job layer's; Stripe's client must not retry behind our back. Its default timeout
    # (80 s) would outlast a charge's lease (settings.stripe_timeout_seconds).
    kwargs: dict[str, object] = {
        "max_network_retries": 0,
        "http_client": stripe.new_default_http_client(timeout=timeout_seconds),
    }
    if api_base:
        kwargs["base_addresses"] = {"api": api_base}
    return stripe.StripeClient(api_key, **kwargs)  # type: ignore[arg-type]


@functools.cache
def get_client() -> stripe.StripeClient:
    settings = get_settings()
    api_key = settings.stripe_secret_key or (LOCAL_STRIPE_KEY if settings.is_local else None)
    if not api_key:
        raise StripeUnavailable("STRIPE_SECRET_KEY is not configured.")
    return create_client(api_key, settings.stripe_api_base, timeout_seconds=settings.stripe_timeout_seconds)


def set_up_customer(
    client: stripe.StripeClient,
    *,
    organization_id: str,
    name: str,
    email: str,
    attach_test_card: bool,
    attempt: int = 0,
) -> BillingSetup:
    """Create the organization's Stripe customer; in local mode also save a test card for off-session charges."""
    try:
        customer = client.v1.customers.create(
            params={"name": name, "email": email, "metadata": {"organization_id": organization_id}},
            options={"idempotency_key": f"agentpay-customer-{organization_id}-{attempt}"},
        )
        payment_method_id = None
        if attach_test_card:
            method = client.v1.payment_methods.attach(LOCAL_TEST_CARD, params={"customer": customer.id})
            payment_method_id = method.id
            client.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": method.id}})
    except stripe.StripeError as exc:
        if is_outage(exc):
            raise StripeUnavailable() from exc
        raise
    return BillingSetup(customer_id=customer.id, payment_method_id=payment_method_id)


def customer_exists(client: stripe.StripeClient, customer_id: str) -> bool:
    try:
        customer = client.v1.customers.retrieve(customer_id)
    except stripe.InvalidRequestError:
        return False
    return not getattr(customer, "deleted", False)
