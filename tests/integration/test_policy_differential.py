"""The decision exists twice: the budget script holds windows atomically in Redis, and shared/policy/evaluate.py
decides in Python for the shadow policy and the simulation. Hypothesis generates policies, ceilings and request
sequences; both must decide every request alike and count every window alike (I9's logic, differentially)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.budget import engine as budget
from shared.platform.redis_py_store import AsyncRedisPyStore, RedisPyStore
from shared.policy.evaluate import Window, decide
from shared.policy.model import ApprovalRules, Ceiling, Limits, MerchantRules, Policy
from shared.policy.store import Effective

DAY = datetime.now(UTC).date()
MERCHANTS = ("api.openai.com", "shop.example.com", "x.shop.example.com", "other.net", "API.OpenAI.com")
PATTERNS = ("api.openai.com", "*.example.com", "shop.example.com", "other.net", "*.net")
CAP_HOSTS = ("api.openai.com", "shop.example.com", "other.net")

amounts = st.integers(min_value=1, max_value=400)
maybe_limit = st.one_of(st.none(), st.integers(min_value=0, max_value=1500))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    # Any values: the decision must agree even where the API would refuse the order (the script never assumes it).
    limits = Limits(
        per_tx_limit_cents=draw(maybe_limit),
        daily_limit_cents=draw(maybe_limit),
        weekly_limit_cents=draw(maybe_limit),
        monthly_limit_cents=draw(maybe_limit),
        approval_threshold_cents=draw(maybe_limit),
        max_requests_per_minute=None,
        max_payments_per_day=draw(st.one_of(st.none(), st.integers(min_value=1, max_value=12))),
    )
    merchants = MerchantRules(
        allow=tuple(draw(st.lists(st.sampled_from(PATTERNS), max_size=2, unique=True))),
        block=tuple(draw(st.lists(st.sampled_from(PATTERNS), max_size=1, unique=True))),
        daily_caps=tuple(
            (host, draw(st.integers(min_value=0, max_value=800)))
            for host in draw(st.lists(st.sampled_from(CAP_HOSTS), max_size=2, unique=True))
        ),
    )
    return Policy(limits=limits, merchants=merchants, approval=ApprovalRules(new_merchant=draw(st.booleans())))


ceilings = st.builds(Ceiling, daily_limit_cents=maybe_limit, monthly_limit_cents=maybe_limit)
requests = st.lists(st.tuples(amounts, st.sampled_from(MERCHANTS), st.booleans()), min_size=1, max_size=25)


@pytest.fixture(scope="module")
def engine_parts(services: Any) -> Iterator[tuple[RedisPyStore, AsyncRedisPyStore, asyncio.AbstractEventLoop]]:
    loop = asyncio.new_event_loop()
    awaited = AsyncRedisPyStore(services.redis_url)
    yield RedisPyStore(services.redis_url), awaited, loop
    loop.run_until_complete(awaited.close())
    loop.close()


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policy=policies(), ceiling=ceilings, sequence=requests)
def test_the_script_and_the_python_decision_agree(
    engine_parts: tuple[RedisPyStore, AsyncRedisPyStore, asyncio.AbstractEventLoop],
    policy: Policy,
    ceiling: Ceiling,
    sequence: list[tuple[int, str, bool]],
) -> None:
    blocking, awaited, loop = engine_parts
    organization, agent = uuid.uuid4(), uuid.uuid4()
    paid: set[str] = set()

    async def store() -> AsyncRedisPyStore:
        return awaited

    engine = budget.BudgetEngine(
        blocking,
        async_store=store,
        load_policy=lambda _agent: Effective(organization, policy, None, ceiling, 1, 1),
        load_windows=lambda query: budget.WindowTotals(sums=dict.fromkeys(query.windows, 0)),
        has_paid_merchant=lambda _agent, merchant: merchant in paid,
    )
    try:
        _replay(engine, loop, organization, agent, policy, ceiling, sequence, paid)
    finally:
        # No holds left behind for the sweep of a later test to find (they have no transaction rows).
        blocking.delete(*blocking.scan_keys(f"ap:{{{organization}}}:*"))


def _replay(
    engine: budget.BudgetEngine,
    loop: asyncio.AbstractEventLoop,
    organization: uuid.UUID,
    agent: uuid.UUID,
    policy: Policy,
    ceiling: Ceiling,
    sequence: list[tuple[int, str, bool]],
    paid: set[str],
) -> None:
    held: dict[tuple[Window, str], int] = {}  # Python's own counters, by window and merchant (for the merchant-day)

    def counters(merchant: str) -> dict[Window, int]:
        return {w: held.get((w, merchant if w is Window.MERCHANT_DAY else ""), 0) for w in Window}

    for index, (amount, merchant, released_later) in enumerate(sequence):
        compared = merchant.lower()
        expected = decide(
            policy,
            ceiling,
            merchant=merchant,
            amount_cents=amount,
            counters=counters(compared),
            new_merchant=compared not in paid,
        )
        key = f"k{index}"
        request = budget.ReserveRequest(
            organization_id=organization,
            agent_id=agent,
            timezone="UTC",
            day=DAY,
            merchant=merchant,
            amount_cents=amount,
            idempotency_key=key,
            transaction_id=uuid.uuid4(),
            request_hash="h",
            request_id=key,
            now_ms=1_764_000_000_000 + index,
        )
        got = loop.run_until_complete(engine.reserve(request))
        assert isinstance(got, budget.Decision)
        assert (got.status, got.reason) == (expected.status, expected.reason), (index, amount, merchant)
        assert got.counters == counters(compared)
        if got.holds_budget:
            for window in Window:
                slot = (window, compared if window is Window.MERCHANT_DAY else "")
                held[slot] = held.get(slot, 0) + (1 if window is Window.PAYMENTS_DAY else amount)
            if released_later:  # declined by people or a failed charge: the hold comes back, in both
                engine.release(
                    organization_id=organization, agent_id=agent, day=DAY, merchant=merchant, idempotency_key=key
                )
                for window in Window:
                    slot = (window, compared if window is Window.MERCHANT_DAY else "")
                    held[slot] -= 1 if window is Window.PAYMENTS_DAY else amount
            elif got.status.value == "approved":
                paid.add(compared)
