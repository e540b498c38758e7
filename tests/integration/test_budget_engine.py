"""The budget engine's contract, run through redis-py and through the Upstash client (via the REST bridge)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest

from shared.budget import engine as budget
from shared.platform.redis_py_store import AsyncRedisPyStore, RedisPyStore
from shared.platform.redis_store import AsyncRedisStore, InThreadStore, RedisStore
from shared.platform.upstash_store import UpstashStore
from shared.policy.limits import Limits
from tests.support.upstash_bridge import UpstashBridge

# Today: day keys expire two days after their day, so a fixed date would make Redis drop them at once once it
# lies more than two days back (these tests began failing three days after the date they were written with).
DAY = datetime.now(UTC).date()
LIMITS = Limits(
    daily_limit_cents=1000, per_tx_limit_cents=600, approval_threshold_cents=300, max_requests_per_minute=50
)


@dataclass
class Stores:
    """The blocking store (release, settle, ...) and the one payment requests await (on `loop`), one Redis."""

    blocking: RedisStore
    awaited: AsyncRedisStore
    loop: asyncio.AbstractEventLoop


@pytest.fixture(params=["redis-py", "upstash"])
def store(request: pytest.FixtureRequest, services: Any) -> Iterator[Stores]:
    loop = asyncio.new_event_loop()
    try:
        if request.param == "redis-py":
            stores = Stores(RedisPyStore(services.redis_url), AsyncRedisPyStore(services.redis_url), loop)
            yield stores
            loop.run_until_complete(stores.awaited.close())
            return
        with UpstashBridge(services.redis_url, "bridge-token") as bridge:
            upstash = UpstashStore(bridge.url, "bridge-token")
            yield Stores(upstash, InThreadStore(upstash), loop)
    finally:
        loop.close()


class Engine:
    """An engine whose Postgres side is a dictionary the test controls, on an event loop of its own."""

    def __init__(self, stores: Stores) -> None:
        self.postgres_day = budget.DayTotals(spent_cents=0, holds={})
        self.day_loads = 0
        self.loop = stores.loop

        async def awaited() -> AsyncRedisStore:
            return stores.awaited

        self.engine = budget.BudgetEngine(
            stores.blocking, async_store=awaited, load_limits=lambda _agent: LIMITS, load_day=self._load_day
        )
        self.agent = uuid.uuid4()

    def _load_day(self, _agent: uuid.UUID, _day: date) -> budget.DayTotals:
        self.day_loads += 1
        return self.postgres_day

    def request(self, amount: int, key: str | None = None, *, request_id: str | None = None) -> budget.ReserveRequest:
        return budget.ReserveRequest(
            agent_id=self.agent,
            idempotency_key=key or uuid.uuid4().hex,
            transaction_id=uuid.uuid4(),
            request_hash="h",
            amount_cents=amount,
            day=DAY,
            expire_at=budget.day_keys_expire_at("UTC", DAY),
            request_id=request_id or uuid.uuid4().hex,
            now_ms=1_764_000_000_000,
        )

    def run(self, request: budget.ReserveRequest) -> Any:
        return self.loop.run_until_complete(self.engine.reserve(request))

    def reserve(self, amount: int, key: str | None = None, *, request_id: str | None = None) -> Any:
        return self.run(self.request(amount, key, request_id=request_id))

    def reserve_at_once(self, amounts: list[int]) -> list[Any]:
        """Every request in flight together, each on its own Redis connection (or thread, for Upstash)."""

        async def together() -> list[Any]:
            return await asyncio.gather(*(self.engine.reserve(self.request(a)) for a in amounts))

        return self.loop.run_until_complete(together())

    def spent(self) -> int:
        return self.engine.spent(self.agent, DAY)


def test_outcomes_follow_threshold_and_limits(store: Stores) -> None:
    e = Engine(store)
    assert e.reserve(300).outcome == "approved"
    assert e.reserve(301).outcome == "pending"
    assert e.reserve(601).outcome == "per_transaction_limit_exceeded"
    assert e.reserve(400).outcome == "daily_limit_exceeded"  # 601 held; 1001 > 1000
    assert e.reserve(399).outcome == "pending"
    assert e.spent() == 1000


def test_the_same_reservation_twice_counts_once(store: Stores) -> None:
    e = Engine(store)
    first = e.run(req := e.request(200, "k", request_id="r1"))
    again = e.run(req)  # a lost reply retried: same transaction id, same request id
    assert isinstance(first, budget.Decision) and isinstance(again, budget.Decision)
    assert first.newly_held and not again.newly_held
    assert again.outcome == "approved"
    assert e.spent() == 200


def test_a_second_request_with_the_key_is_a_replay(store: Stores) -> None:
    e = Engine(store)
    e.reserve(200, key="k")
    replay = e.reserve(200, key="k")
    assert isinstance(replay, budget.Replay) and replay.request_hash == "h"
    assert e.spent() == 200


def test_release_frees_exactly_once_and_settle_keeps_it_spent(store: Stores) -> None:
    e = Engine(store)
    e.reserve(300, key="a")
    e.reserve(200, key="b")
    assert e.engine.release(agent_id=e.agent, day=DAY, idempotency_key="a") == 300
    assert e.engine.release(agent_id=e.agent, day=DAY, idempotency_key="a") == 0
    e.engine.settle(agent_id=e.agent, day=DAY, idempotency_key="b")
    assert e.engine.release(agent_id=e.agent, day=DAY, idempotency_key="b") == 0
    assert e.spent() == 200


def test_a_missing_counter_is_rebuilt_from_postgres_with_its_holds(store: Stores) -> None:
    e = Engine(store)
    e.postgres_day = budget.DayTotals(spent_cents=900, holds={"held": 400})
    assert e.reserve(101).outcome == "daily_limit_exceeded"
    assert e.day_loads == 1
    assert e.reserve(100).outcome == "approved"
    assert e.day_loads == 1, "the counter is rebuilt once, then Redis decides alone"
    assert e.engine.release(agent_id=e.agent, day=DAY, idempotency_key="held") == 400
    assert e.spent() == 600


def test_concurrent_reservations_never_exceed_the_daily_limit(store: Stores) -> None:
    e = Engine(store)
    results = [decision.outcome for decision in e.reserve_at_once([100] * 40)]
    assert results.count("approved") + results.count("pending") == 10
    assert e.spent() == 1000


def test_day_keys_carry_their_expiry(store: Stores, services: Any) -> None:
    import redis

    e = Engine(store)
    e.reserve(100)
    raw = redis.Redis.from_url(services.redis_url)
    expire_at = raw.expiretime(budget.spent_key(e.agent, DAY))
    assert expire_at == budget.day_keys_expire_at("UTC", DAY)
    assert raw.expiretime(budget.holds_key(e.agent, DAY)) == expire_at
    assert 0 < raw.ttl(budget.limits_key(e.agent)) <= 10
