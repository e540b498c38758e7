"""Every place that spells out statuses and decision reasons agrees with shared/policy/outcomes.py, the one definition.

A new decline reason (the coming policies add several) must reach all of them: this test names the one it missed."""

from __future__ import annotations

import re
import typing

from shared.http import schema as api_schema
from shared.policy.evaluate import PRECHECK_REASONS, WINDOW_REASONS, Window
from shared.policy.outcomes import APPROVAL_REASONS, BUDGET_DECLINES, TERMINAL, DecisionReason, Status
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


def test_the_policy_checks_in_the_order_of_the_budget_reasons() -> None:
    """The checks that need no counter, then the windows the budget script checks in order, give the declines."""
    order = [*PRECHECK_REASONS, *(WINDOW_REASONS[window] for window in Window)]
    assert order == list(BUDGET_DECLINES)
    script = (REPO / "shared" / "budget" / "reserve_budget.lua").read_text()
    assert "return answer('declined', 0, i)" in script, "the script names the exceeded window by its index"


def test_the_api_schema_documents_each_value() -> None:
    assert set(typing.get_args(api_schema.Status)) == STATUSES
    assert set(typing.get_args(api_schema.Reason)) == REASONS


def test_a_budget_decline_answers_its_reason_as_the_402_code() -> None:
    from types import SimpleNamespace

    from shared.errors import BudgetExceededError
    from shared.policy.evaluate import Check

    policy = SimpleNamespace(limits=SimpleNamespace(per_tx_limit_cents=2000))
    exceeded = {reason: window for window, reason in WINDOW_REASONS.items()}
    for reason in BUDGET_DECLINES:
        window = exceeded.get(reason)
        decision = SimpleNamespace(
            reason=reason,
            effective=SimpleNamespace(policy=policy),
            exceeded=None if window is None else Check(window, 5000, 2500),
            counters={w: 4500 for w in Window},
        )
        error = BudgetExceededError.for_decision(decision, amount_cents=2500, merchant="api.example.com")
        assert (error.http_status, error.code) == (402, reason.value)


def test_the_python_sdk_knows_the_budget_reasons_and_the_terminal_statuses() -> None:
    from agentpay_spend import _client, _transaction

    assert set(_client._BUDGET_REASONS) == {reason.value for reason in BUDGET_DECLINES}
    assert set(_transaction.TERMINAL_STATUSES) == {status.value for status in TERMINAL}


def test_the_python_sdk_types_every_value_in_order() -> None:
    import agentpay_spend

    def values(members: typing.Iterable[DecisionReason | Status]) -> list[str]:
        return [member.value for member in members]

    assert values(BUDGET_DECLINES) == list(agentpay_spend.BUDGET_DECLINE_REASONS)
    assert values(APPROVAL_REASONS) == list(agentpay_spend.APPROVAL_REASONS)
    assert values(DecisionReason) == list(agentpay_spend.DECISION_REASONS)
    assert values(Status) == list(agentpay_spend.TRANSACTION_STATUSES)


def test_the_dashboard_labels_every_value() -> None:
    from functions.dashboard.pages import common

    assert set(common.DECISION_REASONS) == REASONS
    assert set(common.STATUS_LABELS) == STATUSES


def test_the_typescript_sdk_types_every_value() -> None:
    types = (REPO / "sdk" / "typescript" / "src" / "types.ts").read_text()

    def constant(name: str) -> set[str]:
        return set(in_order(name))

    def in_order(name: str) -> list[str]:
        found = re.search(rf"export const {name} = \[(.*?)\] as const", types, re.S)
        assert found, name
        return re.findall(r'"([a-z_]+)"', found.group(1))

    assert constant("TRANSACTION_STATUSES") == STATUSES
    assert constant("DECISION_REASONS") == REASONS
    assert in_order("BUDGET_DECLINE_REASONS") == [reason.value for reason in BUDGET_DECLINES]
    assert in_order("APPROVAL_REASONS") == [reason.value for reason in APPROVAL_REASONS]
