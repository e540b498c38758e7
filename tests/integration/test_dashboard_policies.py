"""The web dashboard's policy pages against real PostgreSQL and Valkey: each window's spend as a bar, the policy
editor and its messages, the "Try a draft" panel (simulation, recording), the draft's verdict beside real decisions,
and the organization's limits on the settings page."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import pytest

from tests.conftest import Agent, Org, make_agent, make_org, signed_post
from tests.integration.test_dashboard_api import FOREIGN_ORIGINS, csrf_of, log_in

PAY = "/v1/payment-request"

# The editor's fields as an admin fills them: everything set, so a test changes only what it is about.
FILLED = {
    "per_transaction_limit": "20",
    "daily_limit": "50",
    "weekly_limit": "200",
    "monthly_limit": "500",
    "approval_threshold": "10",
    "max_payments_per_day": "",
    "max_requests_per_minute": "10000",
    "merchant_allow": "",
    "merchant_block": "",
    "merchant_caps": "",
    "dual_approval_above": "",
}


def pay(client: Any, agent: Agent, amount: int, merchant: str = "api.example.com") -> Any:
    from shared.platform.clock import clock

    payload = {"amount": amount, "merchant": merchant, "purpose": "p", "idempotency_key": uuid.uuid4().hex}
    return signed_post(client, agent.api_key, PAY, payload, timestamp=int(clock.time()))


def policy_of(client: Any, agent: Agent) -> dict[str, Any]:
    return client.get(f"/v1/dashboard/agents/{agent.id}/policy", headers=agent.org.admin_headers).json()


def shadow_of(agent: Agent) -> Any:
    from shared.platform import db
    from shared.policy import admin as policy_admin

    with db.connection() as conn:
        return policy_admin.get_shadow(conn, organization_id=uuid.UUID(agent.org.id), agent_id=uuid.UUID(agent.id))


def text_of(page: str) -> str:
    """The page's words as a reader sees them: tags dropped, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def field_error(page: str, element_id: str) -> str:
    found = re.search(rf'<p class="field-error" id="{element_id}-error">([^<]*)</p>', page)
    assert found, f"no message next to #{element_id}"
    return html.unescape(found.group(1))


def field_value(page: str, element_id: str) -> str:
    found = re.search(rf'<input id="{element_id}"[^>]*value="([^"]*)"', page)
    if found:
        return html.unescape(found.group(1))
    area = re.search(rf'<textarea id="{element_id}"[^>]*>([^<]*)</textarea>', page)
    assert area, f"no field #{element_id}"
    return html.unescape(area.group(1))


def bar_of(page: str, window: str) -> str:
    found = re.search(rf'<div class="spend window-{window}">(.*?)</div>\s*</div>', page, re.S)
    assert found, f"no {window} window on the page"
    return text_of(found.group(1)) + (" [bar]" if 'class="bar' in found.group(0) else "")


# The agent page: spend and the editor ------------------------------------------------------------------------------
def test_the_agent_page_shows_each_window_against_its_limit_and_the_policy_in_its_fields(client: Any, org: Org) -> None:
    agent = make_agent(client, org)
    document = {
        "limits": {"per_transaction_limit": 2000, "daily_limit": 5000, "weekly_limit": 12000, "monthly_limit": None,
                   "approval_threshold": 1500, "max_payments_per_day": 4, "max_requests_per_minute": 10000},
        "merchants": {"allow": [], "block": ["ads.example.com", "*.tracker.example"],
                      "limits": [{"merchant": "api.openai.com", "daily_limit": 2500}]},
        "approval": {"new_merchant": True, "dual_approval_above": 1800},
    }  # fmt: skip
    assert client.put(f"/v1/dashboard/agents/{agent.id}/policy", json=document, headers=org.admin_headers).is_success
    assert pay(client, agent, 1250, merchant="api.openai.com").json()["status"] == "pending"  # a new merchant
    assert pay(client, agent, 999, merchant="ads.example.com").status_code == 402
    log_in(client, org)

    page = client.get(f"/dashboard/agents/{agent.id}").text
    assert "$12.50 of $50.00" in bar_of(page, "day") and "[bar]" in bar_of(page, "day")
    assert "$12.50 of $120.00" in bar_of(page, "week")
    assert "$12.50, no monthly limit" in bar_of(page, "month") and "[bar]" not in bar_of(page, "month")
    assert "1 of 4 payments" in bar_of(page, "payments_day")
    assert 'style="width: 25%"' in page  # the day: 12.50 of 50.00
    assert "window-organization_day" not in page, "no ceiling, no organization bar"

    assert field_value(page, "policy-weekly_limit") == "120.00"
    assert field_value(page, "policy-monthly_limit") == ""
    assert field_value(page, "policy-max_payments_per_day") == "4"
    assert field_value(page, "policy-merchant_block") == "ads.example.com\n*.tracker.example"
    assert field_value(page, "policy-merchant_caps") == "api.openai.com 25.00"
    assert field_value(page, "policy-dual_approval_above") == "18.00"
    assert 'id="policy-approval_new_merchant" name="approval_new_merchant" value="on" checked' in page

    token = csrf_of(page)
    assert client.post("/dashboard/settings/ceiling", data={"csrf_token": token, "daily_limit": "100"}).is_success
    page = client.get(f"/dashboard/agents/{agent.id}").text
    assert "$12.50 of $100.00" in bar_of(page, "organization_day")
    assert "window-organization_month" not in page, "only the limits the ceiling sets"


def test_saving_the_policy_form_replaces_the_whole_policy_from_the_next_request(client: Any, agent: Agent) -> None:
    token = log_in(client, agent.org)
    form = {
        **FILLED,
        "csrf_token": token,
        "weekly_limit": "1,250.50",
        "monthly_limit": "",
        "max_payments_per_day": "30",
        "merchant_allow": "api.openai.com\n\n*.Example.com, data.vendor.example\n",
        "merchant_block": "ads.example.com",
        "merchant_caps": "api.openai.com 15\ndata.vendor.example: $7.25",
        "approval_new_merchant": "on",
        "dual_approval_above": "15",
    }
    saved = client.post(f"/dashboard/agents/{agent.id}/policy", data=form, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"] == f"/dashboard/agents/{agent.id}?notice=policy_saved"
    assert "Policy saved. It applies from the agent's next request." in text_of(
        client.get(saved.headers["location"]).text
    )
    assert policy_of(client, agent) == {
        "limits": {"per_transaction_limit": 2000, "daily_limit": 5000, "weekly_limit": 125050, "monthly_limit": None,
                   "approval_threshold": 1000, "max_requests_per_minute": 10000, "max_payments_per_day": 30},
        "merchants": {"allow": ["api.openai.com", "*.example.com", "data.vendor.example"], "block": ["ads.example.com"],
                      "limits": [{"merchant": "api.openai.com", "daily_limit": 1500},
                                 {"merchant": "data.vendor.example", "daily_limit": 725}]},
        "approval": {"new_merchant": True, "dual_approval_above": 1500},
    }  # fmt: skip
    declined = pay(client, agent, 500, merchant="ads.example.com")
    assert declined.status_code == 402 and declined.json()["error"]["code"] == "merchant_blocked"
    audit = client.get(
        "/v1/dashboard/audit-logs", params={"action": "policy.updated"}, headers=agent.org.admin_headers
    ).json()["data"]
    assert [(e["actor"], e["details"]["after"]["limits"]["weekly_limit"]) for e in audit] == [("admin", 125050)]

    # Unchecking the box and emptying a field are changes too.
    # A browser sends nothing for an unchecked box.
    again = {name: value for name, value in form.items() if name != "approval_new_merchant"} | {
        "max_payments_per_day": ""
    }
    assert client.post(f"/dashboard/agents/{agent.id}/policy", data=again, follow_redirects=False).status_code == 303
    after = policy_of(client, agent)
    assert after["approval"]["new_merchant"] is False and after["limits"]["max_payments_per_day"] is None


BAD_FIELDS = {
    "not dollars": ({"weekly_limit": "lots"}, "weekly_limit", "Must be an amount in dollars, like 50.00."),
    "cents of cents": (
        {"daily_limit": "10.005"}, "daily_limit", "Must be an amount in dollars with at most 2 decimals."
    ),
    "negative": ({"monthly_limit": "-5"}, "monthly_limit", "Must be 0 or more."),
    "too large": ({"monthly_limit": "1e400"}, "monthly_limit", "Must be at most $1,000,000,000.00."),
    "week under the day": ({"weekly_limit": "40"}, "weekly_limit", "Must be at least the daily limit."),
    "month under the week": ({"monthly_limit": "150"}, "monthly_limit", "Must be at least the weekly limit."),
    "threshold over a payment": (
        {"approval_threshold": "25"}, "approval_threshold", "Must not exceed the per-payment limit."
    ),
    "a count in words": ({"max_payments_per_day": "ten"}, "max_payments_per_day", "Must be a whole number, like 20."),
    "no payments": ({"max_payments_per_day": "0"}, "max_payments_per_day", "Must be between 1 and 1000000."),
    "a rate out of range": (
        {"max_requests_per_minute": "100000"}, "max_requests_per_minute", "Must be between 1 and 10000."
    ),
    "a bad allowed host": (
        {"merchant_allow": "api.openai.com\n\nbad_host"}, "merchant_allow",
        "Line 3: 'bad_host' is not a host name, or \"*.\" and a host name.",
    ),
    "a bad blocked host": ({"merchant_block": "*.*.example"}, "merchant_block", "Line 1: '*.*.example' is not"),
    "a cap without an amount": (
        {"merchant_caps": "api.openai.com"}, "merchant_caps",
        "Line 1: write the merchant, a space and its daily amount, like api.openai.com 50.00.",
    ),
    "a cap in words": (
        {"merchant_caps": "api.openai.com fifty"}, "merchant_caps",
        "Line 1: the daily amount must be an amount in dollars, like 50.00.",
    ),
    "a cap on a pattern": (
        {"merchant_caps": "*.openai.com 5"}, "merchant_caps", "Line 1: '*.openai.com' is not one host name (no *)."
    ),
    "two caps for a host": (
        {"merchant_caps": "api.openai.com 5\nAPI.openai.com 6"}, "merchant_caps",
        "Line 2: api.openai.com has a cap already.",
    ),
    "dual approval in words": (
        {"dual_approval_above": "twenty"}, "dual_approval_above", "Must be an amount in dollars, like 50.00."
    ),
}  # fmt: skip


@pytest.mark.parametrize(("change", "name", "message"), BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_a_bad_field_is_named_next_to_it_keeps_what_was_typed_and_changes_nothing(
    client: Any, agent: Agent, change: dict[str, str], name: str, message: str
) -> None:
    token = log_in(client, agent.org)
    before = policy_of(client, agent)
    response = client.post(f"/dashboard/agents/{agent.id}/policy", data={**FILLED, **change, "csrf_token": token})
    assert response.status_code == 422
    assert "The policy was not saved. Fix the fields marked below." in response.text
    assert field_error(response.text, f"policy-{name}").startswith(message)
    assert re.search(rf'id="policy-{name}"[^>]*aria-invalid="true"', response.text)
    assert field_value(response.text, f"policy-{name}") == change[name]
    assert policy_of(client, agent) == before


def test_a_policy_without_any_spending_limit_says_so(client: Any, agent: Agent) -> None:
    token = log_in(client, agent.org)
    empty = dict.fromkeys(("per_transaction_limit", "daily_limit", "weekly_limit", "monthly_limit"), "")
    response = client.post(f"/dashboard/agents/{agent.id}/policy", data={**FILLED, **empty, "csrf_token": token})
    assert response.status_code == 422
    assert "Set at least one of the per-payment, daily, weekly or monthly limits." in text_of(response.text)


def test_every_message_of_a_form_shows_at_once(client: Any, agent: Agent) -> None:
    token = log_in(client, agent.org)
    bad = {"weekly_limit": "x", "merchant_caps": "a.example\nb.example 1.234", "max_payments_per_day": "many"}
    response = client.post(f"/dashboard/agents/{agent.id}/policy", data={**FILLED, **bad, "csrf_token": token})
    assert response.status_code == 422
    assert field_error(response.text, "policy-merchant_caps") == (
        "Line 1: write the merchant, a space and its daily amount, like api.openai.com 50.00. "
        "Line 2: the daily amount must be an amount in dollars with at most 2 decimals."
    )
    assert field_error(response.text, "policy-weekly_limit") and field_error(
        response.text, "policy-max_payments_per_day"
    )


# Try a draft ------------------------------------------------------------------------------------------------------
def test_a_simulation_lists_what_the_draft_would_have_changed_and_changes_nothing(client: Any, agent: Agent) -> None:
    ids = [pay(client, agent, 800).json()["id"] for _ in range(3)]
    blocked = pay(client, agent, 300, merchant="ads.example.com").json()
    over = pay(client, agent, 1200).json()  # above the $10.00 threshold: pending
    assert over["status"] == "pending" and blocked["status"] == "approved"
    token = log_in(client, agent.org)
    before = policy_of(client, agent)

    draft = {**FILLED, "merchant_block": "ads.example.com", "daily_limit": "30", "csrf_token": token}
    response = client.post(f"/dashboard/agents/{agent.id}/draft", data={**draft, "action": "simulate"})
    assert response.status_code == 200
    result = text_of(response.text.split('id="simulation"')[1].split("<form")[0])
    assert "5 requests replayed: 2 would have been decided differently." in result
    # Actually 4 approved and 1 pending; with the draft, the blocked one and the one past $30.00 a day are declined.
    assert re.search(r"Approved 4 3 Pending 1 0 Declined 0 2", result), result
    changes = response.text.split('class="data changes"')[1]
    assert f'href="/dashboard/transactions/{blocked["id"]}"' in changes
    assert f'href="/dashboard/transactions/{over["id"]}"' in changes
    assert not any(f"/dashboard/transactions/{i}" in changes for i in ids)
    words = text_of(changes)
    assert "The merchant is blocked" in words and "Over the daily limit" in words
    assert "Waiting for an admin's decision" in words and "ads.example.com" in words and "$3.00" in words
    # The form keeps the draft for another try; nothing was saved or recorded.
    assert field_value(response.text, "draft-daily_limit") == "30"
    assert field_value(response.text, "policy-daily_limit") == "50.00"
    assert policy_of(client, agent) == before and shadow_of(agent) is None


def test_a_simulation_with_nothing_to_replay_says_so(client: Any, agent: Agent) -> None:
    token = log_in(client, agent.org)
    response = client.post(
        f"/dashboard/agents/{agent.id}/draft", data={**FILLED, "csrf_token": token, "action": "simulate"}
    )
    assert response.status_code == 200
    assert "made no payment requests in the last 30 days" in text_of(response.text)


def test_a_bad_draft_is_named_next_to_its_field_and_neither_runs_nor_records(client: Any, agent: Agent) -> None:
    token = log_in(client, agent.org)
    for action in ("simulate", "record"):
        response = client.post(
            f"/dashboard/agents/{agent.id}/draft",
            data={**FILLED, "weekly_limit": "10", "csrf_token": token, "action": action},
        )
        assert response.status_code == 422
        assert "The draft has problems. Fix the fields marked below." in response.text
        assert field_error(response.text, "draft-weekly_limit") == "Must be at least the daily limit."
        assert 'id="policy-weekly_limit-error"' not in response.text, "the editor is untouched"
        assert 'id="simulation"' not in response.text
    assert shadow_of(agent) is None


def test_a_recorded_draft_notes_where_it_differs_until_it_is_stopped(client: Any, agent: Agent) -> None:
    token = log_in(client, agent.org)
    page = client.get(f"/dashboard/agents/{agent.id}").text
    assert "No draft is recording." in page and "Stop recording" not in page

    draft = {**FILLED, "merchant_block": "ads.example.com", "weekly_limit": "60", "csrf_token": token}
    recorded = client.post(
        f"/dashboard/agents/{agent.id}/draft", data={**draft, "action": "record"}, follow_redirects=False
    )
    assert recorded.status_code == 303
    page = client.get(recorded.headers["location"]).text
    assert "The draft is recording" in page and "A draft is recording beside real decisions." in text_of(page)
    assert field_value(page, "draft-weekly_limit") == "60.00", "the draft form shows the draft being recorded"
    assert field_value(page, "policy-weekly_limit") == "", "the policy is unchanged (it has no weekly limit)"
    assert shadow_of(agent)["merchants"]["block"] == ["ads.example.com"]

    same = pay(client, agent, 500).json()
    differs = pay(client, agent, 700, merchant="ads.example.com").json()
    assert same["status"] == differs["status"] == "approved", "a draft never changes an outcome"
    listing = client.get("/dashboard").text
    notes = re.findall(r'<p class="shadow-note">([^<]*)</p>', listing)
    assert [html.unescape(n) for n in notes] == ["Draft: declined — The merchant is blocked"]
    detail = text_of(client.get(f"/dashboard/transactions/{differs['id']}").text)
    assert "Draft: declined — The merchant is blocked" in detail
    assert "Would have declined it: The merchant is blocked" in detail
    assert "Same decision (Approved automatically (within limits))" in text_of(
        client.get(f"/dashboard/transactions/{same['id']}").text
    )

    stopped = client.post(
        f"/dashboard/agents/{agent.id}/draft/stop", data={"csrf_token": token}, follow_redirects=False
    )
    assert stopped.status_code == 303
    page = client.get(stopped.headers["location"]).text
    assert "The draft stopped recording." in page and "No draft is recording." in page
    assert shadow_of(agent) is None
    later = pay(client, agent, 800, merchant="ads.example.com").json()
    assert "Draft:" not in text_of(client.get(f"/dashboard/transactions/{later['id']}").text)
    assert len(re.findall(r'class="shadow-note"', client.get("/dashboard").text)) == 1, "earlier notes stay"
    actions = [
        e["action"]
        for e in client.get("/v1/dashboard/audit-logs", headers=agent.org.admin_headers).json()["data"]
        if e["action"].startswith("policy.")
    ]
    assert actions == ["policy.shadow_removed", "policy.shadow_set"]


def test_a_decision_decided_the_same_way_by_people_gets_no_note(client: Any, agent: Agent) -> None:
    token = log_in(client, agent.org)
    client.post(f"/dashboard/agents/{agent.id}/draft", data={**FILLED, "csrf_token": token, "action": "record"})
    pending = pay(client, agent, 1500).json()
    assert pending["status"] == "pending"
    client.post(f"/dashboard/transactions/{pending['id']}/approve", data={"csrf_token": token})
    assert "shadow-note" not in client.get("/dashboard").text, "the draft also sent it to people"


# The organization's limits --------------------------------------------------------------------------------------
def test_the_settings_page_edits_the_organizations_limits_and_shows_their_spend(client: Any, agent: Agent) -> None:
    assert pay(client, agent, 750).status_code == 201
    token = log_in(client, agent.org)
    page = client.get("/dashboard/settings")
    assert page.status_code == 200 and 'aria-current="page">Settings' in page.text
    assert field_value(page.text, "ceiling-daily_limit") == ""
    assert "$7.50, no daily limit for all agents" in bar_of(page.text, "organization_day")

    bad = client.post(
        "/dashboard/settings/ceiling", data={"csrf_token": token, "daily_limit": "100", "monthly_limit": "50"}
    )
    assert bad.status_code == 422 and "The limits were not saved." in bad.text
    assert field_error(bad.text, "ceiling-daily_limit") == "Must not exceed the monthly limit."
    words = client.post("/dashboard/settings/ceiling", data={"csrf_token": token, "monthly_limit": "a lot"})
    assert field_error(words.text, "ceiling-monthly_limit") == "Must be an amount in dollars, like 50.00."
    assert client.get("/v1/dashboard/organization/policy", headers=agent.org.admin_headers).json() == {
        "limits": {"daily_limit": None, "monthly_limit": None}
    }

    saved = client.post(
        "/dashboard/settings/ceiling",
        data={"csrf_token": token, "daily_limit": "10", "monthly_limit": "1,000"},
        follow_redirects=False,
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/dashboard/settings?notice=ceiling_saved"
    page = client.get(saved.headers["location"]).text
    assert "The organization's limits are saved." in text_of(page)
    assert "$7.50 of $10.00" in bar_of(page, "organization_day") and 'style="width: 75%"' in page
    assert "$7.50 of $1,000.00" in bar_of(page, "organization_month")
    assert client.get("/v1/dashboard/organization/policy", headers=agent.org.admin_headers).json() == {
        "limits": {"daily_limit": 1000, "monthly_limit": 100000}
    }
    declined = pay(client, agent, 300)
    assert declined.status_code == 402 and declined.json()["error"]["code"] == "organization_daily_limit_exceeded"
    assert "Over the organization's daily limit" in text_of(client.get("/dashboard").text)

    cleared = client.post("/dashboard/settings/ceiling", data={"csrf_token": token}, follow_redirects=False)
    assert cleared.status_code == 303
    assert client.get("/v1/dashboard/organization/policy", headers=agent.org.admin_headers).json() == {
        "limits": {"daily_limit": None, "monthly_limit": None}
    }


# The forms' protections -----------------------------------------------------------------------------------------
FORMS = {
    "policy": ("/dashboard/agents/{agent}/policy", {**FILLED, "weekly_limit": "", "monthly_limit": ""}),
    "simulate": ("/dashboard/agents/{agent}/draft", {**FILLED, "action": "simulate"}),
    "record": ("/dashboard/agents/{agent}/draft", {**FILLED, "action": "record"}),
    "stop": ("/dashboard/agents/{agent}/draft/stop", {}),
    "ceiling": ("/dashboard/settings/ceiling", {"daily_limit": "1"}),
}


def _state(client: Any, agent: Agent) -> tuple[Any, ...]:
    ceiling = client.get("/v1/dashboard/organization/policy", headers=agent.org.admin_headers).json()
    return policy_of(client, agent), shadow_of(agent), ceiling


@pytest.mark.parametrize(("path", "data"), FORMS.values(), ids=FORMS.keys())
def test_the_policy_forms_need_the_sessions_token_and_our_origin(
    client: Any, agent: Agent, path: str, data: dict[str, str]
) -> None:
    token = log_in(client, agent.org)
    client.post(f"/dashboard/agents/{agent.id}/draft", data={**FILLED, "csrf_token": token, "action": "record"})
    before = _state(client, agent)
    url = path.format(agent=agent.id)
    for sent, headers in (
        ({}, {}),
        ({"csrf_token": token + "x"}, {}),
        *(({"csrf_token": token}, foreign) for foreign in FOREIGN_ORIGINS.values()),
    ):
        response = client.post(url, data={**data, **sent}, headers=headers, follow_redirects=False)
        assert response.status_code == 403 and "This form has expired" in response.text, (sent, headers)
    assert _state(client, agent) == before
    response = client.post(url, data={**data, "csrf_token": token}, headers={"Origin": "http://testserver"})
    assert response.status_code == 200, "the same form from our page works"


def test_another_organizations_session_reaches_none_of_it(client: Any, agent: Agent) -> None:
    before = _state(client, agent)
    token = log_in(client, make_org(client))
    assert client.get(f"/dashboard/agents/{agent.id}").status_code == 404
    for path, data in FORMS.values():
        if "{agent}" in path:
            response = client.post(path.format(agent=agent.id), data={**data, "csrf_token": token})
            assert response.status_code == 404, path
    assert _state(client, agent) == before


def test_the_first_limits_form_still_saves_and_shows_its_errors_on_the_new_page(client: Any, agent: Agent) -> None:
    token = log_in(client, agent.org)
    bad = client.post(
        f"/dashboard/agents/{agent.id}/limits",
        data={"csrf_token": token, "daily_limit": "10", "per_transaction_limit": "20", "approval_threshold": "5"},
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "policy-per_transaction_limit") == "per_transaction_limit: must not exceed daily_limit"
    assert field_value(bad.text, "policy-daily_limit") == "10", "what was sent"
    assert field_value(bad.text, "policy-weekly_limit") == "", "the rest: the policy as it is"
