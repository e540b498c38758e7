"""THE limits of an agent: one type, its one SQL load and save, the form the budget script takes it in, and the
names the API shows it under. A new limit is a new field here, its column, and its place in reserve_budget.lua."""

from __future__ import annotations

import uuid
from dataclasses import astuple, dataclass, fields
from typing import Any

from shared.errors import ValidationFailed
from shared.platform import db

DEFAULT_MAX_REQUESTS_PER_MINUTE = 20
MAX_DAILY_LIMIT_CENTS = 100_000_000_000  # keeps every day's sum far below 2^53 (Lua numbers are doubles)
MAX_REQUESTS_PER_MINUTE = 10_000


@dataclass(frozen=True)
class Limits:
    """An agent's budget limits, in cents. Field names are the columns of budget_limits; their order is the order the
    budget script reads them in (ARGV[8] and the tail of its decision reply)."""

    daily_limit_cents: int
    per_tx_limit_cents: int
    approval_threshold_cents: int
    max_requests_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE

    def validate(self) -> Limits:
        """Raise a 422 naming each field out of `0 <= approval_threshold <= per_transaction_limit <= daily_limit`."""
        errors = []
        if self.approval_threshold_cents < 0:
            errors.append({"field": "approval_threshold", "message": "must be 0 or more"})
        if self.approval_threshold_cents > self.per_tx_limit_cents:
            errors.append({"field": "approval_threshold", "message": "must not exceed per_transaction_limit"})
        if self.per_tx_limit_cents > self.daily_limit_cents:
            errors.append({"field": "per_transaction_limit", "message": "must not exceed daily_limit"})
        if self.daily_limit_cents > MAX_DAILY_LIMIT_CENTS:
            errors.append({"field": "daily_limit", "message": f"must be at most {MAX_DAILY_LIMIT_CENTS}"})
        if not 1 <= self.max_requests_per_minute <= MAX_REQUESTS_PER_MINUTE:
            errors.append(
                {"field": "max_requests_per_minute", "message": f"must be between 1 and {MAX_REQUESTS_PER_MINUTE}"}
            )
        if errors:
            raise ValidationFailed(errors)
        return self

    # The budget script's form: integers joined by commas in field order, and read back from its reply.
    def script_arg(self) -> str:
        return ",".join(str(value) for value in astuple(self))

    @classmethod
    def from_script(cls, values: list[Any]) -> Limits:
        return cls(*(int(value) for value in values[: len(COLUMNS)]))

    # Postgres's form: a row with the columns of budget_limits.
    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Limits:
        return cls(**{column: int(row[column]) for column in COLUMNS})

    # The API's form: the `limits` object of API.md.
    def wire(self) -> dict[str, int]:
        return {WIRE_NAMES[column]: value for column, value in zip(COLUMNS, astuple(self), strict=True)}


COLUMNS: tuple[str, ...] = tuple(field.name for field in fields(Limits))
# The fields of the Redis hash the budget script caches them in (key names survive deploys: never rename one).
SCRIPT_FIELDS = {
    "daily_limit_cents": "daily",
    "per_tx_limit_cents": "per_tx",
    "approval_threshold_cents": "threshold",
    "max_requests_per_minute": "rpm",
}
WIRE_NAMES = {
    "daily_limit_cents": "daily_limit",
    "per_tx_limit_cents": "per_transaction_limit",
    "approval_threshold_cents": "approval_threshold",
    "max_requests_per_minute": "max_requests_per_minute",
}


def select_columns(alias: str) -> str:
    """The limits' columns for a SELECT that joins budget_limits as `alias`."""
    return ", ".join(f"{alias}.{column}" for column in COLUMNS)


_LOAD_SQL = f"SELECT {select_columns('l')} FROM budget_limits l WHERE l.agent_id = %s"
_SAVE_SQL = f"""
INSERT INTO budget_limits (agent_id, {", ".join(COLUMNS)}) VALUES (%s, {", ".join(["%s"] * len(COLUMNS))})
ON CONFLICT (agent_id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS)}, updated_at = now()
"""


def load(conn: db.Connection, agent_id: uuid.UUID) -> Limits | None:
    """The agent's limits, or None for an agent without any."""
    row = conn.execute(_LOAD_SQL, (agent_id,)).fetchone()
    return None if row is None else Limits.from_row(row)


def save(conn: db.Connection, agent_id: uuid.UUID, limits: Limits) -> None:
    """Write the agent's limits (first time or change); the caller audits and drops cached copies."""
    conn.execute(_SAVE_SQL, (agent_id, *astuple(limits)))
