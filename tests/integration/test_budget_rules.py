"""Circuit breaker, limits changes, spend shown to admins, and the organization's calendar day across DST."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Agent, make_agent, make_org, signed_post

PATH = "/v1/payment-request"


def pay(client: Any, agent: Agent, amount: int, **kwargs: Any) -> Any:
    from shared.platform.clock import clock

    payload = {"amount": amount, "merchant": "m", "purpose": "p", "idempotency_key": uuid.uuid4().hex}
    return signed_post(client, agent.api_key, PATH, payload, timestamp=int(clock.time()), **kwargs)


def audit_count(agent: Agent, action: str) -> int:
    from shared.platform import db

    with db.connection() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM audit_logs WHERE agent_id = %s AND action = %s", (agent.id, action)
        ).fetchone()
    assert row is not None
    return int(row["n"])


# Circuit breaker ----------------------------------------------------------------------------------------------
def test_one_request_over_the_rate_blocks_the_agent_until_unblocked(client: Any) -> None:
    agent = make_agent(client, make_org(client), max_requests_per_minute=3)
    assert [pay(client, agent, 10).status_code for _ in range(3)] == [201, 201, 201]
    tripped = pay(client, agent, 10)
    assert tripped.status_code == 429
    assert tripped.json()["error"]["code"] == "rate_limited" and tripped.json()["error"]["type"] == "rate_limit"
    # Waiting does not help: an admin must unblock it. No Retry-After to retry into a 403, and the message says who
    # and where.
    assert "retry-after" not in tripped.headers
    message = tripped.json()["error"]["message"]
    assert "more than 3 payment requests in 60 s" in message and "an admin" in message
    assert f"/v1/dashboard/agents/{agent.id}/unblock" in message and "dashboard" in message
    later = pay(client, agent, 10)
    assert later.status_code == 403 and later.json()["error"]["code"] == "agent_blocked"
    assert f"/v1/dashboard/agents/{agent.id}/unblock" in later.json()["error"]["message"]
    assert audit_count(agent, "agent.blocked") == 1

    listed = client.get("/v1/dashboard/agents", headers=agent.org.admin_headers).json()["data"][0]
    assert listed["blocked_at"] is not None and "3" in listed["blocked_reason"]

    unblocked = client.post(f"/v1/dashboard/agents/{agent.id}/unblock", headers=agent.org.admin_headers)
    assert unblocked.status_code == 200 and unblocked.json()["blocked_at"] is None
    assert pay(client, agent, 10).status_code == 201
    assert audit_count(agent, "agent.unblocked") == 1


def test_the_block_survives_a_flushed_redis(client: Any) -> None:
    from shared.budget import engine as budget
    from shared.http import auth

    agent = make_agent(client, make_org(client), max_requests_per_minute=1)
    assert pay(client, agent, 10).status_code == 201
    assert pay(client, agent, 10).status_code == 429
    budget.get_engine().store.flushall()
    auth.agent_cache.clear()
    assert pay(client, agent, 10).status_code == 403


def test_requests_spread_over_more_than_a_minute_do_not_trip_it(client: Any, clock_travel: Any) -> None:
    agent = make_agent(client, make_org(client), max_requests_per_minute=2)
    for _ in range(4):
        assert pay(client, agent, 10).status_code == 201
        assert pay(client, agent, 10).status_code == 201
        clock_travel(61)


# Limits -------------------------------------------------------------------------------------------------------
def test_new_limits_apply_to_the_very_next_request_and_are_audited(client: Any, agent: Agent) -> None:
    assert pay(client, agent, 900).status_code == 201  # limits now cached in Redis
    changed = client.put(
        f"/v1/dashboard/agents/{agent.id}/limits",
        json={"daily_limit": 1000, "per_transaction_limit": 500, "approval_threshold": 100},
        headers=agent.org.admin_headers,
    )
    assert changed.status_code == 200
    assert changed.json()["limits"]["daily_limit"] == 1000
    assert changed.json()["spend_today"] == 900 and changed.json()["remaining_today"] == 100
    over = pay(client, agent, 600)
    assert over.status_code == 402 and over.json()["error"]["code"] == "per_transaction_limit_exceeded"
    assert pay(client, agent, 101).status_code == 402  # 900 + 101 > 1000
    assert pay(client, agent, 100).status_code == 201
    assert audit_count(agent, "limits.updated") == 1


@pytest.mark.parametrize(
    ("limits", "fields"),
    [
        ({"daily_limit": 100, "per_transaction_limit": 200, "approval_threshold": 0}, {"per_transaction_limit"}),
        ({"daily_limit": 100, "per_transaction_limit": 50, "approval_threshold": 60}, {"approval_threshold"}),
        ({"daily_limit": -1, "per_transaction_limit": 0, "approval_threshold": 0}, {"daily_limit"}),
        (
            {"daily_limit": 10, "per_transaction_limit": 5, "approval_threshold": 0, "max_requests_per_minute": 0},
            {"max_requests_per_minute"},
        ),
        ({"daily_limit": 10, "per_transaction_limit": 5}, {"approval_threshold"}),
    ],
)
def test_limits_out_of_order_are_refused_field_by_field(
    client: Any, agent: Agent, limits: dict[str, int], fields: set[str]
) -> None:
    response = client.put(f"/v1/dashboard/agents/{agent.id}/limits", json=limits, headers=agent.org.admin_headers)
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["error"]["errors"]} == fields
    assert audit_count(agent, "limits.updated") == 0


def test_agents_list_shows_spend_from_the_engines_counters(client: Any, agent: Agent) -> None:
    assert pay(client, agent, 700).status_code == 201
    assert pay(client, agent, 1500).status_code == 202  # pending counts
    assert pay(client, agent, 4000).status_code == 402  # declined does not
    listed = client.get("/v1/dashboard/agents", headers=agent.org.admin_headers).json()
    assert listed["object"] == "list"
    (shown,) = listed["data"]
    assert shown["id"] == agent.id
    assert shown["spend_today"] == 2200 and shown["remaining_today"] == 2800


def test_unknown_agent_ids_are_404(client: Any, agent: Agent) -> None:
    limits = {"daily_limit": 1, "per_transaction_limit": 1, "approval_threshold": 0}
    for agent_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = client.put(f"/v1/dashboard/agents/{agent_id}/limits", json=limits, headers=agent.org.admin_headers)
        assert response.status_code == 404


# The organization's calendar day ------------------------------------------------------------------------------
@pytest.fixture()
def clock_travel() -> Iterator[Any]:
    from shared.platform.clock import clock

    def travel(seconds: float) -> None:
        clock.offset_seconds += seconds

    yield travel
    clock.offset_seconds = 0.0


def _travel_to(local: datetime) -> None:
    import time

    from shared.platform.clock import clock

    clock.offset_seconds = local.timestamp() - time.time()


@pytest.mark.parametrize(
    ("before_midnight", "after_midnight", "end_of_day", "next_day"),
    [
        # Spring forward: 8 March 2026 has 23 hours in New York.
        (
            datetime(2026, 3, 7, 23, 30, tzinfo=ZoneInfo("America/New_York")),
            datetime(2026, 3, 8, 0, 30, tzinfo=ZoneInfo("America/New_York")),
            datetime(2026, 3, 8, 23, 50, tzinfo=ZoneInfo("America/New_York")),
            datetime(2026, 3, 9, 0, 10, tzinfo=ZoneInfo("America/New_York")),
        ),
        # Fall back: 1 November 2026 has 25 hours in New York.
        (
            datetime(2026, 10, 31, 23, 30, tzinfo=ZoneInfo("America/New_York")),
            datetime(2026, 11, 1, 0, 30, tzinfo=ZoneInfo("America/New_York")),
            datetime(2026, 11, 1, 23, 50, tzinfo=ZoneInfo("America/New_York")),
            datetime(2026, 11, 2, 0, 10, tzinfo=ZoneInfo("America/New_York")),
        ),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_daily_limit_resets_at_local_midnight_on_dst_days(
    client: Any,
    clock_travel: Any,
    before_midnight: datetime,
    after_midnight: datetime,
    end_of_day: datetime,
    next_day: datetime,
) -> None:
    agent = make_agent(
        client,
        make_org(client, timezone="America/New_York"),
        daily_limit=1000,
        per_transaction_limit=1000,
        approval_threshold=1000,
        max_requests_per_minute=1000,
    )
    _travel_to(before_midnight)
    assert pay(client, agent, 1000).status_code == 201
    assert pay(client, agent, 1).status_code == 402
    _travel_to(after_midnight)
    assert pay(client, agent, 1000).status_code == 201, "a new local day starts at local midnight"
    _travel_to(end_of_day)
    assert pay(client, agent, 1).status_code == 402, "still the same local day, whatever its length"
    _travel_to(next_day)
    assert pay(client, agent, 1000).status_code == 201

    from shared.platform import db

    with db.connection() as conn:
        days = conn.execute(
            "SELECT DISTINCT budget_day FROM transactions WHERE agent_id = %s AND status = 'approved' ORDER BY 1",
            (agent.id,),
        ).fetchall()
    assert [d["budget_day"] for d in days] == [
        before_midnight.date(),
        after_midnight.date(),
        next_day.date(),
    ]


def test_day_keys_expire_two_days_after_the_local_day() -> None:
    from datetime import date

    from shared.budget import engine as budget

    expire_at = budget.day_keys_expire_at("America/New_York", date(2026, 3, 7))
    assert datetime.fromtimestamp(expire_at, ZoneInfo("America/New_York")) == datetime(
        2026, 3, 10, 0, 0, tzinfo=ZoneInfo("America/New_York")
    )
