"""The policy as API.md writes it: read from JSON with every problem named by its path, written back unchanged, and
decided in the order API.md gives (shared/policy/model.py, shared/policy/evaluate.py)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import ValidationFailed
from shared.policy.evaluate import Window, decide
from shared.policy.model import (
    Ceiling,
    Policy,
    ceiling_from_wire,
    ceiling_wire,
    matches,
    policy_from_wire,
    policy_wire,
)
from shared.policy.outcomes import DecisionReason, Status

EXAMPLE = {
    "limits": {
        "per_transaction_limit": 5000,
        "daily_limit": 20000,
        "weekly_limit": None,
        "monthly_limit": 200000,
        "approval_threshold": 1000,
        "max_requests_per_minute": 20,
        "max_payments_per_day": None,
    },
    "merchants": {
        "allow": ["api.openai.com", "*.example.com"],
        "block": [],
        "limits": [{"merchant": "api.openai.com", "daily_limit": 5000}],
    },
    "approval": {"new_merchant": False, "dual_approval_above": None},
}


def refused(document: Any) -> list[dict[str, str]]:
    with pytest.raises(ValidationFailed) as raised:
        policy_from_wire(document)
    return raised.value.errors


def with_limits(**limits: Any) -> dict[str, Any]:
    return {**EXAMPLE, "limits": {**EXAMPLE["limits"], **limits}}


def test_api_md_example_reads_and_writes_back_unchanged() -> None:
    assert policy_wire(policy_from_wire(EXAMPLE)) == EXAMPLE


def test_only_limits_is_required_and_absent_rules_are_none() -> None:
    policy = policy_from_wire({"limits": {"daily_limit": 100}})
    assert policy.limits.daily_limit_cents == 100
    assert policy.limits.per_tx_limit_cents is None
    assert policy.limits.max_requests_per_minute == 20
    assert policy.merchants.allow == () and policy.approval.new_merchant is False
    assert refused({})[0] == {"field": "policy.limits", "message": "is required"}


def test_a_window_shorter_than_the_one_before_it_is_named_by_its_path() -> None:
    errors = refused(with_limits(weekly_limit=10000))
    assert errors == [{"field": "policy.limits.weekly_limit", "message": "must be at least daily_limit"}]
    # Unset windows are skipped: per-transaction against monthly when daily and weekly are null.
    errors = refused(with_limits(daily_limit=None, monthly_limit=4000))
    assert errors == [{"field": "policy.limits.monthly_limit", "message": "must be at least per_transaction_limit"}]
    errors = refused(with_limits(approval_threshold=6000))
    assert errors == [{"field": "policy.limits.approval_threshold", "message": "must not exceed per_transaction_limit"}]


def test_at_least_one_spending_limit() -> None:
    errors = refused(
        with_limits(per_transaction_limit=None, daily_limit=None, monthly_limit=None, approval_threshold=None)
    )
    assert [e["field"] for e in errors] == ["policy.limits"]
    assert "at least one of" in errors[0]["message"]


@pytest.mark.parametrize("value", ["1000", 1000.0, True, -1, 10**12, [1]])
def test_a_limit_is_an_integer_number_of_cents_in_range(value: Any) -> None:
    errors = refused(with_limits(daily_limit=value))
    assert errors[0]["field"] == "policy.limits.daily_limit"


def test_every_problem_is_named_at_once() -> None:
    document = {
        "limits": {"daily_limit": "a lot", "dayly_limit": 5},
        "merchants": {"allow": ["ok.example", "not a host", "*.*.x"], "limits": [{"merchant": "*.x.com"}]},
        "approval": {"new_merchant": "yes"},
        "extra": 1,
    }
    fields = [e["field"] for e in refused(document)]
    assert fields == [
        "policy.extra",
        "policy.limits.dayly_limit",
        "policy.limits.daily_limit",
        "policy.limits",
        "policy.merchants.allow[1]",
        "policy.merchants.allow[2]",
        "policy.merchants.limits[0].merchant[0]",
        "policy.approval.new_merchant",
    ]


def test_patterns_are_compared_in_lower_case_and_kept_once() -> None:
    policy = policy_from_wire({"limits": {"daily_limit": 1}, "merchants": {"block": ["Shop.Example.", "shop.example"]}})
    assert policy.merchants.block == ("shop.example",)


@pytest.mark.parametrize(
    ("pattern", "merchant", "matched"),
    [
        ("api.openai.com", "api.openai.com", True),
        ("api.openai.com", "API.OpenAI.com", True),
        ("api.openai.com", " api.openai.com. ", True),
        ("api.openai.com", "openai.com", False),
        ("api.openai.com", "x.api.openai.com", False),
        ("*.example.com", "example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "badexample.com", False),
        ("*.example.com", "example.com.evil.net", False),
    ],
)
def test_a_pattern_matches_its_host_and_a_wildcard_its_subdomains(pattern: str, merchant: str, matched: bool) -> None:
    assert matches(pattern, merchant) is matched


def verdict(policy: Policy, merchant: str = "api.openai.com", amount: int = 100, **counters: int) -> Any:
    return decide(
        policy,
        Ceiling(daily_limit_cents=counters.pop("ceiling", None)),
        merchant=merchant,
        amount_cents=amount,
        counters={Window(name): value for name, value in counters.items()},
        new_merchant=False,
    )


def test_a_block_wins_over_an_allow_and_an_unlisted_merchant_is_declined() -> None:
    policy = policy_from_wire(
        {"limits": {"daily_limit": 10_000}, "merchants": {"allow": ["*.example.com"], "block": ["bad.example.com"]}}
    )
    assert verdict(policy, "bad.example.com").reason is DecisionReason.MERCHANT_BLOCKED
    assert verdict(policy, "shop.example.com").status is Status.APPROVED
    assert verdict(policy, "api.openai.com").reason is DecisionReason.MERCHANT_NOT_ALLOWED
    assert verdict(policy_from_wire({"limits": {"daily_limit": 1000}}), "anyone").status is Status.APPROVED


def test_checks_run_in_api_md_order() -> None:
    policy = policy_from_wire(EXAMPLE)
    # Over the per-transaction limit and the merchant's cap: per-transaction comes first.
    assert verdict(policy, amount=6000, merchant_day=5000).reason is DecisionReason.PER_TRANSACTION_LIMIT_EXCEEDED
    # The merchant's cap comes before the day.
    late = verdict(policy, amount=1000, merchant_day=4500, day=19500)
    assert (late.reason, late.window, late.limit, late.spent) == (
        DecisionReason.MERCHANT_DAILY_LIMIT_EXCEEDED, Window.MERCHANT_DAY, 5000, 4500
    )  # fmt: skip
    assert verdict(policy, amount=1000, day=19500).reason is DecisionReason.DAILY_LIMIT_EXCEEDED
    assert verdict(policy, amount=1000, month=199_500).reason is DecisionReason.MONTHLY_LIMIT_EXCEEDED
    assert verdict(policy, amount=1000, ceiling=500).reason is DecisionReason.ORGANIZATION_DAILY_LIMIT_EXCEEDED
    # Within every limit: by amount, pending above the threshold.
    assert verdict(policy, amount=1001).reason is DecisionReason.APPROVAL_REQUIRED
    assert verdict(policy, amount=1000).reason is DecisionReason.AUTO_APPROVED
    # Exactly at a limit is allowed.
    assert verdict(policy, amount=1000, day=19000).status is Status.APPROVED


def test_payments_per_day_count_payments_not_cents() -> None:
    policy = policy_from_wire({"limits": {"daily_limit": 10**6, "max_payments_per_day": 3}})
    assert verdict(policy, payments_day=2).status is Status.APPROVED
    assert verdict(policy, payments_day=3).reason is DecisionReason.PAYMENT_COUNT_EXCEEDED


def test_a_new_merchant_waits_for_people_only_when_the_rule_is_on() -> None:
    policy = policy_from_wire({"limits": {"daily_limit": 10**6}, "approval": {"new_merchant": True}})
    new = decide(policy, Ceiling(), merchant="m.example", amount_cents=5, counters={}, new_merchant=True)
    assert (new.status, new.reason) == (Status.PENDING, DecisionReason.NEW_MERCHANT_REQUIRES_APPROVAL)
    known = decide(policy, Ceiling(), merchant="m.example", amount_cents=5, counters={}, new_merchant=False)
    assert known.status is Status.APPROVED


def test_the_organization_ceiling_reads_and_checks_its_order() -> None:
    document = {"limits": {"daily_limit": 100, "monthly_limit": None}}
    assert ceiling_wire(ceiling_from_wire(document)) == document
    with pytest.raises(ValidationFailed) as raised:
        ceiling_from_wire({"limits": {"daily_limit": 100, "monthly_limit": 50}})
    assert raised.value.errors == [{"field": "policy.limits.daily_limit", "message": "must not exceed monthly_limit"}]


# Windows roll over at the organization's local midnight ------------------------------------------------------------
def test_the_week_runs_monday_to_sunday_and_the_month_by_the_calendar() -> None:
    from datetime import date

    from shared.budget.engine import period

    sunday, monday = date(2026, 11, 29), date(2026, 11, 30)
    assert period(Window.WEEK, sunday) == (date(2026, 11, 23), sunday)
    assert period(Window.WEEK, monday) == (monday, date(2026, 12, 6))
    assert period(Window.MONTH, monday) == (date(2026, 11, 1), monday)
    assert period(Window.MONTH, date(2028, 2, 10)) == (date(2028, 2, 1), date(2028, 2, 29))
    assert period(Window.DAY, monday) == (monday, monday)


@pytest.mark.parametrize(
    ("timezone", "before", "after"),
    [
        # New York leaves daylight saving time in the night of Sunday 1 November 2026 (a 25-hour Sunday).
        ("America/New_York", "2026-11-02T04:59:59+00:00", "2026-11-02T05:00:00+00:00"),
        # It enters it on Sunday 8 March 2026 (a 23-hour Sunday): Monday begins at 04:00 UTC.
        ("America/New_York", "2026-03-09T03:59:59+00:00", "2026-03-09T04:00:00+00:00"),
        ("Asia/Tokyo", "2026-11-29T14:59:59+00:00", "2026-11-29T15:00:00+00:00"),
    ],
)
def test_a_new_week_begins_at_local_monday_midnight(timezone: str, before: str, after: str) -> None:
    from datetime import datetime

    from shared.budget.engine import budget_day, period

    last, first = (
        budget_day(timezone, datetime.fromisoformat(before)),
        budget_day(timezone, datetime.fromisoformat(after)),
    )
    assert last.weekday() == 6 and first.weekday() == 0
    assert period(Window.WEEK, last) != period(Window.WEEK, first)


def test_a_new_month_begins_at_local_midnight_of_the_first() -> None:
    from datetime import datetime

    from shared.budget.engine import budget_day, period

    # 1 December 2026 00:00 in Tokyo is 30 November 15:00 UTC; in Los Angeles it is 1 December 08:00 UTC.
    tokyo = budget_day("Asia/Tokyo", datetime.fromisoformat("2026-11-30T15:00:00+00:00"))
    los_angeles = budget_day("America/Los_Angeles", datetime.fromisoformat("2026-12-01T07:59:59+00:00"))
    assert period(Window.MONTH, tokyo)[0].month == 12
    assert period(Window.MONTH, los_angeles)[0].month == 11


def test_a_window_s_keys_expire_two_days_after_its_last_local_midnight_across_dst() -> None:
    from datetime import date, datetime

    from shared.budget.engine import expires_at

    # The week of Monday 2 March 2026 ends on the 23-hour Sunday 8 March; its keys go at 11 March 00:00 EDT.
    assert expires_at(Window.WEEK, "America/New_York", date(2026, 3, 4)) == int(
        datetime.fromisoformat("2026-03-11T04:00:00+00:00").timestamp()
    )
    assert expires_at(Window.MONTH, "UTC", date(2026, 2, 14)) == int(
        datetime.fromisoformat("2026-03-03T00:00:00+00:00").timestamp()
    )
