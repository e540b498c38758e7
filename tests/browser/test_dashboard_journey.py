"""An admin's first hour in the web dashboard, in a real browser against a real server; screenshots of each page."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import ConsoleErrors
from tests.conftest import ServerProcess
from tests.support.signing import encode, signed_headers

PAY = "/v1/payment-request"


def pay(server: ServerProcess, api_key: str, amount: int, **fields: Any) -> httpx.Response:
    body = encode(
        {
            "amount": amount,
            "merchant": "api.openai.com",
            "purpose": "GPT tokens for the weekly report",
            "idempotency_key": uuid.uuid4().hex,
            **fields,
        }
    )
    return httpx.post(server.base_url + PAY, content=body, headers=signed_headers(api_key, "POST", PAY, body))


def shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_sign_up_log_in_create_an_agent_see_its_payments_edit_limits_log_out(
    server: ServerProcess, new_page: Any, console: ConsoleErrors, screenshots: Path
) -> None:
    base = server.base_url + "/dashboard"
    page = new_page()
    console.expected_statuses |= {401, 422}

    # Sign up: the admin key is shown once, with a warning and a working copy button.
    page.goto(base + "/signup")
    page.get_by_label("Organization name").fill("Acme Research")
    page.get_by_label("Admin email").fill("finance@acme.example")
    page.get_by_label("Timezone", exact=True).select_option("Europe/Paris")
    shot(page, screenshots, "01-signup")
    page.get_by_role("button", name="Create organization").click()
    page.get_by_text("It will not be shown again").wait_for()
    admin_key = page.locator("#secret-key").input_value()
    assert admin_key.startswith("apa_test_") and len(admin_key) == 73
    assert page.get_by_role("button", name="Copy").is_visible()
    shot(page, screenshots, "02-admin-key")

    # Login: a wrong key says so; the right one opens the (empty) transactions page.
    page.goto(base)
    assert page.url.endswith("/dashboard/login")
    page.get_by_label("Admin key").fill("apa_test_" + "0" * 64)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("That admin key is not valid").wait_for()
    shot(page, screenshots, "03-login-error")
    page.get_by_label("Admin key").fill(admin_key)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Transactions").wait_for()
    page.get_by_text("No transactions here yet").wait_for()
    assert admin_key not in page.url
    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "agentpay_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/dashboard"
    assert admin_key not in session["value"]

    # Create an agent: its key is shown once.
    page.get_by_role("link", name="Agents").click()
    page.get_by_label("Name").fill("research-bot")
    page.locator("#new-daily_limit").fill("50")
    page.locator("#new-per_transaction_limit").fill("20")
    page.locator("#new-approval_threshold").fill("10")
    page.get_by_role("button", name="Create agent").click()
    page.get_by_text("It will not be shown again").wait_for()
    agent_key = page.locator("#secret-key").input_value()
    assert agent_key.startswith("apk_test_")
    shot(page, screenshots, "04-agent-key")

    # The agent pays (signed requests over HTTP); the payments show up on the transactions page.
    assert pay(server, agent_key, 950).status_code == 201
    pending = pay(server, agent_key, 1500, merchant="<b>cloud.example</b>", context={"ticket": "<script>x</script>"})
    assert pending.status_code == 202
    assert pay(server, agent_key, 2500).status_code == 402
    page.get_by_role("link", name="Transactions").click()
    rows = page.locator("table.data tbody tr")
    assert rows.count() == 3
    assert page.get_by_text("$9.50").is_visible() and page.get_by_text("$15.00").is_visible()
    # (The $9.50 one may already be charged by the time the page loads: its badge is not checked here.)
    over = rows.filter(has_text="$25.00")
    assert over.locator(".badge").inner_text() == "Declined"
    assert rows.filter(has_text="$15.00").locator(".badge").inner_text() == "Pending"
    assert page.get_by_text("<b>cloud.example</b>").is_visible()  # shown as text, not markup
    assert page.get_by_text("Over the per-transaction limit").is_visible()
    shot(page, screenshots, "05-transactions")

    page.locator("select#f-status").select_option("pending")
    page.get_by_role("button", name="Apply").click()
    assert page.locator("table.data tbody tr").count() == 1

    page.locator("table.data tbody tr a").first.click()
    page.get_by_role("heading", name="Audit trail").wait_for()
    assert "<script>x</script>" in page.locator("pre.json").first.inner_text()
    assert page.get_by_text("payment.pending_approval").first.is_visible()
    shot(page, screenshots, "06-transaction-detail")

    # Approve it from its page: it leaves the pending state at once.
    page.get_by_role("button", name="Approve").click()
    page.get_by_text("The payment is approved").wait_for()
    assert page.locator(".page-head .badge").inner_text() in ("Approved", "Completed")
    assert page.get_by_text("payment.approved").first.is_visible()
    # The charge worker takes it from there: a reload shows it completed (Stripe confirmed the charge).
    for _ in range(60):
        if page.locator(".page-head .badge").inner_text() == "Completed":
            break
        page.wait_for_timeout(250)
        page.reload()
    assert page.locator(".page-head .badge").inner_text() == "Completed"
    assert page.get_by_text("payment.completed").first.is_visible()
    shot(page, screenshots, "06b-approved")

    # Edit limits: a bad combination says so next to the field, and nothing is saved.
    page.get_by_role("link", name="Agents").click()
    assert page.get_by_text("spent today").first.is_visible() and page.locator(".bar-fill").count() == 1
    shot(page, screenshots, "07-agents")
    page.get_by_role("link", name="Policy and spend").click()
    page.locator("#policy-per_transaction_limit").fill("80")
    page.get_by_role("button", name="Save policy").click()
    page.locator("#policy-daily_limit-error").get_by_text("Must be at least the per-payment limit.").wait_for()
    shot(page, screenshots, "08-limits-error")
    page.locator("#policy-daily_limit").fill("100")
    page.get_by_role("button", name="Save policy").click()
    page.get_by_text("Policy saved").wait_for()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    assert page.get_by_text("$80.00").first.is_visible()

    # Disable and enable, then rotate the key: the old key stops working.
    page.get_by_role("button", name="Disable").click()
    page.get_by_text("The agent is disabled").wait_for()
    assert pay(server, agent_key, 100).status_code == 403
    page.get_by_role("button", name="Enable").click()
    page.get_by_role("button", name="Rotate key").click()
    new_key = page.locator("#secret-key").input_value()
    assert new_key != agent_key
    assert pay(server, agent_key, 100).status_code == 401
    assert pay(server, new_key, 100).status_code == 201

    page.get_by_role("link", name="Audit log").click()
    assert page.locator("table.data").get_by_text("agent.key_rotated").is_visible()
    shot(page, screenshots, "09-audit-log")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == "audit-log.csv"

    page.get_by_role("link", name="Billing").click()
    page.get_by_text("4242").wait_for()
    shot(page, screenshots, "10-billing")

    # On a phone.
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("link", name="Transactions").click()
    shot(page, screenshots, "11-transactions-phone")
    page.set_viewport_size({"width": 1280, "height": 860})

    page.get_by_role("button", name="Log out").click()
    page.get_by_text("You are logged out").wait_for()
    page.goto(base + "/agents")
    assert page.url.endswith("/dashboard/login")


def test_another_organizations_admin_sees_none_of_it(
    server: ServerProcess, new_page: Any, console: ConsoleErrors, screenshots: Path
) -> None:
    console.expected_statuses |= {404}
    with httpx.Client(base_url=server.base_url) as http:
        owner, intruder = (
            http.post("/v1/orgs", json={"name": n, "admin_email": "a@example.com"}).json()
            for n in ("Owner", "Intruder")
        )
        created = http.post(
            "/v1/dashboard/agents",
            json={
                "name": "secret-agent",
                "limits": {"daily_limit": 5000, "per_transaction_limit": 2000, "approval_threshold": 1000},
            },
            headers={"Authorization": f"Bearer {owner['admin_key']}"},
        ).json()
    tx = pay(server, created["api_key"], 1500, merchant="owner-only.example").json()
    agent_id = created["agent"]["id"]

    page = new_page()
    page.goto(server.base_url + "/dashboard/login")
    page.get_by_label("Admin key").fill(intruder["admin_key"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("No transactions here yet").wait_for()
    for path in ("", "/agents", "/audit"):
        page.goto(server.base_url + "/dashboard" + path)
        html = page.content()
        assert "owner-only.example" not in html and "secret-agent" not in html and tx["id"] not in html
    for path in (
        f"/transactions/{tx['id']}",
        f"/agents/{agent_id}",
        f"?agent_id={agent_id}",
        f"?starting_after={tx['id']}",
    ):
        response = page.goto(server.base_url + "/dashboard" + path)
        assert response is not None and response.status == 404, path
        assert "owner-only.example" not in page.content()
    shot(page, screenshots, "12-other-org-404")


def test_the_dashboard_works_without_javascript(server: ServerProcess, new_page: Any) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        org = http.post("/v1/orgs", json={"name": "No JS Ltd", "admin_email": "a@example.com"}).json()
    page = new_page(java_script_enabled=False)
    page.goto(server.base_url + "/dashboard/login")
    page.get_by_label("Admin key").fill(org["admin_key"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Agents").click()
    page.get_by_label("Name").fill("plain-html-bot")
    page.locator("#new-daily_limit").fill("10")
    page.locator("#new-per_transaction_limit").fill("5")
    page.locator("#new-approval_threshold").fill("1")
    page.get_by_role("button", name="Create agent").click()
    assert page.locator("#secret-key").input_value().startswith("apk_test_")
    assert not page.get_by_role("button", name="Copy").is_visible()  # the enhancement stays hidden
