"""What an agent's and its organization's budget windows hold today against their limits, for people to read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from shared.budget import engine as budget
from shared.errors import BudgetUnavailable
from shared.policy.evaluate import Window
from shared.policy.model import Ceiling, Policy

AGENT_WINDOWS = (Window.DAY, Window.WEEK, Window.MONTH, Window.PAYMENTS_DAY)
ORGANIZATION_WINDOWS = (Window.ORGANIZATION_DAY, Window.ORGANIZATION_MONTH)
# The organization's counters are keyed and summed by organization alone; the engine's reads still take an agent.
_NO_AGENT = uuid.UUID(int=0)


@dataclass(frozen=True)
class WindowSpend:
    """One window as it stands: what it holds (cents, or payments for payments_day), its limit (None: no such rule),
    and its first and last day in the organization's calendar."""

    window: Window
    spent: int
    limit: int | None
    first_day: date
    last_day: date

    @property
    def counts_payments(self) -> bool:
        return self.window is Window.PAYMENTS_DAY

    @property
    def percent(self) -> int:
        """How much of the limit is used, 0 to 100: a window held past a limit lowered since shows full, and so
        does a limit of 0 (nothing more may be spent)."""
        if self.limit is None:
            return 0
        if self.limit <= 0:
            return 100
        return min(100, round(100 * self.spent / self.limit))


def agent_windows(
    *, organization_id: uuid.UUID, agent_id: uuid.UUID, policy: Policy, ceiling: Ceiling, timezone: str, now: datetime
) -> list[WindowSpend]:
    """The agent's day, week, month and payments today, then the organization's day and month where its ceiling sets
    a limit (those can decline the agent too)."""
    day = budget.budget_day(timezone, now)
    limits = policy.limits
    caps = {
        Window.DAY: limits.daily_limit_cents,
        Window.WEEK: limits.weekly_limit_cents,
        Window.MONTH: limits.monthly_limit_cents,
        Window.PAYMENTS_DAY: limits.max_payments_per_day,
    }
    found = [_window(organization_id, agent_id, day, window, caps[window]) for window in AGENT_WINDOWS]
    shared_windows = organization_windows(organization_id=organization_id, ceiling=ceiling, timezone=timezone, now=now)
    return found + [window for window in shared_windows if window.limit is not None]


def organization_windows(
    *, organization_id: uuid.UUID, ceiling: Ceiling, timezone: str, now: datetime
) -> list[WindowSpend]:
    """The organization's day and month over all its agents, limited or not."""
    day = budget.budget_day(timezone, now)
    caps = {Window.ORGANIZATION_DAY: ceiling.daily_limit_cents, Window.ORGANIZATION_MONTH: ceiling.monthly_limit_cents}
    return [_window(organization_id, _NO_AGENT, day, window, caps[window]) for window in ORGANIZATION_WINDOWS]


def _window(
    organization_id: uuid.UUID, agent_id: uuid.UUID, day: date, window: Window, limit: int | None
) -> WindowSpend:
    first, last = budget.period(window, day)
    return WindowSpend(window, _spent(organization_id, agent_id, day, window), limit, first, last)


def _spent(organization_id: uuid.UUID, agent_id: uuid.UUID, day: date, window: Window) -> int:
    """The counter the engine decides with; without Redis, the same sum from Postgres (the page still shows)."""
    try:
        return budget.get_engine().spent(organization_id, agent_id, day, window)
    except BudgetUnavailable:
        query = budget.WindowQuery(organization_id, agent_id, day, "", (window,))
        return budget.load_windows(query).sums[window]
