"""The append-only audit log: one entry per decision and state change, never changed afterwards."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.types.json import Jsonb

from shared import db


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
        (organization_id, agent_id, transaction_id, actor, action, Jsonb(details)),
    )
