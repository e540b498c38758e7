"""An admin sets an agent's spend policy in a real browser: the editor, the spend bars, a decline by the new rules on
the transactions list, a draft simulated and recorded, the organization's limits; screenshots of each page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.browser.conftest import ConsoleErrors
from tests.browser.test_dashboard_journey import pay, shot
from tests.conftest import ServerProcess


def _nav(page: Any, name: str) -> Any:
    """A link of the main navigation (the agent page has its own "Transactions" and "Agents" links too)."""
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name)


def _words(locator: Any) -> str:
    return " ".join(locator.inner_text().split())


def _log_in(page: Any, server: ServerProcess, name: str) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        org = http.post("/v1/orgs", json={"name": name, "admin_email": "finance@example.com"}).json()
    page.goto(server.base_url + "/dashboard/login")
    page.get_by_label("Admin key").fill(org["admin_key"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Transactions").wait_for()


def _create_agent(page: Any, name: str) -> str:
    _nav(page, "Agents").click()
    page.get_by_label("Name").fill(name)
    page.locator("#new-daily_limit").fill("50")
    page.locator("#new-per_transaction_limit").fill("20")
    page.locator("#new-approval_threshold").fill("10")
    page.get_by_role("button", name="Create agent").click()
    key: str = page.locator("#secret-key").input_value()
    _nav(page, "Agents").click()
    page.get_by_role("link", name="Policy and spend").click()
    page.get_by_role("heading", name="Policy", exact=True).wait_for()
    return key


def test_a_weekly_limit_and_a_blocked_merchant_decline_and_a_draft_shows_what_it_would_change(
    server: ServerProcess, new_page: Any, console: ConsoleErrors, screenshots: Path
) -> None:
    page = new_page()
    console.expected_statuses |= {422}
    _log_in(page, server, "Policy Works")
    agent_key = _create_agent(page, "procurement-bot")

    # The editor: a mistake is named next to its field, in words; then no daily limit but a weekly one, and a
    # blocked merchant.
    page.locator("#policy-daily_limit").fill("")
    page.locator("#policy-weekly_limit").fill("30")
    page.locator("#policy-monthly_limit").fill("25")
    page.locator("#policy-merchant_block").fill("ads.example.com")
    page.get_by_role("button", name="Save policy").click()
    page.get_by_text("The policy was not saved").wait_for()
    assert page.locator("#policy-monthly_limit-error").inner_text() == "Must be at least the weekly limit."
    assert page.locator("#policy-merchant_block").input_value() == "ads.example.com", "what was typed stays"
    shot(page, screenshots, "13-policy-error")
    page.locator("#policy-monthly_limit").fill("")
    page.get_by_role("button", name="Save policy").click()
    page.get_by_text("Policy saved").wait_for()
    assert page.locator(".window-week").inner_text().endswith("$0.00 of $30.00")

    # Payments through the API: three fit the week, the fourth would pass $30.00, the blocked merchant never pays.
    for _ in range(3):
        assert pay(server, agent_key, 950).status_code == 201
    over = pay(server, agent_key, 500)
    assert over.status_code == 402 and over.json()["error"]["code"] == "weekly_limit_exceeded"
    blocked = pay(server, agent_key, 100, merchant="ads.example.com")
    assert blocked.status_code == 402 and blocked.json()["error"]["code"] == "merchant_blocked"

    _nav(page, "Transactions").click()
    rows = page.locator("table.data tbody tr")
    assert rows.filter(has_text="$5.00").locator(".reason").inner_text() == "Over the weekly limit"
    assert rows.filter(has_text="ads.example.com").locator(".reason").inner_text() == "The merchant is blocked"
    shot(page, screenshots, "14-policy-declines")

    # The agent page: each window against its limit.
    _nav(page, "Agents").click()
    page.get_by_role("link", name="Policy and spend").click()
    week = page.locator(".window-week")
    assert week.inner_text().endswith("$28.50 of $30.00") and week.locator(".bar-high").count() == 1
    assert page.locator(".window-day").inner_text().endswith("$28.50, no daily limit")
    assert page.locator(".window-payments_day").inner_text().endswith("3 payments, no limit on payments a day")
    shot(page, screenshots, "15-policy-spend")

    # Try a draft: a tighter week, no block. Two of the five requests would have gone the other way.
    page.locator("details.draft-rules > summary").click()
    page.locator("#draft-weekly_limit").fill("20")
    page.locator("#draft-merchant_block").fill("")
    page.get_by_role("button", name="Simulate last 30 days").click()
    result = page.locator("#simulation")
    result.wait_for()
    assert "5 requests replayed: 2 would have been decided differently." in result.inner_text()
    changes = result.locator("table.changes tbody tr")
    assert changes.count() == 2
    third = changes.filter(has_text="api.openai.com")
    assert _words(third.locator("td").nth(3)) == "Approved Approved automatically (within limits)"
    assert _words(third.locator("td").nth(4)) == "Declined Over the weekly limit"
    unblocked = changes.filter(has_text="ads.example.com")
    assert _words(unblocked.locator("td").nth(3)) == "Declined The merchant is blocked"
    assert _words(unblocked.locator("td").nth(4)).startswith("Approved")
    assert page.locator("#policy-weekly_limit").input_value() == "30.00", "a simulation saves nothing"
    shot(page, screenshots, "16-draft-simulation")

    # Record it beside real decisions: the next payment is approved, and the list notes the draft would not have.
    page.get_by_role("button", name="Record beside real decisions").click()
    page.get_by_text("A draft is recording beside real decisions.").wait_for()
    assert pay(server, agent_key, 100).status_code == 201
    _nav(page, "Transactions").click()
    assert page.locator(".shadow-note").all_inner_texts() == ["Draft: declined — Over the weekly limit"]
    shot(page, screenshots, "17-draft-notes")

    # The organization's limits, over every agent, on the settings page.
    _nav(page, "Settings").click()
    page.get_by_label("Daily limit").fill("100")
    page.get_by_role("button", name="Save organization limits").click()
    page.get_by_text("The organization's limits are saved").wait_for()
    assert page.locator(".window-organization_day").inner_text().endswith("$29.50 of $100.00")
    shot(page, screenshots, "18-settings")


def test_the_policy_editor_works_without_javascript(server: ServerProcess, new_page: Any) -> None:
    page = new_page(java_script_enabled=False)
    _log_in(page, server, "No JS Policies")
    _create_agent(page, "plain-policy-bot")
    page.locator("#policy-max_payments_per_day").fill("3")
    page.locator("#policy-merchant_caps").fill("api.openai.com 5")
    page.get_by_role("button", name="Save policy").click()
    page.get_by_text("Policy saved").wait_for()
    assert page.locator(".window-payments_day").inner_text().endswith("0 of 3 payments")
    page.get_by_role("button", name="Simulate last 30 days").click()
    page.get_by_text("there is nothing to replay").wait_for()
