"""POST /v1/payment-request against real PostgreSQL and Valkey: decisions, validation, idempotency, audit."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import Agent, make_agent, make_org, signed_get, signed_post

PATH = "/v1/payment-request"


def pay(client: Any, agent: Agent, amount: int, key: str | None = None, **fields: Any) -> Any:
    payload = {"amount": amount, "merchant": "api.example.com", "purpose": "tokens", **fields}
    payload["idempotency_key"] = key or uuid.uuid4().hex
    return signed_post(client, agent.api_key, PATH, payload)


def audit_actions(transaction_id: str) -> list[str]:
    from shared.platform import db

    with db.connection() as conn:
        rows = conn.execute(
            "SELECT action FROM audit_logs WHERE transaction_id = %s ORDER BY created_at", (transaction_id,)
        ).fetchall()
    return [r["action"] for r in rows]


def spent_counter(agent: Agent) -> int:
    from shared.budget import engine as budget
    from shared.platform.clock import clock

    day = budget.budget_day(agent.org.body["organization"]["timezone"], clock.now())
    return budget.get_engine().spent(uuid.UUID(agent.org.body["organization"]["id"]), uuid.UUID(agent.id), day)


# Decisions ----------------------------------------------------------------------------------------------------
def test_small_amount_is_approved_with_201_and_audited(client: Any, agent: Agent) -> None:
    response = pay(client, agent, 500, context={"invoice": "INV-1", "lines": [1, 2]})
    assert response.status_code == 201, response.text
    tx = response.json()
    assert tx["status"] == "approved" and tx["decision_reason"] == "auto_approved"
    assert tx["amount"] == 500 and tx["context"] == {"invoice": "INV-1", "lines": [1, 2]}
    assert tx["approval_expires_at"] is None and tx["stripe_charge_id"] is None
    assert audit_actions(tx["id"]) == ["payment.approved"]
    assert spent_counter(agent) == 500


def test_amount_above_threshold_is_pending_with_202_and_holds_budget(client: Any, agent: Agent) -> None:
    response = pay(client, agent, 1500)
    assert response.status_code == 202
    tx = response.json()
    assert tx["status"] == "pending" and tx["decision_reason"] == "approval_required"
    assert tx["approval_expires_at"] is not None
    assert audit_actions(tx["id"]) == ["payment.pending_approval"]
    assert spent_counter(agent) == 1500


def test_above_per_transaction_limit_is_402_with_the_declined_transaction(client: Any, agent: Agent) -> None:
    response = pay(client, agent, 2001)
    assert response.status_code == 402
    body = response.json()
    assert body["status"] == "declined" and body["decision_reason"] == "per_transaction_limit_exceeded"
    assert body["error"]["type"] == "budget" and body["error"]["code"] == "per_transaction_limit_exceeded"
    assert body["error"]["limit"] == 2000 and body["error"]["requested"] == 2001
    assert body["error"]["message"] == "Per-transaction limit of $20.00 would be exceeded ($20.01 requested)."
    assert sorted(audit_actions(body["id"])) == ["budget.exceeded", "payment.declined"]
    assert spent_counter(agent) == 0


def test_daily_limit_declines_what_would_exceed_it(client: Any, agent: Agent) -> None:
    for _ in range(4):
        assert pay(client, agent, 1000).status_code == 201
    response = pay(client, agent, 1001)
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "daily_limit_exceeded"
    # In dollars, and "spent or held": pending approvals hold budget too. The numbers stay cents in the fields.
    assert (
        error["message"] == "Daily limit of $50.00 would be exceeded ($40.00 already spent or held, $10.01 requested)."
    )
    assert (error["limit"], error["spent"], error["requested"]) == (5000, 4000, 1001)
    assert pay(client, agent, 1000).status_code == 201  # exactly up to the limit is fine
    assert pay(client, agent, 1).status_code == 402
    assert spent_counter(agent) == 5000


def test_every_outcome_is_stored_as_a_row_with_its_reason(client: Any, agent: Agent) -> None:
    ids = [pay(client, agent, amount).json()["id"] for amount in (100, 1500, 3000)]
    for tx_id, reason in zip(
        ids, ["auto_approved", "approval_required", "per_transaction_limit_exceeded"], strict=True
    ):
        stored = signed_get(client, agent.api_key, f"/v1/transactions/{tx_id}").json()
        assert stored["decision_reason"] == reason


# Validation ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": 100_000_001}, "amount"),
        ({"amount": "100"}, "amount"),
        ({"amount": 12.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"merchant": ""}, "merchant"),
        ({"merchant": "m" * 256}, "merchant"),
        ({"purpose": "   "}, "purpose"),
        ({"purpose": "p" * 2001}, "purpose"),
        ({"context": ["not", "an", "object"]}, "context"),
        ({"context": {"blob": "x" * (16 * 1024)}}, "context"),
        ({"callback_url": "http://example.com/hook"}, "callback_url"),
        ({"callback_url": "ftp://example.com/hook"}, "callback_url"),
        ({"idempotency_key": "k" * 256}, "idempotency_key"),
        ({"amont": 5}, "amont"),
    ],
)
def test_each_bad_field_gets_a_precise_422(client: Any, agent: Agent, fields: dict[str, Any], field: str) -> None:
    payload: dict[str, Any] = {
        "amount": 100,
        "merchant": "m",
        "purpose": "p",
        "idempotency_key": uuid.uuid4().hex,
        **fields,
    }
    response = signed_post(client, agent.api_key, PATH, payload)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [e["field"] for e in error["errors"]] == [field]


@pytest.mark.parametrize("amount", [5.0, 12.5, 1e3, "500", True, None], ids=repr)
def test_a_non_integer_amount_is_refused_in_cents(client: Any, agent: Agent, amount: Any) -> None:
    # 5.0 from someone thinking in dollars must not become 5 cents, nor be refused in words that hide why.
    sentence = "amount is an integer number of cents: 500 means $5.00"
    response = pay(client, agent, amount)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["errors"] == [{"field": "amount", "message": sentence}]
    assert sentence in error["message"]


def test_missing_fields_are_all_named(client: Any, agent: Agent) -> None:
    response = signed_post(client, agent.api_key, PATH, {"idempotency_key": "k"})
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["error"]["errors"]} == {"amount", "merchant", "purpose"}


def test_other_currency_is_unsupported_currency(client: Any, agent: Agent) -> None:
    response = pay(client, agent, 100, currency="eur")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "unsupported_currency"


def test_http_callback_on_localhost_is_allowed_in_local_mode(client: Any, agent: Agent) -> None:
    response = pay(client, agent, 100, callback_url="http://127.0.0.1:9999/hook")
    assert response.status_code == 201


def test_idempotency_key_is_required(client: Any, agent: Agent) -> None:
    response = signed_post(client, agent.api_key, PATH, {"amount": 100, "merchant": "m", "purpose": "p"})
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == "idempotency_key"


def test_body_and_header_keys_must_agree(client: Any, agent: Agent) -> None:
    from tests.support.signing import encode, signed_headers

    body = encode({"amount": 100, "merchant": "m", "purpose": "p", "idempotency_key": "a"})
    headers = {**signed_headers(agent.api_key, "POST", PATH, body), "Idempotency-Key": "b"}
    response = client.post(PATH, content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["field"] == "idempotency_key"


def test_header_key_alone_works_and_replays(client: Any, agent: Agent) -> None:
    from tests.support.signing import encode, signed_headers

    body = encode({"amount": 100, "merchant": "m", "purpose": "p"})
    first = client.post(
        PATH, content=body, headers={**signed_headers(agent.api_key, "POST", PATH, body), "Idempotency-Key": "hk-1"}
    )
    again = client.post(
        PATH, content=body, headers={**signed_headers(agent.api_key, "POST", PATH, body), "Idempotency-Key": "hk-1"}
    )
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["idempotency_key"] == "hk-1" and again.json()["id"] == first.json()["id"]


# Idempotency (I2) ---------------------------------------------------------------------------------------------
def test_repeat_with_same_parameters_replays_with_200(client: Any, agent: Agent) -> None:
    first = pay(client, agent, 700, key="order-1")
    again = pay(client, agent, 700, key="order-1")
    assert first.status_code == 201
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert spent_counter(agent) == 700


def test_repeat_with_other_parameters_is_409(client: Any, agent: Agent) -> None:
    assert pay(client, agent, 700, key="order-2").status_code == 201
    response = pay(client, agent, 701, key="order-2")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert spent_counter(agent) == 700


def test_replay_after_a_state_change_returns_the_new_state(client: Any, agent: Agent) -> None:
    from shared.platform import db

    tx = pay(client, agent, 300, key="order-3").json()
    with db.connection() as conn:
        conn.execute(
            "UPDATE transactions SET status = 'completed', stripe_charge_id = 'pi_test_1', completed_at = now()"
            " WHERE id = %s",
            (tx["id"],),
        )
    again = pay(client, agent, 300, key="order-3")
    assert again.status_code == 200
    assert again.json()["status"] == "completed" and again.json()["stripe_charge_id"] == "pi_test_1"


def test_a_declined_request_replays_as_declined(client: Any, agent: Agent) -> None:
    first = pay(client, agent, 2500, key="too-big")
    again = pay(client, agent, 2500, key="too-big")
    assert first.status_code == 402
    assert again.status_code == 200 and again.json()["status"] == "declined"


def test_keys_are_scoped_to_the_agent(client: Any, agent: Agent) -> None:
    other = make_agent(client, agent.org)
    mine = pay(client, agent, 100, key="shared-key")
    theirs = pay(client, other, 100, key="shared-key")
    assert mine.status_code == 201 and theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


def test_twenty_concurrent_requests_with_one_key_make_one_transaction_and_one_hold(
    live_servers: Any, services: Any
) -> None:
    import httpx

    from shared.platform import db
    from tests.support.signing import encode, signed_headers

    with httpx.Client(base_url=live_servers[0].base_url) as http:
        org = make_org(http)
        agent = make_agent(http, org)
    body = encode({"amount": 400, "merchant": "m", "purpose": "p", "idempotency_key": "concurrent-1"})

    def send(i: int) -> httpx.Response:
        server = live_servers[i % 2]
        return httpx.post(
            server.base_url + PATH, content=body, headers=signed_headers(agent.api_key, "POST", PATH, body)
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(send, range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 1 and statuses.count(200) == 19, statuses
    assert len({r.json()["id"] for r in responses}) == 1
    with db.connection() as conn:
        count = conn.execute("SELECT count(*) AS n FROM transactions WHERE agent_id = %s", (agent.id,)).fetchone()
    assert count is not None and count["n"] == 1
    assert spent_counter(agent) == 400


# Budget under concurrency (I1) --------------------------------------------------------------------------------
def _hundred_concurrent(base_urls: list[str]) -> tuple[Agent, list[int]]:
    import httpx

    from tests.support.signing import encode, signed_headers

    with httpx.Client(base_url=base_urls[0]) as http:
        org = make_org(http)
        agent = make_agent(
            http, org, daily_limit=5000, per_transaction_limit=100, approval_threshold=100, max_requests_per_minute=1000
        )

    def send(i: int) -> int:
        body = encode({"amount": 100, "merchant": "m", "purpose": "p", "idempotency_key": f"i1-{i}"})
        url = base_urls[i % len(base_urls)] + PATH
        return httpx.post(
            url, content=body, headers=signed_headers(agent.api_key, "POST", PATH, body), timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        return agent, list(pool.map(send, range(100)))


def _held_in_postgres(agent: Agent) -> int:
    from shared.platform import db

    with db.connection() as conn:
        row = conn.execute(
            "SELECT coalesce(sum(amount_cents), 0) AS held FROM transactions"
            " WHERE agent_id = %s AND status IN ('pending', 'approved', 'completed')",
            (agent.id,),
        ).fetchone()
    assert row is not None
    return int(row["held"])


def test_hundred_concurrent_requests_approve_exactly_fifty_in_one_process(live_servers: Any) -> None:
    agent, statuses = _hundred_concurrent([live_servers[0].base_url])
    assert statuses.count(201) == 50 and statuses.count(402) == 50, statuses
    assert _held_in_postgres(agent) == 5000 == spent_counter(agent)


def test_hundred_concurrent_requests_approve_exactly_fifty_across_two_processes(live_servers: Any) -> None:
    agent, statuses = _hundred_concurrent([s.base_url for s in live_servers])
    assert statuses.count(201) == 50 and statuses.count(402) == 50, statuses
    assert _held_in_postgres(agent) == 5000 == spent_counter(agent)


# Redis loss (I5) ----------------------------------------------------------------------------------------------
def test_flushed_redis_is_rebuilt_from_postgres_before_deciding(client: Any, agent: Agent) -> None:
    from shared.budget import engine as budget

    for _ in range(3):
        assert pay(client, agent, 1000).status_code == 201
    assert pay(client, agent, 1500).status_code == 202  # a pending request holds budget too
    budget.get_engine().store.flushall()
    response = pay(client, agent, 600)
    assert response.status_code == 402, "a flushed Redis must not forget the 4500 already held"
    assert response.json()["error"]["message"] == (
        "Daily limit of $50.00 would be exceeded ($45.00 already spent or held, $6.00 requested)."
    )
    assert pay(client, agent, 500).status_code == 201
    assert spent_counter(agent) == 5000


def test_flush_keeps_pending_holds_releasable(client: Any, agent: Agent) -> None:
    from shared.budget import engine as budget
    from shared.platform.clock import clock

    pending = pay(client, agent, 1500, key="held-then-flushed").json()
    budget.get_engine().store.flushall()
    assert pay(client, agent, 100).status_code == 201  # rebuilds: 1500 held + 100
    day = budget.budget_day("UTC", clock.now())
    freed = budget.get_engine().release(
        organization_id=uuid.UUID(agent.org.body["organization"]["id"]),
        agent_id=uuid.UUID(agent.id),
        day=day,
        merchant="api.example.com",
        idempotency_key="held-then-flushed",
    )
    assert freed == 1500 and pending["status"] == "pending"
    assert spent_counter(agent) == 100


# Fail closed (I6) ---------------------------------------------------------------------------------------------
def _row_count(agent: Agent) -> int:
    from shared.platform import db

    with db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM transactions WHERE agent_id = %s", (agent.id,)).fetchone()
    assert row is not None
    return int(row["n"])


def test_valkey_down_is_503_and_nothing_is_approved_or_written(client: Any, agent: Agent, stack: Any) -> None:
    assert pay(client, agent, 100).status_code == 201
    stack.stop_redis()
    try:
        response = pay(client, agent, 100, key="while-down")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "budget_unavailable"
        assert response.headers["retry-after"]
        assert _row_count(agent) == 1
        assert client.get("/healthz").status_code == 503
    finally:
        stack.start_redis()
    retried = pay(client, agent, 100, key="while-down")
    assert retried.status_code == 201
    assert _row_count(agent) == 2 and spent_counter(agent) == 200


def _when_database_is_back(send: Any, within: float = 15.0) -> Any:
    """The pool reconnects with backoff after an outage: requests answer 503 until it has, then work."""
    import time

    deadline = time.monotonic() + within
    response = send()
    while response.status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.25)
        response = send()
    return response


def test_postgres_down_is_503_and_the_hold_is_given_back(client: Any, agent: Agent, stack: Any) -> None:
    from shared.http import auth

    assert pay(client, agent, 100).status_code == 201  # the agent is now in the auth cache
    stack.stop_postgres()
    try:
        response = pay(client, agent, 300, key="pg-down")
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "unavailable"
    finally:
        stack.start_postgres()
    auth.agent_cache.clear()
    assert spent_counter(agent) == 100, "the hold of the unrecorded request must be released"
    retried = _when_database_is_back(lambda: pay(client, agent, 300, key="pg-down"))
    assert retried.status_code == 201
    assert spent_counter(agent) == 400
    _until_steady(client)


def _until_steady(client: Any, within: float = 20.0) -> None:
    """Leave the shared pool as the next test expects it: five healthy answers in a row after the restart."""
    import time

    deadline, healthy = time.monotonic() + within, 0
    while healthy < 5 and time.monotonic() < deadline:
        healthy = healthy + 1 if client.get("/healthz").status_code == 200 else 0
        time.sleep(0.1)


# Tenancy (I8) -------------------------------------------------------------------------------------------------
def test_an_admin_cannot_see_or_change_another_organizations_agents(client: Any, agent: Agent) -> None:
    intruder = make_org(client)
    listed = client.get("/v1/dashboard/agents", headers=intruder.admin_headers).json()["data"]
    assert listed == []
    limits = {"daily_limit": 10**9, "per_transaction_limit": 10**8, "approval_threshold": 10**8}
    changed = client.put(f"/v1/dashboard/agents/{agent.id}/limits", json=limits, headers=intruder.admin_headers)
    assert changed.status_code == 404
    unblocked = client.post(f"/v1/dashboard/agents/{agent.id}/unblock", headers=intruder.admin_headers)
    assert unblocked.status_code == 404
    mine = client.get("/v1/dashboard/agents", headers=agent.org.admin_headers).json()["data"]
    assert [a["limits"]["daily_limit"] for a in mine] == [5000]


def test_an_agent_cannot_read_another_agents_transaction_in_its_own_org(client: Any, agent: Agent) -> None:
    sibling = make_agent(client, agent.org)
    tx = pay(client, agent, 100).json()
    assert signed_get(client, sibling.api_key, f"/v1/transactions/{tx['id']}").status_code == 404
    assert signed_get(client, agent.api_key, f"/v1/transactions/{tx['id']}").status_code == 200


# Audit (I3) ---------------------------------------------------------------------------------------------------
def test_every_authenticated_payment_request_leaves_an_audit_entry(client: Any) -> None:
    from shared.platform import db

    # Requests refused before a decision (422) do not count towards the circuit breaker's rate.
    agent = make_agent(client, make_org(client), max_requests_per_minute=6)
    outcomes = [
        pay(client, agent, 100, key="a").status_code,  # approved
        pay(client, agent, 1500, key="b").status_code,  # pending
        pay(client, agent, 2500, key="c").status_code,  # declined
        pay(client, agent, 100, key="a").status_code,  # replayed
        pay(client, agent, 101, key="a").status_code,  # key reused
        pay(client, agent, 0, key="d").status_code,  # invalid
        pay(client, agent, 100, currency="eur").status_code,  # unsupported currency
        pay(client, agent, 100).status_code,  # the 6th decided: still allowed
        pay(client, agent, 100).status_code,  # the 7th: trips the breaker
        pay(client, agent, 100).status_code,  # blocked
    ]
    assert outcomes == [201, 202, 402, 200, 409, 422, 422, 201, 429, 403]
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT action, details FROM audit_logs WHERE agent_id = %s ORDER BY created_at", (agent.id,)
        ).fetchall()
    actions = [r["action"] for r in rows]
    assert actions == [
        "payment.approved",
        "payment.pending_approval",
        "budget.exceeded",
        "payment.declined",
        "payment.replayed",
        "payment.rejected",
        "payment.rejected",
        "payment.rejected",
        "payment.approved",
        "agent.blocked",
        "payment.rejected",
        "payment.rejected",
    ]
    codes = [r["details"].get("code") for r in rows if r["action"] == "payment.rejected"]
    assert codes == [
        "idempotency_key_reused",
        "validation_error",
        "unsupported_currency",
        "rate_limited",
        "agent_blocked",
    ]
    assert all(r["details"]["request_id"].startswith("req_") for r in rows)
    declined = next(r for r in rows if r["action"] == "budget.exceeded")["details"]
    assert declined["limits"]["per_transaction_limit"] == 2000 and declined["amount"] == 2500


def test_audit_entries_cannot_be_changed_or_deleted(client: Any, agent: Agent) -> None:
    import psycopg

    from shared.platform import db

    tx = pay(client, agent, 100).json()
    with db.connection() as conn:
        for statement in (
            "UPDATE audit_logs SET action = 'payment.declined' WHERE transaction_id = %s",
            "DELETE FROM audit_logs WHERE transaction_id = %s",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement, (tx["id"],))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE audit_logs")
    assert audit_actions(tx["id"]) == ["payment.approved"]


# Key rotation and disabling reach every container at once -----------------------------------------------------
def test_a_rotated_key_or_disabled_agent_stops_spending_at_once_in_every_process(live_servers: Any) -> None:
    import httpx

    first, second = (httpx.Client(base_url=s.base_url) for s in live_servers)
    org = make_org(first)
    agent = make_agent(first, org)
    assert pay(second, agent, 100).status_code == 201  # the second process now caches this agent for 10 s

    rotated = first.post(f"/v1/dashboard/agents/{agent.id}/rotate-key", headers=org.admin_headers)
    assert rotated.status_code == 200
    old_key = pay(second, agent, 100)
    assert old_key.status_code == 401 and old_key.json()["error"]["code"] == "invalid_api_key"
    new_agent = Agent(id=agent.id, api_key=rotated.json()["api_key"], org=org, body=rotated.json())
    assert pay(second, new_agent, 100).status_code == 201

    assert first.post(f"/v1/dashboard/agents/{agent.id}/disable", headers=org.admin_headers).status_code == 200
    disabled = pay(second, new_agent, 100)
    assert disabled.status_code == 403 and disabled.json()["error"]["code"] == "agent_disabled"
    assert first.post(f"/v1/dashboard/agents/{agent.id}/enable", headers=org.admin_headers).status_code == 200
    assert pay(second, new_agent, 100).status_code == 201


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"merchant": "a\u0000b"}, "merchant"),
        ({"purpose": "p\u0000"}, "purpose"),
        ({"context": {"k\u0000": 1}}, "context.k\u0000"),
        ({"context": {"nested": ["ok", "bad\u0000"]}}, "context.nested.1"),
    ],
)
def test_text_postgres_cannot_store_is_a_422_and_holds_nothing(
    client: Any, agent: Agent, fields: dict[str, Any], field: str
) -> None:
    response = pay(client, agent, 600, **fields)
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["error"]["errors"]] == [field]
    assert spent_counter(agent) == 0
    assert pay(client, agent, 600).status_code == 201


def test_a_lone_surrogate_in_context_is_a_422(client: Any, agent: Agent) -> None:
    from tests.support.signing import signed_headers

    body = b'{"amount":100,"merchant":"m","purpose":"p","idempotency_key":"k","context":{"a":"\\udc00"}}'
    response = client.post(PATH, content=body, headers=signed_headers(agent.api_key, "POST", PATH, body))
    assert response.status_code == 422 and response.json()["error"]["errors"][0]["field"] == "context.a"


def test_a_body_that_is_not_utf8_json_is_a_422(client: Any, agent: Agent) -> None:
    from tests.support.signing import signed_headers

    response = client.post(PATH, content=b"\xda", headers=signed_headers(agent.api_key, "POST", PATH, b"\xda"))
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b'{"amount": 100, "merchant": "m"', "application/json", "JSON decode error"),
        (b"", "application/json", "Field required"),
        (b'{"amount":100,"merchant":"m","purpose":"p","idempotency_key":"k"}', "text/plain", "valid dictionary"),
        (b"[1, 2]", "application/json; charset=utf-8", "valid dictionary"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_422_on_body(
    client: Any, agent: Agent, body: bytes, content_type: str, message: str
) -> None:
    from tests.support.signing import signed_headers

    headers = {**signed_headers(agent.api_key, "POST", PATH, body), "Content-Type": content_type}
    response = client.post(PATH, content=body, headers=headers)
    assert response.status_code == 422, response.text
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "body" and message in error["message"]
    assert spent_counter(agent) == 0


def test_a_json_type_with_parameters_or_a_suffix_is_json(client: Any, agent: Agent) -> None:
    from tests.support.signing import signed_headers

    for content_type in ("application/json; charset=utf-8", "application/vnd.agentpay+json", "APPLICATION/JSON"):
        body = f'{{"amount":100,"merchant":"m","purpose":"p","idempotency_key":"{uuid.uuid4().hex}"}}'.encode()
        headers = {**signed_headers(agent.api_key, "POST", PATH, body), "Content-Type": content_type}
        assert client.post(PATH, content=body, headers=headers).status_code == 201, content_type


def test_a_failure_after_the_reservation_gives_the_hold_back(
    client: Any, agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.payments import requests as payments

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug between the budget decision and the row")

    monkeypatch.setattr(payments, "_record", broken)
    assert pay(client, agent, 700, key="after-bug").status_code == 500
    monkeypatch.undo()
    assert spent_counter(agent) == 0
    assert pay(client, agent, 700, key="after-bug").status_code == 201
