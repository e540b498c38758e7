"""The append-only audit log: one entry per decision and state change, never changed afterwards."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb

from shared.platform import db


def record(
    conn: db.Connection,
    *,
    organization_id: uuid.UUID | str,
    actor: str,
    action: str,
    details: dict[str, Any],
    agent_id: uuid.UUID | str | None = None,
    transaction_id: uuid.UUID | str | None = None,
) -> None:
    """Append one entry; call it inside the database transaction that makes the change it records."""
    conn.execute(
        """
        INSERT INTO audit_logs (organization_id, agent_id, transaction_id, actor, action, details)
        VALUES (%s, %s, %s, %s, %s, %s)
        """,
        (organization_id, agent_id, transaction_id, actor, action, Jsonb(storable(details))),
    )


def storable(value: Any) -> Any:
    """A copy Postgres can store as jsonb: a NUL (which jsonb refuses) is shown as the symbol for it, U+2400."""
    if isinstance(value, str):
        return value.replace("\x00", "\u2400")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value
