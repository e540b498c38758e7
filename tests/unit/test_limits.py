"""The limits are written once (shared/policy/limits.py); the table, the budget script, the API schema and the
dashboard's request model are checked against that one definition, so a new limit cannot be half added."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from functions.dashboard.app import LimitsIn
from shared.errors import ValidationFailed
from shared.http.schema import AgentLimits
from shared.policy.limits import COLUMNS, SCRIPT_FIELDS, WIRE_NAMES, Limits

REPO = Path(__file__).resolve().parents[2]
LIMITS = Limits(daily_limit_cents=50_000, per_tx_limit_cents=20_000, approval_threshold_cents=5_000)


def test_every_field_has_one_column_one_script_field_and_one_wire_name() -> None:
    assert set(SCRIPT_FIELDS) == set(WIRE_NAMES) == set(COLUMNS)
    assert len(set(SCRIPT_FIELDS.values())) == len(set(WIRE_NAMES.values())) == len(COLUMNS)


def test_the_table_has_exactly_the_limits_columns() -> None:
    sql = "\n".join(path.read_text() for path in sorted((REPO / "migrations").glob("*.sql")))
    body = re.search(r"CREATE TABLE budget_limits \((.*?)\n\);", sql, re.S)
    assert body is not None
    columns = re.findall(r"^\s{4}([a-z_]+)\s+(?:bigint|integer|uuid|timestamptz)", body.group(1), re.M)
    assert [c for c in columns if c not in ("id", "agent_id", "updated_at")] == list(COLUMNS)
    # A later migration that adds or drops a column of budget_limits must add the field here too.
    assert not re.search(r"ALTER TABLE budget_limits", sql)


def test_the_budget_script_reads_and_replies_the_limits_in_field_order() -> None:
    script = (REPO / "shared" / "budget" / "reserve_budget.lua").read_text()
    names = list(SCRIPT_FIELDS.values())
    hmget = re.search(r"HMGET', KEYS\[1\], (.*?)\)", script)
    assert hmget is not None
    assert re.findall(r"'(\w+)'", hmget.group(1)) == names
    hset = re.search(r"HSET', KEYS\[1\], (.*?)\)", script)
    assert hset is not None
    assert re.findall(r"'(\w+)', given\[(\d)\]", hset.group(1)) == [(n, str(i)) for i, n in enumerate(names, 1)]
    replies = re.findall(r"return \{(?:outcome|'\w+_limit_exceeded'), [^,]+, [01], (.*?)\}", script)
    assert len(replies) == 4
    assert replies == [", ".join(names)] * 4
    assert [local for local in re.findall(r"local (\w+) = tonumber\(limits\[\d\]\)", script)] == names


def test_the_api_and_the_dashboard_request_name_the_same_limits() -> None:
    assert set(AgentLimits.model_fields) == set(WIRE_NAMES.values())
    assert set(LimitsIn.model_fields) == set(WIRE_NAMES.values())
    sent = {"daily_limit": 50_000, "per_transaction_limit": 20_000, "approval_threshold": 5_000}
    assert LimitsIn(**sent).to_limits() == LIMITS
    assert LIMITS.wire() == {**sent, "max_requests_per_minute": 20}


def test_each_form_reads_back_what_it_wrote() -> None:
    limits = Limits(daily_limit_cents=9, per_tx_limit_cents=8, approval_threshold_cents=7, max_requests_per_minute=6)
    assert limits.script_arg() == "9,8,7,6"
    assert Limits.from_script(["9", "8", "7", "6"]) == limits
    assert Limits.from_row(dict(zip(COLUMNS, (9, 8, 7, 6), strict=True))) == limits


def test_limits_out_of_order_name_each_field() -> None:
    with pytest.raises(ValidationFailed) as refused:
        Limits(daily_limit_cents=100, per_tx_limit_cents=200, approval_threshold_cents=300).validate()
    assert [e["field"] for e in refused.value.errors] == ["approval_threshold", "per_transaction_limit"]
