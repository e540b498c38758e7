"""Changing policies: an agent's policy and its draft, and the organization's ceiling; each change audited with the
values before and after, and in force from the next payment request in every container."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from shared.audit import log as audit
from shared.budget import engine as budget
from shared.errors import BudgetUnavailable, NotFound
from shared.platform import db
from shared.policy import store
from shared.policy.model import Ceiling, Policy, ceiling_wire, policy_wire


def get_policy(conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID) -> Policy:
    row = conn.execute(
        f"""
        SELECT {store.select_columns("l")} FROM budget_limits l JOIN agents a ON a.id = l.agent_id
        WHERE l.agent_id = %s AND a.organization_id = %s
        """,
        (agent_id, organization_id),
    ).fetchone()
    if row is None:
        raise NotFound("No such agent.")
    return store.policy_from_row(row)


def replace_policy(
    conn: db.Connection,
    *,
    organization_id: uuid.UUID,
    agent_id: uuid.UUID,
    policy: Policy,
    actor: str,
    request_id: str,
    action: str = "policy.updated",
) -> None:
    """Write the agent's whole policy and audit the change, in one database transaction; then drop every cached copy."""
    with conn.transaction():
        before = get_policy(conn, organization_id=organization_id, agent_id=agent_id)
        store.save(conn, agent_id, policy)
        audit.record(
            conn,
            organization_id=organization_id,
            agent_id=agent_id,
            actor=actor,
            action=action,
            details={"request_id": request_id, "before": policy_wire(before), "after": policy_wire(policy)},
        )
    forget(organization_id, agent_id)


def get_shadow(conn: db.Connection, *, organization_id: uuid.UUID, agent_id: uuid.UUID) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT l.shadow_policy FROM budget_limits l JOIN agents a ON a.id = l.agent_id"
        " WHERE l.agent_id = %s AND a.organization_id = %s",
        (agent_id, organization_id),
    ).fetchone()
    if row is None:
        raise NotFound("No such agent.")
    shadow: dict[str, Any] | None = row["shadow_policy"]
    return shadow


def set_shadow(
    conn: db.Connection,
    *,
    organization_id: uuid.UUID,
    agent_id: uuid.UUID,
    shadow: Policy | None,
    actor: str,
    request_id: str,
) -> None:
    """Set (or, with None, remove) the draft whose verdicts are recorded beside the real ones, audited."""
    with conn.transaction():
        get_policy(conn, organization_id=organization_id, agent_id=agent_id)  # NotFound for another organization's
        store.save_shadow(conn, agent_id, shadow)
        audit.record(
            conn,
            organization_id=organization_id,
            agent_id=agent_id,
            actor=actor,
            action="policy.shadow_set" if shadow is not None else "policy.shadow_removed",
            details={"request_id": request_id, "shadow": None if shadow is None else policy_wire(shadow)},
        )
    forget(organization_id, agent_id)


def get_ceiling(conn: db.Connection, *, organization_id: uuid.UUID) -> Ceiling:
    return store.load_ceiling(conn, organization_id)


def replace_ceiling(
    conn: db.Connection, *, organization_id: uuid.UUID, ceiling: Ceiling, actor: str, request_id: str
) -> None:
    """Write the organization's ceiling and audit it; every agent of the organization decides with it next."""
    with conn.transaction():
        before = store.load_ceiling(conn, organization_id)
        store.save_ceiling(conn, organization_id, ceiling)
        audit.record(
            conn,
            organization_id=organization_id,
            agent_id=None,
            actor=actor,
            action="organization.policy_updated",
            details={"request_id": request_id, "before": ceiling_wire(before), "after": ceiling_wire(ceiling)},
        )
    with contextlib.suppress(BudgetUnavailable):
        budget.get_engine().forget_ceiling(organization_id)


def forget(organization_id: uuid.UUID, agent_id: uuid.UUID) -> None:
    """Every container reads the policy again before its next decision. If Redis cannot be told, the published
    version expires within 10 s and the next decision reads Postgres then."""
    with contextlib.suppress(BudgetUnavailable):
        budget.get_engine().forget_policy(organization_id, agent_id)
