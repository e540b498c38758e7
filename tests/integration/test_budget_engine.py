"""The budget engine's contract, run through redis-py and through the Upstash client (via the REST bridge)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from shared.budget import engine as budget
from shared.platform.redis_py_store import AsyncRedisPyStore, RedisPyStore
from shared.platform.redis_store import AsyncRedisStore, InThreadStore, RedisStore
from shared.platform.upstash_store import UpstashStore
from shared.policy.evaluate import Window
from shared.policy.model import ApprovalRules, Ceiling, Limits, MerchantRules, Policy
from shared.policy.store import Effective
from tests.support.upstash_bridge import UpstashBridge

# Today: day keys expire two days after their day, so a fixed date would make Redis drop them at once once it
# lies more than two days back (these tests began failing three days after the date they were written with).
DAY = datetime.now(UTC).date()
LIMITS = Limits(
    daily_limit_cents=1000, per_tx_limit_cents=600, approval_threshold_cents=300, max_requests_per_minute=50
)
MERCHANT = "api.example.com"


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
            _forget_test_keys(stores.blocking)
            return
        with UpstashBridge(services.redis_url, "bridge-token") as bridge:
            upstash = UpstashStore(bridge.url, "bridge-token")
            yield Stores(upstash, InThreadStore(upstash), loop)
            _forget_test_keys(upstash)
    finally:
        loop.close()


def _forget_test_keys(store: RedisStore) -> None:
    """These engines' holds have no transaction rows: none may be left for a later test's sweep to free."""
    for organization in list(Engine.organizations):
        store.delete(*store.scan_keys(f"ap:{{{organization}}}:*"))
    Engine.organizations.clear()


class Engine:
    """An engine whose Postgres side is dictionaries the test controls, on an event loop of its own."""

    organizations: ClassVar[set[uuid.UUID]] = set()

    def __init__(self, stores: Stores, policy: Policy | None = None, ceiling: Ceiling | None = None) -> None:
        self.organization = uuid.uuid4()
        Engine.organizations.add(self.organization)
        self.agent = uuid.uuid4()
        self.policy = policy or Policy(limits=LIMITS)
        self.ceiling = ceiling or Ceiling()
        self.version = 1
        self.postgres: dict[Window, int] = {}
        self.postgres_holds: dict[str, tuple[int, str]] = {}
        self.window_loads: list[tuple[Window, ...]] = []
        self.policy_loads = 0
        self.paid: set[str] = set()
        self.loop = stores.loop

        async def awaited() -> AsyncRedisStore:
            return stores.awaited

        self.engine = budget.BudgetEngine(
            stores.blocking,
            async_store=awaited,
            load_policy=self._load_policy,
            load_windows=self._load_windows,
            has_paid_merchant=lambda _agent, merchant: merchant in self.paid,
        )

    def _load_policy(self, agent_id: uuid.UUID) -> Effective:
        self.policy_loads += 1
        return Effective(self.organization, self.policy, None, self.ceiling, self.version, 1)

    def _load_windows(self, query: budget.WindowQuery) -> budget.WindowTotals:
        self.window_loads.append(query.windows)
        holds = self.postgres_holds if Window.DAY in query.windows else {}
        return budget.WindowTotals(sums={w: self.postgres.get(w, 0) for w in query.windows}, holds=holds)

    def change_policy(self, policy: Policy) -> None:
        """What an admin's change does: a new version in Postgres, the published one dropped."""
        self.policy = policy
        self.version += 1
        self.engine.forget_policy(self.organization, self.agent)

    def request(
        self, amount: int, key: str | None = None, *, request_id: str | None = None, merchant: str = MERCHANT
    ) -> budget.ReserveRequest:
        return budget.ReserveRequest(
            organization_id=self.organization,
            agent_id=self.agent,
            timezone="UTC",
            day=DAY,
            merchant=merchant,
            amount_cents=amount,
            idempotency_key=key or uuid.uuid4().hex,
            transaction_id=uuid.uuid4(),
            request_hash="h",
            request_id=request_id or uuid.uuid4().hex,
            now_ms=1_764_000_000_000,
        )

    def run(self, request: budget.ReserveRequest) -> Any:
        return self.loop.run_until_complete(self.engine.reserve(request))

    def reserve(self, amount: int, key: str | None = None, **fields: Any) -> Any:
        return self.run(self.request(amount, key, **fields))

    def reserve_at_once(self, amounts: list[int]) -> list[Any]:
        """Every request in flight together, each on its own Redis connection (or thread, for Upstash)."""

        async def together() -> list[Any]:
            return await asyncio.gather(*(self.engine.reserve(self.request(a)) for a in amounts))

        return self.loop.run_until_complete(together())

    def release(self, key: str, merchant: str = MERCHANT) -> int:
        return self.engine.release(
            organization_id=self.organization, agent_id=self.agent, day=DAY, merchant=merchant, idempotency_key=key
        )

    def settle(self, key: str, merchant: str = MERCHANT) -> None:
        self.engine.settle(
            organization_id=self.organization, agent_id=self.agent, day=DAY, merchant=merchant, idempotency_key=key
        )

    def spent(self, window: Window = Window.DAY) -> int:
        return self.engine.spent(self.organization, self.agent, DAY, window)


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
    assert e.release("a") == 300
    assert e.release("a") == 0
    e.settle("b")
    assert e.release("b") == 0
    assert e.spent() == 200
    assert e.spent(Window.WEEK) == e.spent(Window.MONTH) == e.spent(Window.ORGANIZATION_DAY) == 200
    assert e.spent(Window.PAYMENTS_DAY) == 1


def test_a_missing_counter_is_rebuilt_from_postgres_with_its_holds(store: Stores) -> None:
    e = Engine(store)
    e.postgres = {Window.DAY: 900, Window.WEEK: 900, Window.MONTH: 900, Window.PAYMENTS_DAY: 2}
    e.postgres_holds = {"held": (400, MERCHANT)}
    assert e.reserve(101).outcome == "daily_limit_exceeded"
    assert e.window_loads == [budget.WINDOWS]
    assert e.reserve(100).outcome == "approved"
    assert len(e.window_loads) == 1, "the counters are rebuilt once, then Redis decides alone"
    assert e.release("held") == 400
    assert (e.spent(), e.spent(Window.WEEK), e.spent(Window.PAYMENTS_DAY)) == (600, 600, 2)


def test_concurrent_reservations_never_exceed_the_daily_limit(store: Stores) -> None:
    e = Engine(store)
    results = [decision.outcome for decision in e.reserve_at_once([100] * 40)]
    assert results.count("approved") + results.count("pending") == 10
    assert e.spent() == 1000


def test_window_keys_carry_their_expiry(store: Stores, services: Any) -> None:
    import redis

    e = Engine(store)
    e.reserve(100)
    raw = redis.Redis.from_url(services.redis_url)
    for window in budget.WINDOWS:
        key = budget.window_key(window, e.organization, e.agent, DAY, MERCHANT)
        assert raw.expiretime(key) == budget.expires_at(window, "UTC", DAY), window
    assert raw.expiretime(budget.holds_key(e.organization, e.agent, DAY)) == budget.day_keys_expire_at("UTC", DAY)
    assert 0 < raw.ttl(budget.policy_version_key(e.organization, e.agent)) <= 10


def test_every_key_of_an_organization_shares_its_hash_tag(store: Stores) -> None:
    e = Engine(store)
    tag = "{" + str(e.organization) + "}"
    keys = [budget.window_key(w, e.organization, e.agent, DAY, MERCHANT) for w in budget.WINDOWS]
    keys += [budget.holds_key(e.organization, e.agent, DAY), budget.policy_version_key(e.organization, e.agent)]
    keys += [budget.ceiling_version_key(e.organization), budget.claim_key(e.organization, e.agent, "k")]
    assert all(key.count("{") == 1 and tag in key for key in keys)


def test_a_changed_policy_decides_the_next_request_and_an_old_one_is_refused(store: Stores) -> None:
    e = Engine(store)
    other = Engine(store)  # a second container of the same agent: its own cache, the same Redis
    other.organization, other.agent, other.policy = e.organization, e.agent, e.policy
    assert e.reserve(500).outcome == "pending" and other.reserve(100).outcome == "approved"
    e.change_policy(Policy(limits=Limits(daily_limit_cents=10_000, approval_threshold_cents=1000)))
    assert e.reserve(500).outcome == "approved", "the container that changed it"
    # The other container still holds version 1; the script refuses it and it reads Postgres (now version 2).
    other.policy, other.version = e.policy, e.version
    loads = other.policy_loads
    assert other.reserve(900).outcome == "approved"
    assert other.policy_loads == loads + 1


def test_weekly_and_monthly_windows_and_the_payment_count(store: Stores) -> None:
    policy = Policy(limits=Limits(weekly_limit_cents=700, monthly_limit_cents=900, max_payments_per_day=3))
    e = Engine(store, policy)
    assert e.reserve(400).outcome == "approved"
    assert e.reserve(400).outcome == "weekly_limit_exceeded"
    e.postgres = {}
    assert e.reserve(300).outcome == "approved"  # 700 in the week
    assert e.reserve(1).outcome == "weekly_limit_exceeded"
    counted = Engine(store, Policy(limits=Limits(daily_limit_cents=10**6, max_payments_per_day=2)))
    assert [counted.reserve(1).outcome for _ in range(3)] == ["approved", "approved", "payment_count_exceeded"]


def test_merchant_rules_and_caps(store: Stores) -> None:
    policy = Policy(
        limits=Limits(daily_limit_cents=10_000),
        merchants=MerchantRules(allow=("*.example.com",), block=("bad.example.com",), daily_caps=((MERCHANT, 500),)),
    )
    e = Engine(store, policy)
    assert e.reserve(100, merchant="Bad.Example.com").outcome == "merchant_blocked"
    assert e.reserve(100, merchant="openai.com").outcome == "merchant_not_allowed"
    assert e.reserve(400).outcome == "approved"
    assert e.reserve(101, merchant="API.example.com").outcome == "merchant_daily_limit_exceeded"
    assert e.reserve(101, merchant="shop.example.com").outcome == "approved"
    assert e.spent() == 501 and e.spent(Window.PAYMENTS_DAY) == 2


def test_the_organization_ceiling_counts_every_agent(store: Stores) -> None:
    first = Engine(store, ceiling=Ceiling(daily_limit_cents=500))
    second = Engine(store, ceiling=Ceiling(daily_limit_cents=500))
    second.organization = first.organization
    assert first.reserve(300).outcome == "approved"
    declined = second.reserve(201)
    assert declined.outcome == "organization_daily_limit_exceeded"
    assert declined.counters[Window.ORGANIZATION_DAY] == 300 and declined.counters[Window.DAY] == 0
    assert second.reserve(200).outcome == "approved"


def test_a_new_merchant_waits_for_people(store: Stores) -> None:
    e = Engine(store, Policy(limits=LIMITS, approval=ApprovalRules(new_merchant=True)))
    e.paid.add(MERCHANT)
    assert e.reserve(100).outcome == "approved"
    assert e.reserve(100, merchant="new.example.com").reason.value == "new_merchant_requires_approval"
