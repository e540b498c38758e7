"""The dashboard's billing page: the organization's card, set up on Stripe Checkout or, locally, a test card.

Stripe's SDK (through shared.accounts.billing and shared.vendors.stripe) loads in these routes, not with the module:
the billing pages are rare, and the SDK with the HTTP libraries it loads would cost every dashboard cold start about
35 ms.
"""

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from functions.dashboard.pages.common import (
    SECURITY_HEADERS,
    FormDep,
    SignedIn,
    SignedInDep,
    page_router,
    render,
    see_other,
    signed_in,
    with_query,
)
from shared.config import get_settings
from shared.errors import AgentPayError, LoginRequired, NotFound
from shared.http.app import request_id_of

if TYPE_CHECKING:
    import stripe

router = page_router()

# Checkout's page is on checkout.stripe.com: the set-up form's redirect there must be allowed by form-action.
BILLING_CSP = SECURITY_HEADERS["Content-Security-Policy"].replace(
    "form-action 'self'", "form-action 'self' https://checkout.stripe.com"
)
BILLING_NOTICES = {
    "card_saved": "The card is saved. Approved payments are charged to it from now on.",
    "test_card_saved": "The test card is attached. Approved payments are charged to it from now on.",
    "setup_cancelled": "The card set-up was cancelled. Nothing was changed.",
}


def stripe_client() -> "stripe.StripeClient":
    from shared.vendors import stripe as stripe_api  # late: see the module's docstring

    return stripe_api.get_client()


async def card_setup_by_checkout() -> bool:
    """Outside local mode cards are entered on Stripe Checkout; localstripe has no Checkout, so locally test cards."""
    return not get_settings().is_local


# Any rather than stripe.StripeClient: FastAPI evaluates this annotation when the routes are defined, and the pages
# do not load Stripe's library themselves.
StripeDep = Annotated[Any, Depends(stripe_client)]
CheckoutDep = Annotated[bool, Depends(card_setup_by_checkout)]


def _customer_of(who: SignedIn) -> str:
    customer_id = who.organization.get("stripe_customer_id")
    if not customer_id:
        raise NotFound("This organization has no Stripe customer yet, so no card can be saved.")
    return str(customer_id)


@router.get("/billing")
def billing_page(request: Request, who: SignedInDep, client: StripeDep, checkout: CheckoutDep) -> HTMLResponse:
    from shared.accounts import billing  # late: see the module's docstring

    card: billing.SavedCard | None = None
    problem = None
    method_id = who.organization.get("stripe_payment_method_id")
    if method_id:
        try:
            card = billing.saved_card(client, method_id)
        except AgentPayError:
            problem = "Card details cannot be shown right now: Stripe did not answer. Try again in a minute."
    notice = BILLING_NOTICES.get(request.query_params.get("notice", ""))
    response = render(
        "billing.html",
        signed_in=who,
        active="billing",
        card=card,
        has_card=bool(method_id),
        problem=problem,
        checkout=checkout,
        test_cards=billing.TEST_CARDS,
        notice=notice,
    )
    response.headers["Content-Security-Policy"] = BILLING_CSP
    return response


@router.post("/billing/setup")
def start_card_setup(who: SignedInDep, form: FormDep, client: StripeDep, checkout: CheckoutDep) -> Response:
    """Send the admin to Stripe Checkout (setup mode) to enter a card for the organization's customer."""
    from shared.accounts import billing  # late: see the module's docstring

    if not checkout:
        raise NotFound("Locally, choose a test card on the Billing page instead (localstripe has no Checkout).")
    url = billing.start_card_setup(client, customer_id=_customer_of(who), base_url=get_settings().base_url)
    return RedirectResponse(url, status_code=303)


@router.get("/billing/complete")
def complete_card_setup(request: Request, client: StripeDep, checkout: CheckoutDep) -> Response:
    """Stripe sends the admin back here with the session id once the card is entered."""
    from shared.accounts import billing  # late: see the module's docstring

    session_id = request.query_params.get("session_id", "")
    if not checkout or not session_id.startswith("cs_"):
        raise NotFound("No card set-up to complete here.")
    try:
        who = signed_in(request)
    except LoginRequired:
        # Arriving from checkout.stripe.com is a cross-site navigation, so the browser withholds the SameSite=Strict
        # session cookie. Navigating once more from our own page makes it same-site; only once, then log in.
        if request.query_params.get("resumed"):
            raise
        again = with_query("/dashboard/billing/complete", {"session_id": session_id, "resumed": "1"})
        response = render("billing.html", resume_url=again)
        response.headers["Refresh"] = f"0; url={again}"
        return response
    billing.complete_card_setup(
        client,
        organization_id=who.organization_id,
        customer_id=_customer_of(who),
        session_id=session_id,
        request_id=request_id_of(request),
    )
    return see_other("/dashboard/billing", notice="card_saved")


@router.post("/billing/test-card")
def use_test_card(
    request: Request, who: SignedInDep, form: FormDep, client: StripeDep, checkout: CheckoutDep
) -> Response:
    """Local mode: attach another test card, e.g. one whose charges are declined, to try that path from the UI."""
    from shared.accounts import billing  # late: see the module's docstring

    if checkout:
        raise NotFound("Test cards exist only in local mode.")
    billing.attach_test_card(
        client,
        organization_id=who.organization_id,
        customer_id=_customer_of(who),
        test_card=form.get("test_card", ""),
        request_id=request_id_of(request),
    )
    return see_other("/dashboard/billing", notice="test_card_saved")
