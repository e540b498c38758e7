"""Billing: the card set up through Stripe Checkout (against recorded Stripe responses) and local test cards."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Org, make_agent, make_org, signed_get, signed_post
from tests.support.jobs import deliver_pending

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "stripe"
CUSTOMER = "cus_TbRc0rd3dAcme1"  # the customer of the recorded responses
SESSION = "cs_test_c1Kq8XvPz3RmLw2NdYb7TfHs9UeGj4AoQi6VcZx0MnBy5pRt"
SAVED_METHOD = "pm_1QbRc0rd3dCardMC44"
BASE = "http://127.0.0.1:8000"  # settings.base_url in the suite


def recorded(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return result


# A fake Stripe API that answers with recorded responses ----------------------------------------------------------
@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]  # the form body (POST) or the query string (GET), as stripe-python encodes them
    headers: dict[str, str]


@dataclass
class FakeStripe:
    """Plays api.stripe.com on loopback: answers from `routes`, records every request it gets."""

    routes: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    url: str = ""

    def called(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode() if length else parts.query
            params = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            fake.calls.append(Call(self.command, parts.path, params, dict(self.headers)))
            status, body = fake.routes.get(
                (self.command, parts.path),
                (404, {"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such"}}),
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:14]}")
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _answer

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture()
def fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    fake.routes = {
        ("POST", "/v1/checkout/sessions"): (200, recorded("checkout_session_setup_created")),
        ("GET", f"/v1/checkout/sessions/{SESSION}"): (200, recorded("checkout_session_setup_complete")),
        ("POST", f"/v1/customers/{CUSTOMER}"): (200, recorded("customer_default_payment_method_updated")),
        ("GET", f"/v1/payment_methods/{SAVED_METHOD}"): (200, recorded("payment_method_card_mastercard")),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture()
def production_billing(app: Any, fake_stripe: FakeStripe) -> Iterator[FakeStripe]:
    """The dashboard as outside local mode: Checkout enabled, Stripe = the fake, through the pages' dependencies."""
    from functions.dashboard.pages import billing as billing_pages
    from shared.vendors import stripe as stripe_api

    client = stripe_api.create_client("sk_test_recorded", fake_stripe.url)
    app.dependency_overrides[billing_pages.stripe_client] = lambda: client
    app.dependency_overrides[billing_pages.card_setup_by_checkout] = lambda: True
    yield fake_stripe
    app.dependency_overrides.pop(billing_pages.stripe_client, None)
    app.dependency_overrides.pop(billing_pages.card_setup_by_checkout, None)


# Helpers ---------------------------------------------------------------------------------------------------------
def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def log_in(client: Any, org: Org) -> str:
    page = client.get("/dashboard/login")
    response = client.post(
        "/dashboard/login",
        data={"csrf_token": csrf_of(page.text), "admin_key": org.admin_key},
        follow_redirects=False,
    )
    assert response.status_code == 303
    return csrf_of(client.get("/dashboard/agents").text)


def recorded_customer_without_card(client: Any) -> Org:
    """An organization whose Stripe customer is the recorded one, with no card saved yet."""
    from shared.platform import db

    org = make_org(client)
    with db.connection() as conn:
        conn.execute(
            "UPDATE organizations SET stripe_customer_id = %s, stripe_payment_method_id = NULL WHERE id = %s",
            (CUSTOMER, org.id),
        )
    return org


def saved_method(org: Org) -> str | None:
    from shared.platform import db

    with db.connection() as conn:
        row = conn.execute("SELECT stripe_payment_method_id FROM organizations WHERE id = %s", (org.id,)).fetchone()
    assert row is not None
    return row["stripe_payment_method_id"]


def billing_audit(org: Org) -> list[dict[str, Any]]:
    from shared.platform import db

    with db.connection() as conn:
        rows = conn.execute(
            "SELECT actor, details FROM audit_logs"
            " WHERE organization_id = %s AND action = 'billing.payment_method_updated' ORDER BY created_at",
            (org.id,),
        ).fetchall()
    return list(rows)


# Production: Stripe Checkout in setup mode -----------------------------------------------------------------------
def test_checkout_in_setup_mode_saves_the_card_and_makes_it_the_default(
    client: Any, production_billing: FakeStripe
) -> None:
    fake = production_billing
    org = recorded_customer_without_card(client)
    token = log_in(client, org)

    page = client.get("/dashboard/billing")
    assert page.status_code == 200
    assert "No card is saved" in page.text and "charge_failed" in page.text
    assert "Set up card" in page.text and "test_card" not in page.text
    assert "form-action 'self' https://checkout.stripe.com" in page.headers["content-security-policy"]

    started = client.post("/dashboard/billing/setup", data={"csrf_token": token}, follow_redirects=False)
    assert started.status_code == 303
    assert started.headers["location"] == recorded("checkout_session_setup_created")["url"]
    (create,) = fake.called("POST", "/v1/checkout/sessions")
    assert create.params == {
        "mode": "setup",
        "customer": CUSTOMER,
        "currency": "usd",
        "allowed_payment_method_types[0]": "card",
        "success_url": f"{BASE}/dashboard/billing/complete?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{BASE}/dashboard/billing",
    }
    assert create.headers["Authorization"] == "Bearer sk_test_recorded"
    assert create.headers["Content-Type"] == "application/x-www-form-urlencoded"

    # Stripe sends the browser back with the session id.
    done = client.get(f"/dashboard/billing/complete?session_id={SESSION}", follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/dashboard/billing?notice=card_saved"
    (retrieve,) = fake.called("GET", f"/v1/checkout/sessions/{SESSION}")
    assert retrieve.params == {"expand[0]": "setup_intent"}
    (update,) = fake.called("POST", f"/v1/customers/{CUSTOMER}")
    assert update.params == {"invoice_settings[default_payment_method]": SAVED_METHOD}
    assert saved_method(org) == SAVED_METHOD
    (entry,) = billing_audit(org)
    assert entry["actor"] == "admin"
    assert entry["details"]["payment_method"] == SAVED_METHOD
    assert entry["details"]["checkout_session"] == SESSION and entry["details"]["source"] == "checkout"

    shown = client.get(done.headers["location"])
    assert "The card is saved" in shown.text
    assert "Mastercard" in shown.text and "4444" in shown.text and "08/2031" in shown.text
    assert "Replace card" in shown.text and "No card is saved" not in shown.text
    assert fake.called("GET", f"/v1/payment_methods/{SAVED_METHOD}")

    # Reloading the return URL changes nothing and audits nothing more.
    again = client.get(f"/dashboard/billing/complete?session_id={SESSION}", follow_redirects=False)
    assert again.status_code == 303 and len(billing_audit(org)) == 1


def test_the_setup_button_needs_the_csrf_token(client: Any, production_billing: FakeStripe) -> None:
    org = recorded_customer_without_card(client)
    log_in(client, org)
    for data in ({}, {"csrf_token": "0" * 64}):
        response = client.post("/dashboard/billing/setup", data=data, follow_redirects=False)
        assert response.status_code == 403
    assert production_billing.calls == []


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"customer": "cus_SomeoneElse42"}, 403),  # another organization's session
        ({"status": "open"}, 409),  # the admin left Checkout before finishing
    ],
)
def test_a_session_that_is_not_this_organizations_completed_one_saves_nothing(
    client: Any, production_billing: FakeStripe, change: dict[str, Any], status: int
) -> None:
    fake = production_billing
    fake.routes[("GET", f"/v1/checkout/sessions/{SESSION}")] = (
        200,
        {**recorded("checkout_session_setup_complete"), **change},
    )
    org = recorded_customer_without_card(client)
    log_in(client, org)
    response = client.get(f"/dashboard/billing/complete?session_id={SESSION}", follow_redirects=False)
    assert response.status_code == status
    assert "Nothing was changed" in response.text or "no card was saved" in response.text
    assert saved_method(org) is None and billing_audit(org) == []
    assert fake.called("POST", f"/v1/customers/{CUSTOMER}") == []


def test_an_unknown_session_is_a_404(client: Any, production_billing: FakeStripe) -> None:
    org = recorded_customer_without_card(client)
    log_in(client, org)
    response = client.get("/dashboard/billing/complete?session_id=cs_test_unknown", follow_redirects=False)
    assert response.status_code == 404 and saved_method(org) is None


def test_the_return_from_stripe_without_the_strict_cookie_navigates_once_more(
    app: Any, production_billing: FakeStripe
) -> None:
    """Coming back from checkout.stripe.com the browser withholds SameSite=Strict cookies; one same-site hop."""
    from fastapi.testclient import TestClient

    with TestClient(app) as anonymous:
        first = anonymous.get(f"/dashboard/billing/complete?session_id={SESSION}", follow_redirects=False)
        resume = f"/dashboard/billing/complete?session_id={SESSION}&resumed=1"
        assert first.status_code == 200 and first.headers["refresh"] == f"0; url={resume}"
        assert resume.replace("&", "&amp;") in first.text
        second = anonymous.get(resume, follow_redirects=False)
        assert second.status_code == 303 and second.headers["location"] == "/dashboard/login"
    assert production_billing.calls == []


# Local mode: test cards on localstripe ---------------------------------------------------------------------------
def test_local_mode_offers_test_cards_and_a_declining_card_declines_the_charge(client: Any) -> None:
    org = make_org(client)
    token = log_in(client, org)
    page = client.get("/dashboard/billing")
    assert "4242" in page.text and "a test card was attached at sign-up" in page.text
    assert 'value="pm_card_visa"' in page.text and 'value="pm_card_chargeCustomerFail"' in page.text
    assert "/dashboard/billing/setup" not in page.text
    assert client.post("/dashboard/billing/setup", data={"csrf_token": token}).status_code == 404
    before = saved_method(org)

    assert (
        client.post("/dashboard/billing/test-card", data={"test_card": "pm_card_chargeCustomerFail"}).status_code == 403
    )
    response = client.post(
        "/dashboard/billing/test-card",
        data={"csrf_token": token, "test_card": "pm_card_chargeCustomerFail"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    shown = client.get(response.headers["location"])
    assert "The test card is attached" in shown.text and "0341" in shown.text
    assert saved_method(org) not in (None, before)
    (entry,) = billing_audit(org)
    assert entry["details"]["test_card"] == "pm_card_chargeCustomerFail"

    bogus = client.post("/dashboard/billing/test-card", data={"csrf_token": token, "test_card": "pm_card_amex"})
    assert bogus.status_code == 422

    agent = make_agent(client, org)
    body = {"amount": 300, "merchant": "api.example.com", "purpose": "tokens", "idempotency_key": uuid.uuid4().hex}
    tx = signed_post(client, agent.api_key, "/v1/payment-request", body).json()
    assert tx["status"] == "approved"
    deliver_pending(client, tx["id"])
    after = signed_get(client, agent.api_key, f"/v1/transactions/{tx['id']}").json()
    assert after["status"] == "declined" and after["decision_reason"] == "charge_failed"
