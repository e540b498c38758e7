"""Agents of an organization: creation with a key shown once, their limits, and how the API shows them."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

from shared.audit import log as audit
from shared.budget import engine as budget
from shared.errors import BudgetUnavailable, NotFound
from shared.http.auth import IssuedKey, KeyMode, forget_agent, issue_agent_key
from shared.platform import db
from shared.platform.clock import clock, iso
from shared.policy import limits as policy_limits
from shared.policy.limits import Limits


@dataclass(frozen=True)
class NewAgent:
    """A created agent and its key, shown to the caller once."""

    agent: dict[str, Any]
    api_key: IssuedKey


_AGENT_COLUMNS = f"""
a.id, a.organization_id, a.name, a.is_active, a.blocked_at, a.blocked_reason, a.key_prefix, a.api_key_hash,
a.created_at, {policy_limits.select_columns("l")}
"""


def parse_id(value: str) -> uuid.UUID:
    """An agent id from a path segment; anything malformed is simply not found."""
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound("No such agent.") from exc


def create_agent(
    conn: db.Connection, *, organization_id: uuid.UUID, name: str, limits: Limits, key_mode: KeyMode
) -> NewAgent:
    """Insert the agent and its limits in one transaction; only the key's hash is stored."""
    limits.validate()
    key = issue_agent_key(key_mode)
    with conn.transaction():
        row = conn.execute(
            """
            INSERT INTO agents (organization_id, name, api_key_hash, key_prefix)
            VALUES (%s, %s, %s, %s)
            RETURNING id
            """,
            (organization_id, name, key.hash, key.prefix),
        ).fetchone()
        assert row is not None
        policy_limits.save(conn, row["id"], limits)
    return NewAgent(agent=get_agent(conn, organization_id=organization_id, agent_id=row["id"]), api_key=key)


def get_agent(conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID) -> dict[str, Any]:
    """The organization's agent, or NotFound (also for another organization's agent)."""
    row = conn.execute(
        f"""
        SELECT {_AGENT_COLUMNS}
        FROM agents a JOIN budget_limits l ON l.agent_id = a.id
        WHERE a.id = %s AND a.organization_id = %s
        """,
        (agent_id, organization_id),
    ).fetchone()
    if row is None:
        raise NotFound("No such agent.")
    return row


def list_agents(conn: db.Connection, *, organization_id: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        f"""
        SELECT {_AGENT_COLUMNS}
        FROM agents a JOIN budget_limits l ON l.agent_id = a.id
        WHERE a.organization_id = %s
        ORDER BY a.created_at, a.id
        """,
        (organization_id,),
    ).fetchall()


def agent_view(row: dict[str, Any], *, spend_today_cents: int = 0) -> dict[str, Any]:
    """The agent object of API.md."""
    daily = int(row["daily_limit_cents"])
    return {
        "id": str(row["id"]),
        "object": "agent",
        "name": row["name"],
        "is_active": row["is_active"],
        "blocked_at": iso(row["blocked_at"]),
        "blocked_reason": row["blocked_reason"],
        "key_prefix": row["key_prefix"],
        "limits": _limits_of(row),
        "spend_today": spend_today_cents,
        "remaining_today": max(0, daily - spend_today_cents),
        "created_at": iso(row["created_at"]),
    }


def update_limits(
    conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID, limits: Limits, request_id: str
) -> dict[str, Any]:
    """Change an agent's limits and audit the change (old and new values) in one database transaction."""
    limits.validate()
    with conn.transaction():
        before = get_agent(conn, organization_id=organization_id, agent_id=agent_id)
        policy_limits.save(conn, agent_id, limits)
        audit.record(
            conn,
            organization_id=organization_id,
            agent_id=agent_id,
            actor="admin",
            action="limits.updated",
            details={
                "request_id": request_id,
                "before": _limits_of(before),
                "after": limits.wire(),
            },
        )
    return get_agent(conn, organization_id=organization_id, agent_id=agent_id)


def unblock(conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID, request_id: str) -> dict[str, Any]:
    """Lift the circuit breaker's block (a no-op for an agent that is not blocked), audited."""
    with conn.transaction():
        row = conn.execute(
            """
            UPDATE agents SET blocked_at = NULL, blocked_reason = NULL
            WHERE id = %s AND organization_id = %s AND blocked_at IS NOT NULL
            RETURNING blocked_at
            """,
            (agent_id, organization_id),
        ).fetchone()
        if row is not None:
            audit.record(
                conn,
                organization_id=organization_id,
                agent_id=agent_id,
                actor="admin",
                action="agent.unblocked",
                details={"request_id": request_id},
            )
    return get_agent(conn, organization_id=organization_id, agent_id=agent_id)


def _limits_of(row: dict[str, Any]) -> dict[str, int]:
    return Limits.from_row(row).wire()


# What admins see and change, across Postgres, Redis and this container's caches -----------------------------------
def spend_today(agent_id: uuid.UUID, timezone: str) -> int:
    """Cents held or spent today (the organization's day), from the counter the budget engine decides with."""
    day = budget.budget_day(timezone, clock.now())
    try:
        return budget.get_engine().spent(agent_id, day)
    except BudgetUnavailable:
        return budget.load_day(agent_id, day).spent_cents


def list_agent_views(conn: db.Connection, *, organization_id: uuid.UUID, timezone: str) -> list[dict[str, Any]]:
    return [
        agent_view(row, spend_today_cents=spend_today(row["id"], timezone))
        for row in list_agents(conn, organization_id=organization_id)
    ]


def change_limits(
    conn: db.Connection,
    *,
    organization_id: uuid.UUID,
    agent_id: uuid.UUID,
    limits: Limits,
    timezone: str,
    request_id: str,
) -> dict[str, Any]:
    """Update the limits and make the next payment request of the agent use them."""
    row = update_limits(conn, organization_id=organization_id, agent_id=agent_id, limits=limits, request_id=request_id)
    budget.get_engine().forget_limits(agent_id)
    forget_agent(row["api_key_hash"])
    return agent_view(row, spend_today_cents=spend_today(agent_id, timezone))


def lift_block(
    conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID, timezone: str, request_id: str
) -> dict[str, Any]:
    """Unblock the agent in Postgres and in Redis, and drop this container's cached copy of it."""
    row = unblock(conn, organization_id=organization_id, agent_id=agent_id, request_id=request_id)
    budget.get_engine().unblock(agent_id)
    forget_agent(row["api_key_hash"])
    return agent_view(row, spend_today_cents=spend_today(agent_id, timezone))


# Disable, enable, rotate the key ----------------------------------------------------------------------------------
def set_active(
    conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID, active: bool, request_id: str
) -> dict[str, Any]:
    """Disable or enable the agent, audited when it changes (doing it twice is a no-op), and forget its cached copy."""
    with conn.transaction():
        changed = conn.execute(
            """
            UPDATE agents SET is_active = %s
            WHERE id = %s AND organization_id = %s AND is_active = %s
            RETURNING id
            """,
            (active, agent_id, organization_id, not active),
        ).fetchone()
        if changed is not None:
            audit.record(
                conn,
                organization_id=organization_id,
                agent_id=agent_id,
                actor="admin",
                action="agent.enabled" if active else "agent.disabled",
                details={"request_id": request_id},
            )
    row = get_agent(conn, organization_id=organization_id, agent_id=agent_id)
    forget_agent(row["api_key_hash"])
    _publish_credential(agent_id, key_hash=row["api_key_hash"], active=row["is_active"])
    return row


def _publish_credential(agent_id: uuid.UUID, *, key_hash: str, active: bool) -> None:
    """Tell every container, through Redis, which key is current and whether the agent may spend.

    If Redis cannot be told, other containers notice within their 10 s cache.
    """
    with contextlib.suppress(BudgetUnavailable):
        budget.get_engine().publish_credential(agent_id, key_hash=key_hash, active=active)


def rotate_key(
    conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID, key_mode: KeyMode, request_id: str
) -> NewAgent:
    """Give the agent a new key; the old one stops working at once. Only prefixes are audited, never a key."""
    key = issue_agent_key(key_mode)
    with conn.transaction():
        old = conn.execute(
            "SELECT api_key_hash, key_prefix FROM agents WHERE id = %s AND organization_id = %s FOR UPDATE",
            (agent_id, organization_id),
        ).fetchone()
        if old is None:
            raise NotFound("No such agent.")
        conn.execute(
            "UPDATE agents SET api_key_hash = %s, key_prefix = %s WHERE id = %s",
            (key.hash, key.prefix, agent_id),
        )
        audit.record(
            conn,
            organization_id=organization_id,
            agent_id=agent_id,
            actor="admin",
            action="agent.key_rotated",
            details={"request_id": request_id, "old_key_prefix": old["key_prefix"], "new_key_prefix": key.prefix},
        )
    forget_agent(old["api_key_hash"])
    row = get_agent(conn, organization_id=organization_id, agent_id=agent_id)
    _publish_credential(agent_id, key_hash=key.hash, active=row["is_active"])
    return NewAgent(agent=row, api_key=key)


def disable_agent(
    conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID, timezone: str, request_id: str
) -> dict[str, Any]:
    """Disable the agent: its next request is 403 agent_disabled."""
    row = set_active(conn, organization_id=organization_id, agent_id=agent_id, active=False, request_id=request_id)
    return agent_view(row, spend_today_cents=spend_today(agent_id, timezone))


def enable_agent(
    conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID, timezone: str, request_id: str
) -> dict[str, Any]:
    row = set_active(conn, organization_id=organization_id, agent_id=agent_id, active=True, request_id=request_id)
    return agent_view(row, spend_today_cents=spend_today(agent_id, timezone))


def get_agent_view(
    conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID, timezone: str
) -> dict[str, Any]:
    row = get_agent(conn, organization_id=organization_id, agent_id=agent_id)
    return agent_view(row, spend_today_cents=spend_today(agent_id, timezone))
