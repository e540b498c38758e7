"""Outside local mode, sign-up is throttled per client address and an organization spends only once its admin email
is verified (the pen test: signup open to floods, and an unverified email could spend at once)."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org, make_agent, signed_post
from tests.integration.test_dashboard_api import csrf_of, log_in
from tests.integration.test_money_movement import local_path
from tests.support.jobs import post_job

SIGNUP_TOKEN = "signup-" + "t" * 24
SIGNUPS_PER_HOUR = 5
PAY = "/v1/payment-request"


@pytest.fixture()
def production(app: Any) -> Iterator[Any]:
    """The app as it runs outside local mode (sign-up token, verification, throttle), on the embedded services."""
    from shared.config import get_settings
    from shared.http.deps import settings_dependency

    settings = get_settings().model_copy(update={"agentpay_env": "production", "signup_token": SIGNUP_TOKEN})
    app.dependency_overrides[settings_dependency] = lambda: settings
    yield settings
    app.dependency_overrides.pop(settings_dependency, None)


def client_at(app: Any, address: str) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, client=(address, 40000))


def sign_up(client: Any, email: str = "finance@example.com") -> Any:
    return client.post(
        "/v1/orgs",
        json={"name": f"Acme {uuid.uuid4().hex[:6]}", "admin_email": email},
        headers={"AgentPay-Signup-Token": SIGNUP_TOKEN},
    )


def verification_email(settings: Any, organization_id: str) -> dict[str, Any]:
    from shared.notify.email import outbox_file_name

    path = Path(settings.outbox_dir) / outbox_file_name(f"verify-{organization_id}")
    return dict(json.loads(path.read_text()))


def deliver_verification(client: Any, organization_id: str) -> None:
    from shared.jobs import outbox as jobs
    from shared.platform import db

    with db.connection() as conn:
        rows = conn.execute(
            "SELECT id, job_type, payload FROM job_outbox"
            " WHERE published_at IS NULL AND payload->>'organization_id' = %s",
            (organization_id,),
        ).fetchall()
    assert rows, "sign-up queued no verification email"
    for row in rows:
        assert post_job(client, row["job_type"], row["payload"]).status_code == 200
        jobs.mark_published(row["id"])


def verify_link(settings: Any, organization_id: str) -> str:
    text = verification_email(settings, organization_id)["text"]
    return next(line for line in text.splitlines() if "/v1/orgs/verify-email/" in line)


def production_org(client: Any) -> Org:
    response = sign_up(client)
    assert response.status_code == 201, response.text
    body = response.json()
    return Org(id=body["organization"]["id"], admin_key=body["admin_key"], body=body)


def payment(client: Any, api_key: str) -> Any:
    payload = {"amount": 500, "merchant": "api.example.com", "purpose": "tokens", "idempotency_key": uuid.uuid4().hex}
    return signed_post(client, api_key, PAY, payload)


# Verification before spending ---------------------------------------------------------------------------------
def test_an_unverified_organization_cannot_spend_until_its_email_link_is_posted(client: Any, production: Any) -> None:
    org = production_org(client)
    assert org.body["organization"]["email_verified_at"] is None
    agent = make_agent(client, org)

    refused = payment(client, agent.api_key)
    error = refused.json()["error"]
    assert (refused.status_code, error["type"], error["code"]) == (403, "permission", "organization_not_verified")
    assert "finance@example.com" not in error["message"] and "f***@example.com" in error["message"]
    from shared.platform import db

    with db.connection() as conn:
        rows = conn.execute("SELECT count(*) AS n FROM transactions WHERE agent_id = %s", (agent.id,)).fetchone()
        audited = conn.execute(
            "SELECT details FROM audit_logs WHERE agent_id = %s AND action = 'payment.rejected'", (agent.id,)
        ).fetchall()
    assert rows is not None and rows["n"] == 0
    assert [a["details"]["code"] for a in audited] == ["organization_not_verified"]  # I3: refused, still audited

    deliver_verification(client, org.id)
    email = verification_email(production, org.id)
    assert email["to"] == "finance@example.com" and "verify" in email["subject"].lower()
    link = verify_link(production, org.id)
    assert link.startswith(production.base_url + "/v1/orgs/verify-email/")

    page = client.get(local_path(link))  # mail scanners prefetch links: a GET shows a button and changes nothing
    assert page.status_code == 200 and "<form" in page.text and 'method="post"' in page.text
    assert payment(client, agent.api_key).status_code == 403

    done = client.post(local_path(link))
    assert done.status_code == 200 and "verified" in done.text.lower()
    assert payment(client, agent.api_key).status_code == 201
    again = client.post(local_path(link))  # the same link twice: still fine, nothing more happens
    assert again.status_code == 200
    with db.connection() as conn:
        actions = conn.execute(
            "SELECT action FROM audit_logs WHERE organization_id = %s AND action = 'organization.email_verified'",
            (org.id,),
        ).fetchall()
    assert len(actions) == 1


def test_the_dashboard_says_the_email_is_not_verified_and_can_send_the_link_again(client: Any, production: Any) -> None:
    org = production_org(client)
    deliver_verification(client, org.id)
    csrf = log_in(client, org)
    page = client.get("/dashboard")
    assert "not verified" in page.text and "f***@example.com" not in page.text  # the admin sees their own address
    assert "finance@example.com" in page.text
    resent = client.post("/dashboard/verify-email/resend", data={"csrf_token": csrf}, follow_redirects=False)
    assert resent.status_code == 303
    from shared.platform import db

    with db.connection() as conn:
        jobs = conn.execute(
            "SELECT dedup_id FROM job_outbox WHERE payload->>'organization_id' = %s ORDER BY created_at", (org.id,)
        ).fetchall()
    assert len(jobs) == 2, "the resend queues a second email"
    client.post(local_path(verify_link(production, org.id)))
    assert "not verified" not in client.get("/dashboard").text


@pytest.mark.parametrize("change", ["tampered", "other-audience", "expired", "other-email"])
def test_a_verification_token_that_is_not_ours_verifies_nothing(client: Any, production: Any, change: str) -> None:
    import jwt

    from shared.platform.clock import clock

    org = production_org(client)
    secret = production.require("approval_jwt_secret")
    claims = {
        "iss": "agentpay",
        "aud": "agentpay-email-verification",
        "sub": org.id,
        "email": "finance@example.com",
        "exp": int(clock.time()) + 3600,
        "jti": uuid.uuid4().hex,
    }
    if change == "other-audience":
        claims["aud"] = "agentpay-approval"
    if change == "expired":
        claims["exp"] = int(clock.time()) - 10
    if change == "other-email":
        claims["email"] = "someone-else@example.com"
    token = jwt.encode(claims, secret if change != "tampered" else secret + "x", algorithm="HS256")
    response = client.post(f"/v1/orgs/verify-email/{token}")
    assert response.status_code in (400, 401, 410), response.text[:200]
    from shared.platform import db

    with db.connection() as conn:
        row = conn.execute("SELECT email_verified_at FROM organizations WHERE id = %s", (org.id,)).fetchone()
    assert row is not None and row["email_verified_at"] is None


def test_local_mode_organizations_are_verified_at_sign_up(client: Any, org: Org) -> None:
    assert org.body["organization"]["email_verified_at"] is not None
    assert payment(client, make_agent(client, org).api_key).status_code == 201


# Sign-up throttle ---------------------------------------------------------------------------------------------
def test_sign_up_is_throttled_per_address_outside_local_mode(app: Any, production: Any) -> None:
    address = f"192.0.2.{secrets.randbelow(200) + 1}"
    with client_at(app, address) as client, client_at(app, "192.0.2.250") as other:
        statuses = [sign_up(client).status_code for _ in range(SIGNUPS_PER_HOUR + 1)]
        assert statuses == [201] * SIGNUPS_PER_HOUR + [429]
        throttled = sign_up(client)
        assert throttled.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(throttled.headers["retry-after"]) <= 3600
        page = client.get("/dashboard/signup")
        form = client.post(
            "/dashboard/signup",
            data={
                "csrf_token": csrf_of(page.text),
                "name": "Acme",
                "admin_email": "a@example.com",
                "timezone": "UTC",
                "signup_token": SIGNUP_TOKEN,
            },
        )
        assert form.status_code == 429 and "Too many sign-ups" in form.text
        assert sign_up(other).status_code == 201


def test_local_mode_sign_up_is_not_throttled(app: Any) -> None:
    with client_at(app, "192.0.2.251") as client:
        for _ in range(SIGNUPS_PER_HOUR + 2):
            response = client.post("/v1/orgs", json={"name": "Acme", "admin_email": "a@example.com"})
            assert response.status_code == 201
