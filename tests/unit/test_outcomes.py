"""Every place that spells out statuses and decision reasons agrees with shared/policy/outcomes.py, the one definition.

A new decline reason (the coming policies add several) must reach all of them: this test names the one it missed."""

from __future__ import annotations

import re
import typing

from shared.http import schema as api_schema
from shared.policy.outcomes import BUDGET_DECLINES, TERMINAL, DecisionReason, Status
from tests.conftest import REPO

REASONS = {reason.value for reason in DecisionReason}
STATUSES = {status.value for status in Status}


def _quoted(text: str) -> set[str]:
    return set(re.findall(r"'([a-z_]+)'", text))


def test_the_database_refuses_exactly_the_other_values() -> None:
    # The latest migration that states a check is the one in force (a new reason comes with a migration).
    schema = "\n".join(path.read_text() for path in sorted((REPO / "migrations").glob("*.sql")))
    status_checks = re.findall(r"CHECK \(status IN \((.*?)\)\)", schema, re.S)
    reason_checks = re.findall(r"CHECK \(decision_reason IN \((.*?)\)\)", schema, re.S)
    assert status_checks and reason_checks
    assert _quoted(status_checks[-1]) == STATUSES
    assert _quoted(reason_checks[-1]) == REASONS


def test_the_budget_script_declines_with_the_budget_reasons() -> None:
    script = (REPO / "shared" / "budget" / "reserve_budget.lua").read_text()
    declines = {name for name in re.findall(r"return \{'([a-z_]+)'", script) if name.endswith("_exceeded")}
    assert declines == {reason.value for reason in BUDGET_DECLINES}


def test_the_api_schema_documents_each_value() -> None:
    assert set(typing.get_args(api_schema.Status)) == STATUSES
    assert set(typing.get_args(api_schema.Reason)) == REASONS


def test_a_budget_decline_answers_its_reason_as_the_402_code() -> None:
    from types import SimpleNamespace

    from shared.errors import BudgetExceededError

    limits = SimpleNamespace(per_tx_limit_cents=2000, daily_limit_cents=5000)
    for reason in BUDGET_DECLINES:
        decision = SimpleNamespace(outcome=reason.value, limits=limits, spent_before_cents=4500)
        error = BudgetExceededError.for_decision(decision, amount_cents=2500)
        assert (error.http_status, error.code) == (402, reason.value)


def test_the_python_sdk_knows_the_budget_reasons_and_the_terminal_statuses() -> None:
    from agentpay_spend import _client, _transaction

    assert set(_client._BUDGET_REASONS) == {reason.value for reason in BUDGET_DECLINES}
    assert set(_transaction.TERMINAL_STATUSES) == {status.value for status in TERMINAL}


def test_the_dashboard_labels_every_value() -> None:
    from functions.dashboard.pages import common

    assert set(common.DECISION_REASONS) == REASONS
    assert set(common.STATUS_LABELS) == STATUSES


def test_the_typescript_sdk_types_every_value() -> None:
    types = (REPO / "sdk" / "typescript" / "src" / "types.ts").read_text()

    def constant(name: str) -> set[str]:
        found = re.search(rf"export const {name} = \[(.*?)\] as const", types, re.S)
        assert found, name
        return set(re.findall(r'"([a-z_]+)"', found.group(1)))

    assert constant("TRANSACTION_STATUSES") == STATUSES
    assert constant("DECISION_REASONS") == REASONS
