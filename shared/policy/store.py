"""Where policies live in Postgres: an agent's policy and draft with its organization's ceiling, read by one query,
and written with a new version each time (the budget script then refuses to decide with an older one)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from shared.platform import db
from shared.policy.model import (
    LIMIT_COLUMNS,
    ApprovalRules,
    Ceiling,
    Limits,
    MerchantRules,
    Policy,
    policy_from_wire,
    policy_wire,
)

_RULE_COLUMNS = (
    "merchant_allow",
    "merchant_block",
    "merchant_daily_limits",
    "approve_new_merchant",
    "dual_approval_above_cents",
)
POLICY_COLUMNS = (*LIMIT_COLUMNS, *_RULE_COLUMNS)


@dataclass(frozen=True)
class Effective:
    """What an agent's payment requests are decided with: its policy, its draft, its organization's ceiling, and the
    versions of both as Postgres had them."""

    organization_id: uuid.UUID
    policy: Policy
    shadow: Policy | None
    ceiling: Ceiling
    version: int
    ceiling_version: int


def select_columns(alias: str) -> str:
    """The policy's columns for a SELECT that joins budget_limits as `alias`."""
    return ", ".join(f"{alias}.{column}" for column in POLICY_COLUMNS)


def policy_from_row(row: dict[str, Any]) -> Policy:
    return Policy(
        limits=Limits(**{column: row[column] for column in LIMIT_COLUMNS}),
        merchants=MerchantRules(
            allow=tuple(row["merchant_allow"]),
            block=tuple(row["merchant_block"]),
            daily_caps=tuple((str(host), int(cents)) for host, cents in row["merchant_daily_limits"]),
        ),
        approval=ApprovalRules(
            new_merchant=bool(row["approve_new_merchant"]),
            dual_approval_above_cents=row["dual_approval_above_cents"],
        ),
    )


def _row_values(policy: Policy) -> tuple[Any, ...]:
    return (
        *(getattr(policy.limits, column) for column in LIMIT_COLUMNS),
        list(policy.merchants.allow),
        list(policy.merchants.block),
        Jsonb([[host, cents] for host, cents in policy.merchants.daily_caps]),
        policy.approval.new_merchant,
        policy.approval.dual_approval_above_cents,
    )


_LOAD_SQL = f"""
SELECT a.organization_id, {select_columns("l")}, l.shadow_policy, l.version,
       o.daily_limit_cents AS ceiling_daily_cents, o.monthly_limit_cents AS ceiling_monthly_cents, o.ceiling_version
FROM budget_limits l
JOIN agents a ON a.id = l.agent_id
JOIN organizations o ON o.id = a.organization_id
WHERE l.agent_id = %s
"""


def load(conn: db.Connection, agent_id: uuid.UUID) -> Effective | None:
    """The one read of everything an agent's decisions need; None for an agent without a policy."""
    row = conn.execute(_LOAD_SQL, (agent_id,)).fetchone()
    if row is None:
        return None
    shadow = row["shadow_policy"]
    return Effective(
        organization_id=row["organization_id"],
        policy=policy_from_row(row),
        shadow=None if shadow is None else policy_from_wire(shadow, path="shadow"),
        ceiling=Ceiling(daily_limit_cents=row["ceiling_daily_cents"], monthly_limit_cents=row["ceiling_monthly_cents"]),
        version=int(row["version"]),
        ceiling_version=int(row["ceiling_version"]),
    )


def load_policy(conn: db.Connection, agent_id: uuid.UUID) -> Policy | None:
    row = conn.execute(
        f"SELECT {select_columns('l')} FROM budget_limits l WHERE l.agent_id = %s", (agent_id,)
    ).fetchone()
    return None if row is None else policy_from_row(row)


_SAVE_SQL = f"""
INSERT INTO budget_limits AS l (agent_id, {", ".join(POLICY_COLUMNS)})
VALUES (%s, {", ".join(["%s"] * len(POLICY_COLUMNS))})
ON CONFLICT (agent_id) DO UPDATE
SET {", ".join(f"{column} = EXCLUDED.{column}" for column in POLICY_COLUMNS)},
    updated_at = now(), version = l.version + 1
RETURNING version
"""


def save(conn: db.Connection, agent_id: uuid.UUID, policy: Policy) -> int:
    """Write the agent's policy (first time or change); the caller audits it and drops the published version."""
    row = conn.execute(_SAVE_SQL, (agent_id, *_row_values(policy))).fetchone()
    assert row is not None
    return int(row["version"])


def save_shadow(conn: db.Connection, agent_id: uuid.UUID, shadow: Policy | None) -> int:
    """Set or clear the draft. Its verdicts are recorded from the next request on, so it raises the version too."""
    row = conn.execute(
        "UPDATE budget_limits SET shadow_policy = %s, version = version + 1, updated_at = now()"
        " WHERE agent_id = %s RETURNING version",
        (None if shadow is None else Jsonb(policy_wire(shadow)), agent_id),
    ).fetchone()
    assert row is not None
    return int(row["version"])


def load_ceiling(conn: db.Connection, organization_id: uuid.UUID) -> Ceiling:
    row = conn.execute(
        "SELECT daily_limit_cents, monthly_limit_cents FROM organizations WHERE id = %s", (organization_id,)
    ).fetchone()
    if row is None:
        return Ceiling()
    return Ceiling(daily_limit_cents=row["daily_limit_cents"], monthly_limit_cents=row["monthly_limit_cents"])


def save_ceiling(conn: db.Connection, organization_id: uuid.UUID, ceiling: Ceiling) -> int:
    row = conn.execute(
        "UPDATE organizations SET daily_limit_cents = %s, monthly_limit_cents = %s,"
        " ceiling_version = ceiling_version + 1 WHERE id = %s RETURNING ceiling_version",
        (ceiling.daily_limit_cents, ceiling.monthly_limit_cents, organization_id),
    ).fetchone()
    assert row is not None
    return int(row["ceiling_version"])
