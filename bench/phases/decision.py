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
    from shared.platform.redis_store import AsyncRedisPyStore, RedisPyStore
    from shared.policy.limits import Limits

    limits = Limits(HUGE_DAILY, PER_TX, PER_TX, 1_000_000_000)
    store = RedisPyStore(redis_url)
    awaited = AsyncRedisPyStore(redis_url)

    async def async_store() -> AsyncRedisPyStore:
        return awaited

    engine = budget.BudgetEngine(
        store,
        async_store=async_store,
        load_limits=lambda _agent_id: limits,
        load_day=lambda _agent_id, _day: budget.DayTotals(spent_cents=0, holds={}),
    )
    agent_id = uuid.uuid4()
    day = budget.budget_day("UTC", datetime.now(UTC))
    expire_at = budget.day_keys_expire_at("UTC", day)

    async def one(i: int) -> float:
        key = f"decision-{i}-{uuid.uuid4().hex}"
        request = budget.ReserveRequest(
            agent_id=agent_id,
            idempotency_key=key,
            transaction_id=uuid.uuid4(),
            request_hash=hashlib.sha256(key.encode()).hexdigest(),
            amount_cents=1,
            day=day,
            expire_at=expire_at,
            request_id=f"req_{uuid.uuid4().hex}",
            now_ms=int(time.time() * 1000),
        )
        t0 = time.perf_counter()
        verdict = await engine.reserve(request)
        elapsed = time.perf_counter() - t0
        if not isinstance(verdict, budget.Decision) or verdict.outcome != budget.APPROVED:
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
