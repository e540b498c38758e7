"""The dashboard API and web dashboard against real PostgreSQL and Valkey: lists, keyset pages, agent controls,
audit log and CSV, sessions and CSRF."""

from __future__ import annotations

import csv
import io
import re
import uuid
from typing import Any

import pytest

from tests.conftest import Agent, Org, make_agent, make_org, signed_post

PAY = "/v1/payment-request"


def pay(client: Any, agent: Agent, amount: int, **fields: Any) -> Any:
    payload = {"amount": amount, "merchant": "api.example.com", "purpose": "tokens", **fields}
    payload.setdefault("idempotency_key", uuid.uuid4().hex)
    return signed_post(client, agent.api_key, PAY, payload)


def bulk_insert(agent: Agent, count: int, *, base: str = "2025-01-01T00:00:00Z", tie_every: int = 0) -> list[str]:
    """`count` approved transactions one second apart (older as g grows); with `tie_every`, runs of rows share a
    created_at so only the id orders them."""
    from shared.platform import db

    step = "(g / %(tie)s)" if tie_every else "g"
    with db.connection() as conn:
        rows = conn.execute(
            f"""
            INSERT INTO transactions (agent_id, organization_id, amount_cents, merchant, purpose, status,
                                      decision_reason, idempotency_key, request_hash, budget_day, created_at)
            SELECT %(agent)s, %(org)s, 100 + g, 'bulk.example.com', 'bulk ' || g, 'approved', 'auto_approved',
                   'bulk-' || gen_random_uuid(), 'h', date '2025-01-01',
                   %(base)s::timestamptz - make_interval(secs => {step})
            FROM generate_series(1, %(count)s) AS g
            RETURNING id
            """,
            {"agent": agent.id, "org": agent.org.id, "count": count, "base": base, "tie": tie_every or 1},
        ).fetchall()
    return [str(r["id"]) for r in rows]


def list_tx(client: Any, org: Org, **query: Any) -> Any:
    return client.get("/v1/dashboard/transactions", params=query, headers=org.admin_headers)


# Transactions: filters and validation ------------------------------------------------------------------------------
def test_transactions_are_listed_newest_first_with_filters(client: Any, org: Org) -> None:
    alice, bob = make_agent(client, org), make_agent(client, org)
    approved = pay(client, alice, 100).json()
    pending = pay(client, alice, 1500).json()
    declined = pay(client, bob, 2500).json()

    body = list_tx(client, org).json()
    assert body["object"] == "list" and body["has_more"] is False and body["next_cursor"] is None
    assert [t["id"] for t in body["data"]] == [declined["id"], pending["id"], approved["id"]]
    # The dashboard's object is the agent's plus the draft policy's verdict (none here: no draft is set).
    assert body["data"][0] == {**{k: v for k, v in declined.items() if k != "error"}, "shadow": None}

    assert [t["id"] for t in list_tx(client, org, agent_id=alice.id).json()["data"]] == [pending["id"], approved["id"]]
    assert [t["id"] for t in list_tx(client, org, status="pending").json()["data"]] == [pending["id"]]
    assert [t["id"] for t in list_tx(client, org, status="declined", agent_id=bob.id).json()["data"]] == [
        declined["id"]
    ]
    today = approved["created_at"][:10]
    assert len(list_tx(client, org, created_from=today, created_to=today).json()["data"]) == 3
    assert list_tx(client, org, created_to="2000-01-01").json()["data"] == []
    assert list_tx(client, org, created_from=approved["created_at"]).json()["data"][-1]["id"] == approved["id"]

    detail = client.get(f"/v1/dashboard/transactions/{pending['id']}", headers=org.admin_headers).json()
    assert detail["id"] == pending["id"] and detail["status"] == "pending"
    assert [e["action"] for e in detail["audit_trail"]] == ["payment.pending_approval"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "paid"}, "status"),
        ({"agent_id": "not-a-uuid"}, "agent_id"),
        ({"created_from": "yesterday"}, "created_from"),
        ({"created_to": "2026-13-01"}, "created_to"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"starting_after": "123"}, "starting_after"),
    ],
)
def test_bad_filter_values_are_422_naming_the_field(client: Any, org: Org, query: dict[str, str], field: str) -> None:
    response = list_tx(client, org, **query)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [e["field"] for e in error["errors"]] == [field]


# Keyset pagination -------------------------------------------------------------------------------------------------
def test_a_thousand_transactions_page_exactly_once_while_new_ones_arrive(client: Any) -> None:
    org = make_org(client)
    agent = make_agent(client, org, max_requests_per_minute=10_000)
    older = bulk_insert(agent, 900)
    # 100 more in runs of ten sharing one created_at, older than the 900: only the id breaks those ties.
    tied = bulk_insert(agent, 100, base="2024-12-01T00:00:00Z", tie_every=10)
    expected = set(older) | set(tied)
    assert len(expected) == 1000

    seen: list[str] = []
    arrived: list[str] = []
    cursor = None
    pages = 0
    while True:
        query: dict[str, Any] = {"limit": 25}
        if cursor:
            query["starting_after"] = cursor
        body = list_tx(client, org, **query).json()
        pages += 1
        seen += [t["id"] for t in body["data"]]
        if not body["has_more"]:
            assert body["next_cursor"] is None
            break
        assert body["next_cursor"] == body["data"][-1]["id"]
        cursor = body["next_cursor"]
        # Meanwhile the agent keeps paying: new rows are newer than every cursor and never shift later pages.
        arrived.append(pay(client, agent, 1).json()["id"])

    first_page = set(seen[:25])
    later = seen[25:]
    assert len(seen) == len(set(seen)), "a transaction appeared twice"
    assert set(later) <= expected and not set(later) & set(arrived)
    assert expected <= set(seen), f"missing {len(expected - set(seen))}"
    assert pages >= 40 and len(first_page) == 25

    # The order is (created_at DESC, id DESC), ties included.
    from shared.platform import db

    with db.connection() as conn:
        rows = conn.execute(
            "SELECT id FROM transactions WHERE organization_id = %s ORDER BY created_at DESC, id DESC", (org.id,)
        ).fetchall()
    assert [t for t in seen if t in expected] == [str(r["id"]) for r in rows if str(r["id"]) in expected]


def test_pages_with_filters_keep_the_filter(client: Any, org: Org) -> None:
    alice, bob = make_agent(client, org), make_agent(client, org)
    mine = set(bulk_insert(alice, 60))
    bulk_insert(bob, 60)
    seen: list[str] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 7, "agent_id": alice.id}
        if cursor:
            query["starting_after"] = cursor
        body = list_tx(client, org, **query).json()
        seen += [t["id"] for t in body["data"]]
        if not body["has_more"]:
            break
        cursor = body["next_cursor"]
    assert seen and len(seen) == len(set(seen)) and set(seen) == mine


# Tenancy -----------------------------------------------------------------------------------------------------------
def test_another_organization_gets_404_for_every_id_and_never_data(client: Any, agent: Agent) -> None:
    intruder = make_org(client)
    tx = pay(client, agent, 100).json()
    assert list_tx(client, intruder).json()["data"] == []
    for query in ({"starting_after": tx["id"]}, {"agent_id": agent.id}):
        response = list_tx(client, intruder, **query)
        assert response.status_code == 404, query
        assert response.json()["error"]["code"] == "not_found"
    headers = intruder.admin_headers
    assert client.get(f"/v1/dashboard/transactions/{tx['id']}", headers=headers).status_code == 404
    assert client.get("/v1/dashboard/transactions/not-a-uuid", headers=headers).status_code == 404
    for action in ("disable", "enable", "rotate-key"):
        assert client.post(f"/v1/dashboard/agents/{agent.id}/{action}", headers=headers).status_code == 404
    for query in ({"transaction_id": tx["id"]}, {"agent_id": agent.id}, {"starting_after": str(uuid.uuid4())}):
        response = client.get("/v1/dashboard/audit-logs", params=query, headers=headers)
        assert response.status_code == 404, query
    csv_response = client.get("/v1/dashboard/audit-logs", params={"format": "csv"}, headers=headers)
    assert csv_response.text.strip().splitlines()[1:] == []
    # The agent still works and its key was not rotated.
    assert pay(client, agent, 100).status_code == 201


def test_dashboard_endpoints_need_the_admin_key(client: Any, agent: Agent) -> None:
    for path in ("/v1/dashboard/transactions", "/v1/dashboard/audit-logs"):
        assert client.get(path).status_code == 401
        agent_key = {"Authorization": f"Bearer {agent.api_key}"}
        assert client.get(path, headers=agent_key).status_code == 401


# Disable, enable, rotate -------------------------------------------------------------------------------------------
def test_disabled_agent_gets_403_on_its_next_request_until_enabled(client: Any, agent: Agent) -> None:
    assert pay(client, agent, 100).status_code == 201  # now cached by this process
    response = client.post(f"/v1/dashboard/agents/{agent.id}/disable", headers=agent.org.admin_headers)
    assert response.status_code == 200 and response.json()["is_active"] is False
    refused = pay(client, agent, 100)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "agent_disabled"
    again = client.post(f"/v1/dashboard/agents/{agent.id}/disable", headers=agent.org.admin_headers)
    assert again.status_code == 200  # twice is a no-op
    enabled = client.post(f"/v1/dashboard/agents/{agent.id}/enable", headers=agent.org.admin_headers)
    assert enabled.status_code == 200 and enabled.json()["is_active"] is True
    assert enabled.json()["spend_today"] == 100
    assert pay(client, agent, 100).status_code == 201
    actions = audit_of(client, agent.org, agent_id=agent.id)
    assert [a for a in actions if a.startswith("agent.")] == ["agent.enabled", "agent.disabled"]


def audit_of(client: Any, org: Org, **query: Any) -> list[str]:
    body = client.get("/v1/dashboard/audit-logs", params={"limit": 100, **query}, headers=org.admin_headers).json()
    return [e["action"] for e in body["data"]]


def test_rotated_key_replaces_the_old_one_at_once(client: Any, agent: Agent) -> None:
    assert pay(client, agent, 100).status_code == 201
    response = client.post(f"/v1/dashboard/agents/{agent.id}/rotate-key", headers=agent.org.admin_headers)
    assert response.status_code == 200
    body = response.json()
    new_key = body["api_key"]
    assert re.fullmatch(r"apk_test_[0-9a-f]{64}", new_key) and new_key != agent.api_key
    assert body["agent"]["id"] == agent.id and new_key.startswith(body["agent"]["key_prefix"])
    old = pay(client, agent, 100)
    assert old.status_code == 401 and old.json()["error"]["code"] == "invalid_api_key"
    rotated = Agent(id=agent.id, api_key=new_key, org=agent.org, body=body)
    assert pay(client, rotated, 100).status_code == 201
    entries = client.get(
        "/v1/dashboard/audit-logs", params={"action": "agent.key_rotated"}, headers=agent.org.admin_headers
    ).json()["data"]
    assert len(entries) == 1 and entries[0]["actor"] == "admin"
    text = str(entries[0])
    assert new_key not in text and agent.api_key not in text
    assert new_key[9:] not in text and agent.api_key[9:] not in text


# Audit log ---------------------------------------------------------------------------------------------------------
def test_audit_log_lists_newest_first_with_filters_and_pages(client: Any, agent: Agent) -> None:
    org = agent.org
    first = pay(client, agent, 100).json()
    pay(client, agent, 1500)
    pay(client, agent, 2500)
    body = client.get("/v1/dashboard/audit-logs", headers=org.admin_headers).json()
    entries = body["data"]
    assert body["object"] == "list" and body["has_more"] is False
    assert entries[-1]["action"] == "payment.approved" and entries[-1]["transaction_id"] == first["id"]
    assert [e["created_at"] for e in entries] == sorted((e["created_at"] for e in entries), reverse=True)
    assert set(entries[0]) == {
        "id",
        "object",
        "organization_id",
        "agent_id",
        "transaction_id",
        "actor",
        "action",
        "details",
        "created_at",
    }
    assert entries[0]["object"] == "audit_log" and entries[0]["organization_id"] == org.id
    assert audit_of(client, org, transaction_id=first["id"]) == ["payment.approved"]
    assert audit_of(client, org, action="payment.pending_approval") == ["payment.pending_approval"]
    assert len(audit_of(client, org, agent_id=agent.id)) == len(entries)

    seen = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 1}
        if cursor:
            query["starting_after"] = cursor
        page = client.get("/v1/dashboard/audit-logs", params=query, headers=org.admin_headers).json()
        seen += [e["id"] for e in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == [e["id"] for e in entries]


def test_audit_csv_streams_every_entry_with_a_header_and_no_formulas(client: Any, agent: Agent) -> None:
    from shared.audit import log as audit
    from shared.platform import db

    org = agent.org
    pay(client, agent, 100)
    with db.connection() as conn:
        # More rows than one export chunk, and values a spreadsheet would run as formulas.
        conn.execute(
            """
            INSERT INTO audit_logs (organization_id, agent_id, actor, action, details)
            SELECT %s, %s, 'system', 'bulk.entry', jsonb_build_object('n', g) FROM generate_series(1, 1200) g
            """,
            (org.id, agent.id),
        )
        for dangerous in ('=HYPERLINK("http://evil")', "+1+1", "-2+3", "@SUM(A1)"):
            audit.record(conn, organization_id=org.id, actor=dangerous, action=dangerous, details={})
    with client.stream(
        "GET", "/v1/dashboard/audit-logs", params={"format": "csv"}, headers=org.admin_headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert response.headers["content-disposition"] == 'attachment; filename="audit-log.csv"'
        assert "content-length" not in response.headers  # streamed, not built up front
        text = "".join(response.iter_text())
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        "id",
        "created_at",
        "action",
        "actor",
        "agent_id",
        "transaction_id",
        "details",
        "organization_id",
    ]
    body = rows[1:]
    assert len(body) == 1 + 1200 + 4
    assert len({r[0] for r in body}) == len(body)
    actions = [r[2] for r in body]
    assert actions[:4] == ["'@SUM(A1)", "'-2+3", "'+1+1", '\'=HYPERLINK("http://evil")']
    assert actions.count("bulk.entry") == 1200 and actions[-1] == "payment.approved"
    assert not any(cell[:1] in "=+-@" for row in body for cell in row if cell)

    filtered = client.get(
        "/v1/dashboard/audit-logs", params={"format": "csv", "action": "payment.approved"}, headers=org.admin_headers
    )
    assert [r[2] for r in list(csv.reader(io.StringIO(filtered.text)))[1:]] == ["payment.approved"]


# The web dashboard: sessions, CSRF, forms --------------------------------------------------------------------------
def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def log_in(client: Any, org: Org) -> str:
    """Log the client in through the login form; returns the CSRF token of its session."""
    page = client.get("/dashboard/login")
    response = client.post(
        "/dashboard/login",
        data={"csrf_token": csrf_of(page.text), "admin_key": org.admin_key},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    return csrf_of(client.get("/dashboard/agents").text)


def test_pages_need_a_session_and_the_cookie_is_signed_httponly_strict(client: Any, org: Org) -> None:
    for path in (
        "/dashboard",
        "/dashboard/agents",
        "/dashboard/audit",
        "/dashboard/billing",
        "/dashboard/audit-log.csv",
    ):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/dashboard/login", path
    page = client.get("/dashboard/login")
    response = client.post(
        "/dashboard/login", data={"csrf_token": csrf_of(page.text), "admin_key": org.admin_key}, follow_redirects=False
    )
    set_cookie = response.headers["set-cookie"]
    assert "agentpay_session=" in set_cookie
    assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie.replace("Strict", "strict")
    assert "Path=/dashboard" in set_cookie
    assert org.admin_key not in set_cookie and org.admin_key[9:] not in set_cookie
    assert org.admin_key not in response.headers.get("location", "")
    assert client.get("/dashboard").status_code == 200

    # A tampered cookie is no session (sent alone, as a browser would send the one cookie it holds).
    value = client.cookies.get("agentpay_session")
    tampered = value[:-2] + ("00" if not value.endswith("00") else "11")
    client.cookies.clear()
    answer = client.get("/dashboard", headers={"Cookie": f"agentpay_session={tampered}"}, follow_redirects=False)
    assert answer.status_code == 303
    assert client.get("/dashboard", headers={"Cookie": f"agentpay_session={value}"}).status_code == 200


def test_a_wrong_key_shows_a_readable_error(client: Any, agent: Agent) -> None:
    page = client.get("/dashboard/login")
    for key, words in (("apa_test_" + "0" * 64, "not valid"), (agent.api_key, "agent key")):
        response = client.post("/dashboard/login", data={"csrf_token": csrf_of(page.text), "admin_key": key})
        assert response.status_code == 401 and words in response.text
        assert "agentpay_session" not in response.headers.get("set-cookie", "")


def test_forms_without_the_right_csrf_token_are_refused_and_change_nothing(app: Any, client: Any, agent: Agent) -> None:
    from fastapi.testclient import TestClient

    token = log_in(client, agent.org)
    url = f"/dashboard/agents/{agent.id}/disable"
    for data in ({}, {"csrf_token": "0" * 64}, {"csrf_token": token + "x"}):
        response = client.post(url, data=data, follow_redirects=False)
        assert response.status_code == 403 and "This form has expired" in response.text
    assert client.post("/dashboard/login", data={"admin_key": agent.org.admin_key}).status_code == 403
    # Another session of the same admin has its own token: this one's does not work there.
    with TestClient(app) as other:
        other_token = log_in(other, agent.org)
        assert other_token != token
        assert other.post(url, data={"csrf_token": token}, follow_redirects=False).status_code == 403
    assert pay(client, agent, 100).status_code == 201, "nothing changed"

    response = client.post(url, data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/dashboard/agents")
    assert pay(client, agent, 100).status_code == 403


def test_logout_ends_the_session(client: Any, org: Org) -> None:
    token = log_in(client, org)
    response = client.post("/dashboard/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and "agentpay_session" in response.headers["set-cookie"]
    assert client.get("/dashboard", follow_redirects=False).status_code == 303


# Server-side sessions: logout, expiry and key changes end them ------------------------------------------------------
def sessions_of(org: Org) -> list[dict[str, Any]]:
    from shared.platform import db

    with db.connection() as conn:
        return conn.execute("SELECT * FROM web_sessions WHERE organization_id = %s", (org.id,)).fetchall()


def as_browser_with(cookie: str) -> dict[str, str]:
    """The headers of a browser holding only this session cookie (a copy taken from another browser)."""
    return {"Cookie": f"agentpay_session={cookie}"}


def test_a_cookie_copied_before_logout_is_refused_after_it(client: Any, agent: Agent) -> None:
    token = log_in(client, agent.org)
    copied = client.cookies.get("agentpay_session")
    response = client.post("/dashboard/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/login?notice=logged_out"
    client.cookies.clear()

    page = client.get("/dashboard", headers=as_browser_with(copied), follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
    disable = client.post(
        f"/dashboard/agents/{agent.id}/disable",
        data={"csrf_token": token},
        headers=as_browser_with(copied),
        follow_redirects=False,
    )
    assert disable.status_code == 303 and disable.headers["location"] == "/dashboard/login"
    assert pay(client, agent, 100).status_code == 201, "the agent is still enabled"
    (session,) = sessions_of(agent.org)
    assert session["revoked_at"] is not None


def test_an_expired_session_is_refused(client: Any, org: Org) -> None:
    from shared.platform import db

    token = log_in(client, org)
    with db.connection() as conn:
        conn.execute(
            "UPDATE web_sessions SET expires_at = now() - interval '1 second' WHERE organization_id = %s", (org.id,)
        )
    assert client.get("/dashboard", follow_redirects=False).headers["location"] == "/dashboard/login"
    response = client.post("/dashboard/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.headers["location"] == "/dashboard/login"


def test_changing_the_admin_key_ends_the_sessions_opened_with_the_old_one(client: Any, agent: Agent) -> None:
    from shared.platform import db

    token = log_in(client, agent.org)
    with db.connection() as conn:
        conn.execute("UPDATE organizations SET admin_key_hash = %s WHERE id = %s", (uuid.uuid4().hex, agent.org.id))
    assert client.get("/dashboard", follow_redirects=False).headers["location"] == "/dashboard/login"
    response = client.post(f"/dashboard/agents/{agent.id}/disable", data={"csrf_token": token}, follow_redirects=False)
    assert response.headers["location"] == "/dashboard/login"
    assert pay(client, agent, 100).status_code == 201, "the agent is still enabled"


def test_revoking_an_organizations_sessions_ends_all_of_them_and_no_one_elses(app: Any, client: Any, org: Org) -> None:
    from fastapi.testclient import TestClient

    from shared.accounts import sessions
    from shared.platform import db

    other_org = make_org(client)
    log_in(client, org)
    with TestClient(app) as second, TestClient(app) as bystander:
        log_in(second, org)
        log_in(bystander, other_org)
        with db.connection() as conn:
            assert sessions.revoke_sessions(conn, organization_id=uuid.UUID(org.id)) == 2
            assert sessions.revoke_sessions(conn, organization_id=uuid.UUID(org.id)) == 0
        for browser in (client, second):
            assert browser.get("/dashboard", follow_redirects=False).headers["location"] == "/dashboard/login"
        assert bystander.get("/dashboard").status_code == 200
    # A new login opens a new session.
    log_in(client, org)
    assert client.get("/dashboard").status_code == 200


def test_the_database_holds_no_cookie_that_opens_a_session(client: Any, org: Org) -> None:
    import hashlib

    log_in(client, org)
    cookie = client.cookies.get("agentpay_session")
    assert len(cookie) >= 43, "at least 256 random bits"
    (session,) = sessions_of(org)
    stored = " ".join(str(value) for value in session.values())
    assert cookie not in stored and org.admin_key not in stored
    assert session["token_hash"] == hashlib.sha256(cookie.encode()).hexdigest()
    client.cookies.clear()
    for forged in (session["token_hash"], str(session["id"])):
        response = client.get("/dashboard", headers=as_browser_with(forged), follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/dashboard/login"
    assert client.get("/dashboard", headers=as_browser_with(cookie)).status_code == 200


def test_the_sweep_deletes_sessions_a_day_after_they_expired(client: Any, org: Org) -> None:
    from shared.config import get_settings
    from shared.payments.sweep import run_sweep
    from shared.platform import db

    log_in(client, org)
    log_in(client, org)
    log_in(client, org)
    ids = sorted(str(s["id"]) for s in sessions_of(org))
    with db.connection() as conn:
        conn.execute("UPDATE web_sessions SET expires_at = now() - interval '25 hours' WHERE id = %s", (ids[0],))
        conn.execute("UPDATE web_sessions SET expires_at = now() - interval '23 hours' WHERE id = %s", (ids[1],))
    report = run_sweep(get_settings())
    assert report.sessions_deleted >= 1 and report.errors == []
    assert sorted(str(s["id"]) for s in sessions_of(org)) == ids[1:]


def test_bad_limits_in_the_form_show_the_api_messages_and_change_nothing(client: Any, agent: Agent) -> None:
    token = log_in(client, agent.org)
    response = client.post(
        f"/dashboard/agents/{agent.id}/limits",
        data={
            "csrf_token": token,
            "daily_limit": "10.00",
            "per_transaction_limit": "20.00",
            "approval_threshold": "abc",
            "max_requests_per_minute": "20",
        },
    )
    assert response.status_code == 422
    assert "must be an amount in dollars" in response.text
    response = client.post(
        f"/dashboard/agents/{agent.id}/limits",
        data={
            "csrf_token": token,
            "daily_limit": "10.00",
            "per_transaction_limit": "20.00",
            "approval_threshold": "5",
            "max_requests_per_minute": "0",
        },
    )
    assert response.status_code == 422
    assert "per_transaction_limit: must not exceed daily_limit" in response.text
    assert "max_requests_per_minute: must be between 1 and 10000" in response.text
    limits = client.get("/v1/dashboard/agents", headers=agent.org.admin_headers).json()["data"][0]["limits"]
    assert limits["daily_limit"] == 5000 and limits["per_transaction_limit"] == 2000

    saved = client.post(
        f"/dashboard/agents/{agent.id}/limits",
        data={"csrf_token": token, "daily_limit": "80", "per_transaction_limit": "25.50", "approval_threshold": "10"},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    limits = client.get("/v1/dashboard/agents", headers=agent.org.admin_headers).json()["data"][0]["limits"]
    assert limits == {
        "daily_limit": 8000,
        "per_transaction_limit": 2550,
        "approval_threshold": 1000,
        "max_requests_per_minute": 20,
    }


def test_an_amount_too_large_for_any_limit_is_a_message_not_a_crash(client: Any, org: Org) -> None:
    token = log_in(client, org)
    response = client.post(
        "/dashboard/agents",
        data={"csrf_token": token, "name": "big", "daily_limit": "1e400", "per_transaction_limit": "1",
              "approval_threshold": "1"},
    )  # fmt: skip
    assert response.status_code == 422 and "must be at most $1,000,000,000.00" in response.text


def test_pages_escape_what_agents_send(client: Any, agent: Agent) -> None:
    tx = pay(
        client,
        agent,
        100,
        merchant="<script>alert(1)</script>",
        purpose="<img src=x onerror=alert(2)>",
        context={"note": "</pre><script>alert(3)</script>"},
    ).json()
    log_in(client, agent.org)
    for path in ("/dashboard", f"/dashboard/transactions/{tx['id']}"):
        html = client.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_session_sees_only_its_own_organization(client: Any, agent: Agent) -> None:
    tx = pay(client, agent, 1500).json()
    intruder = make_org(client)
    token = log_in(client, intruder)
    html = client.get("/dashboard").text
    assert tx["id"] not in html and "api.example.com" not in html
    assert agent.id not in client.get("/dashboard/agents").text
    assert client.get(f"/dashboard/transactions/{tx['id']}").status_code == 404
    assert client.get(f"/dashboard/agents/{agent.id}").status_code == 404
    assert client.get(f"/dashboard?agent_id={agent.id}").status_code == 404
    assert client.get(f"/dashboard?starting_after={tx['id']}").status_code == 404
    response = client.post(f"/dashboard/agents/{agent.id}/disable", data={"csrf_token": token})
    assert response.status_code == 404
    assert pay(client, agent, 100).status_code == 201


def test_the_web_pages_render_for_a_signed_in_admin(client: Any, agent: Agent) -> None:
    pay(client, agent, 100)
    pay(client, agent, 1500)
    log_in(client, agent.org)
    home = client.get("/dashboard")
    assert home.status_code == 200 and "$1.00" in home.text and "$15.00" in home.text
    assert "badge-pending" in home.text and "Waiting for an admin" in home.text
    assert home.headers["content-security-policy"].startswith("default-src 'none'")
    assert "Log out" in client.get("/dashboard/agents").text
    assert "bar-fill" in client.get("/dashboard/agents").text
    assert "payment.approved" in client.get("/dashboard/audit").text
    billing = client.get("/dashboard/billing")
    assert billing.status_code == 200 and "4242" in billing.text
    csv_text = client.get("/dashboard/audit-log.csv").text
    assert csv_text.startswith("id,created_at,action")
    assert client.get("/dashboard/static/dashboard.css").headers["content-type"].startswith("text/css")
    assert client.get("/dashboard/static/../config.py").status_code == 404


# Deciding pending payments from the dashboard ----------------------------------------------------------------------
def test_admin_approves_or_declines_a_pending_payment_through_the_api(client: Any, agent: Agent) -> None:
    headers = agent.org.admin_headers
    first, second = pay(client, agent, 1500).json(), pay(client, agent, 1600).json()
    intruder = make_org(client)
    stolen = client.post(f"/v1/dashboard/transactions/{first['id']}/approve", headers=intruder.admin_headers)
    assert stolen.status_code == 404
    approved = client.post(f"/v1/dashboard/transactions/{first['id']}/approve", headers=headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["decision_reason"] == "approved_by_admin"
    again = client.post(f"/v1/dashboard/transactions/{first['id']}/approve", headers=headers)
    assert again.status_code == 200
    opposite = client.post(f"/v1/dashboard/transactions/{first['id']}/decline", headers=headers)
    assert opposite.status_code == 409 and opposite.json()["error"]["code"] == "already_decided"
    declined = client.post(
        f"/v1/dashboard/transactions/{second['id']}/decline", json={"reason": "not this vendor"}, headers=headers
    )
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    assert (
        client.post(f"/v1/dashboard/transactions/{second['id']}/refund", headers=headers).status_code == 404
    )  # no such route


def test_the_decline_button_needs_the_csrf_token(client: Any, agent: Agent) -> None:
    tx = pay(client, agent, 1500).json()
    token = log_in(client, agent.org)
    url = f"/dashboard/transactions/{tx['id']}/decline"
    assert client.post(url, data={"csrf_token": "nope"}).status_code == 403
    detail = client.get(f"/v1/dashboard/transactions/{tx['id']}", headers=agent.org.admin_headers).json()
    assert detail["status"] == "pending"
    response = client.post(url, data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/dashboard/transactions/{tx['id']}?notice=declined"
    page = client.get(response.headers["location"])
    assert "The payment is declined" in page.text and "badge-declined" in page.text
    detail = client.get(f"/v1/dashboard/transactions/{tx['id']}", headers=agent.org.admin_headers).json()
    assert detail["status"] == "declined" and detail["decision_reason"] == "declined_by_admin"
    assert [e["action"] for e in detail["audit_trail"]][-1] == "payment.declined"


# Forms posted from another origin -----------------------------------------------------------------------------------
# TestClient sends requests to http://testserver, so that is the dashboard's own origin here.
FOREIGN_ORIGINS = {
    "another site": {"Origin": "https://evil.example"},
    "an opaque origin": {"Origin": "null"},
    "a look-alike host": {"Origin": "http://testserver.evil.example"},
    "another scheme": {"Origin": "https://testserver"},
    "another port": {"Origin": "http://testserver:8443"},
    "no Origin, cross-site fetch": {"Sec-Fetch-Site": "cross-site"},
}


@pytest.mark.parametrize("headers", FOREIGN_ORIGINS.values(), ids=FOREIGN_ORIGINS.keys())
def test_a_signed_in_form_posted_from_another_origin_is_refused_and_changes_nothing(
    client: Any, agent: Agent, headers: dict[str, str]
) -> None:
    token = log_in(client, agent.org)
    response = client.post(
        f"/dashboard/agents/{agent.id}/disable", data={"csrf_token": token}, headers=headers, follow_redirects=False
    )
    assert response.status_code == 403 and "This form has expired" in response.text
    assert pay(client, agent, 100).status_code == 201, "the agent is still enabled"
    logout = client.post("/dashboard/logout", data={"csrf_token": token}, headers=headers, follow_redirects=False)
    assert logout.status_code == 403
    assert client.get("/dashboard").status_code == 200, "the session is still open"


@pytest.mark.parametrize("headers", FOREIGN_ORIGINS.values(), ids=FOREIGN_ORIGINS.keys())
def test_login_and_signup_posted_from_another_origin_are_refused(
    client: Any, org: Org, headers: dict[str, str]
) -> None:
    page = client.get("/dashboard/login")
    login = client.post(
        "/dashboard/login",
        data={"csrf_token": csrf_of(page.text), "admin_key": org.admin_key},
        headers=headers,
        follow_redirects=False,
    )
    assert login.status_code == 403 and "This form has expired" in login.text
    assert "agentpay_session" not in login.headers.get("set-cookie", "")
    assert client.get("/dashboard", follow_redirects=False).headers["location"] == "/dashboard/login"
    page = client.get("/dashboard/signup")
    signup = client.post(
        "/dashboard/signup",
        data={"csrf_token": csrf_of(page.text), "name": "Mallory", "admin_email": "m@example.com", "timezone": "UTC"},
        headers=headers,
    )
    assert signup.status_code == 403 and "apa_test_" not in signup.text


def test_forms_from_the_dashboards_own_origin_or_its_public_url_work(client: Any, agent: Agent) -> None:
    from urllib.parse import urlsplit

    from shared.config import get_settings

    public = urlsplit(get_settings().base_url)
    same_origin = [
        {"Origin": "http://testserver"},
        {"Origin": f"{public.scheme}://{public.netloc}"},
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar or a bookmark
        {},  # no browser headers at all: the CSRF token alone decides
    ]
    page = client.get("/dashboard/login")
    login = client.post(
        "/dashboard/login",
        data={"csrf_token": csrf_of(page.text), "admin_key": agent.org.admin_key},
        headers=same_origin[0],
        follow_redirects=False,
    )
    assert login.status_code == 303 and login.headers["location"] == "/dashboard"
    token = csrf_of(client.get("/dashboard/agents").text)
    for headers in same_origin:
        for action, pays in (("disable", 403), ("enable", 201)):
            response = client.post(
                f"/dashboard/agents/{agent.id}/{action}",
                data={"csrf_token": token},
                headers=headers,
                follow_redirects=False,
            )
            assert response.status_code == 303, (headers, response.text)
            assert pay(client, agent, 100).status_code == pays, headers


# Browser isolation headers ------------------------------------------------------------------------------------------
def assert_isolated(response: Any) -> None:
    """The page denies the powerful features no AgentPay page uses, and keeps no opener from another origin."""
    policy = response.headers.get("permissions-policy", "")
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()", "usb=()"):
        assert feature in policy, (response.request.url, policy)
    assert response.headers.get("cross-origin-opener-policy") == "same-origin", response.request.url


def test_every_dashboard_page_and_error_page_sends_the_isolation_headers(client: Any, agent: Agent) -> None:
    assert_isolated(client.get("/dashboard/login"))
    assert_isolated(client.get("/dashboard/signup"))
    token = log_in(client, agent.org)
    for path in ("/dashboard", "/dashboard/agents", f"/dashboard/agents/{agent.id}", "/dashboard/audit"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert_isolated(page)
    billing = client.get("/dashboard/billing")
    assert billing.status_code == 200 and "checkout.stripe.com" in billing.headers["content-security-policy"]
    assert_isolated(billing)
    missing = client.get(f"/dashboard/transactions/{uuid.uuid4()}")
    assert missing.status_code == 404 and "Not found" in missing.text
    assert_isolated(missing)
    expired = client.post(f"/dashboard/agents/{agent.id}/disable", data={"csrf_token": token + "x"})
    assert expired.status_code == 403 and "This form has expired" in expired.text
    assert_isolated(expired)
    bad_limits = client.post(f"/dashboard/agents/{agent.id}/limits", data={"csrf_token": token, "daily_limit": "x"})
    assert bad_limits.status_code == 422
    assert_isolated(bad_limits)


def test_approval_link_pages_send_the_isolation_headers(client: Any, agent: Agent) -> None:
    from datetime import UTC, datetime, timedelta

    from shared.approvals import tokens
    from shared.config import get_settings

    tx = pay(client, agent, 1500).json()
    assert tx["status"] == "pending"
    token = tokens.issue_token(
        transaction_id=tx["id"],
        action="approve",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        secret=get_settings().require("approval_jwt_secret"),
    )
    confirm = client.get(f"/v1/approve/{token}")
    assert confirm.status_code == 200 and "<form" in confirm.text
    assert_isolated(confirm)
    invalid = client.get("/v1/approve/not-a-jwt")
    assert invalid.status_code >= 400 and "This link is not valid" in invalid.text
    assert_isolated(invalid)
