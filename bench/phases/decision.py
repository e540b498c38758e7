"""The budget engine's decision alone, in-process on uvloop as the server runs it: its Python over a bare EVALSHA."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from bench.client import HUGE_DAILY, PER_TX
from bench.context import Context
from bench.report import say, stopwatch, summary_ms


def run(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    say(f"[decision] {plan.decision} x BudgetEngine.reserve in-process, {plan.decision_warmup} warm-up")
    with stopwatch():
        decision = measure_decision(ctx.services.redis_url, plan.decision, plan.decision_warmup)
    return {
        "decision_p50_ms": decision["p50"],
        "decision_p99_ms": decision["p99"],
        "details": {"decision_ms": decision},
        "counts": {"decision": plan.decision, "decision_warmup": plan.decision_warmup},
    }


def measure_decision(redis_url: str, n: int, warmup: int) -> dict[str, Any]:
    """shared.budget.engine.BudgetEngine.reserve over an AsyncRedisPyStore, in-process on uvloop as the server runs it
    (limits and day given, no Postgres)."""
    import uvloop

    from shared.budget import engine as budget
    from shared.platform.redis_py_store import AsyncRedisPyStore, RedisPyStore
    from shared.policy.model import MAX_REQUESTS_PER_MINUTE, Ceiling, Limits, Policy
    from shared.policy.store import Effective

    organization_id, agent_id = uuid.uuid4(), uuid.uuid4()
    effective = Effective(
        organization_id,
        Policy(limits=Limits(daily_limit_cents=HUGE_DAILY, per_tx_limit_cents=PER_TX, approval_threshold_cents=PER_TX,
                             max_requests_per_minute=MAX_REQUESTS_PER_MINUTE)),
        None,
        Ceiling(),
        1,
        1,
    )  # fmt: skip
    store = RedisPyStore(redis_url)
    awaited = AsyncRedisPyStore(redis_url)

    async def async_store() -> AsyncRedisPyStore:
        return awaited

    engine = budget.BudgetEngine(
        store,
        async_store=async_store,
        load_policy=lambda _agent_id: effective,
        load_windows=lambda query: budget.WindowTotals(sums=dict.fromkeys(query.windows, 0)),
        has_paid_merchant=lambda _agent_id, _merchant: True,
    )
    day = budget.budget_day("UTC", datetime.now(UTC))

    async def one(i: int) -> float:
        key = f"decision-{i}-{uuid.uuid4().hex}"
        request = budget.ReserveRequest(
            organization_id=organization_id,
            agent_id=agent_id,
            timezone="UTC",
            day=day,
            merchant="bench.example.com",
            amount_cents=1,
            idempotency_key=key,
            transaction_id=uuid.uuid4(),
            request_hash=hashlib.sha256(key.encode()).hexdigest(),
            request_id=f"req_{uuid.uuid4().hex}",
            now_ms=int(time.time() * 1000),
        )
        t0 = time.perf_counter()
        verdict = await engine.reserve(request)
        elapsed = time.perf_counter() - t0
        if not isinstance(verdict, budget.Decision) or verdict.outcome != "approved":
            raise RuntimeError(f"decision iteration {i}: {verdict!r}")
        return elapsed

    async def main() -> list[float]:
        try:
            for i in range(warmup):
                await one(-1 - i)
            return [await one(i) for i in range(n)]
        finally:
            await awaited.close()

    try:
        samples = uvloop.run(main())
    finally:
        store.close()
    return summary_ms(samples)
