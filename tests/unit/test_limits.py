"""The policy is written once (shared/policy/model.py); the table, the API schema and the dashboard's request model
are checked against that one definition, so a new limit or rule cannot be half added."""

from __future__ import annotations

import re

from functions.dashboard.app import LimitsIn
from shared.http import schema
from shared.policy.model import LIMIT_COLUMNS, LIMIT_WIRE_NAMES, Limits
from shared.policy.store import POLICY_COLUMNS
from tests.conftest import REPO

BASIC = {"daily_limit", "per_transaction_limit", "approval_threshold", "max_requests_per_minute"}


def _budget_limits_columns() -> set[str]:
    """budget_limits' columns after every migration: created in 0001, added to later."""
    sql = "\n".join(path.read_text() for path in sorted((REPO / "migrations").glob("*.sql")))
    body = re.search(r"CREATE TABLE budget_limits \((.*?)\n\);", sql, re.S)
    assert body is not None
    columns = set(re.findall(r"^\s{4}([a-z_]+)\s+(?:bigint|integer|uuid|timestamptz)", body.group(1), re.M))
    for alter in re.findall(r"ALTER TABLE budget_limits\b(.*?);", sql, re.S):
        columns |= set(re.findall(r"ADD COLUMN ([a-z_]+)", alter))
        columns -= set(re.findall(r"DROP COLUMN ([a-z_]+)", alter))
    return columns


def test_the_table_has_exactly_the_policy_columns() -> None:
    kept_by_the_table = {"id", "agent_id", "updated_at", "version", "shadow_policy"}
    assert _budget_limits_columns() - kept_by_the_table == set(POLICY_COLUMNS)
    assert set(LIMIT_COLUMNS) <= set(POLICY_COLUMNS)


def test_the_api_names_the_same_limits() -> None:
    assert set(schema.PolicyLimits.model_fields) == set(LIMIT_WIRE_NAMES.values())
    assert set(LIMIT_WIRE_NAMES) == set(LIMIT_COLUMNS)
    # The agent object's `limits` and the first API's request keep the four limits they always had.
    assert set(schema.AgentLimits.model_fields) == set(LimitsIn.model_fields) == BASIC


def test_the_first_api_s_limits_become_the_policy_s() -> None:
    sent = {"daily_limit": 50_000, "per_transaction_limit": 20_000, "approval_threshold": 5_000}
    assert LimitsIn(**sent).to_limits() == Limits(
        daily_limit_cents=50_000, per_tx_limit_cents=20_000, approval_threshold_cents=5_000
    )
