"""The budget engine: per-agent daily budgets in Redis, decided atomically by Lua, rebuilt from Postgres."""

from __future__ import annotations

import functools
import hashlib
import uuid
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from shared.errors import BudgetUnavailable
from shared.platform import db
from shared.platform.aio import run_blocking
from shared.platform.redis_store import AsyncRedisStore, LuaScript, RedisStore, get_async_store, get_store
from shared.policy import limits as policy_limits
from shared.policy.limits import Limits

_HERE = Path(__file__).parent
RESERVE_SCRIPT = LuaScript.from_file(_HERE / "reserve_budget.lua")
RELEASE_SCRIPT = LuaScript.from_file(_HERE / "release_hold.lua")

DAY_KEYS_KEPT_DAYS = 2  # a day's keys expire two days after the day ends
APPROVED = "approved"
PENDING = "pending"
HELD_STATUSES = ("pending", "approved", "completed")


# Keys ---------------------------------------------------------------------------------------------------------
# Every key of an agent carries the agent id as a hash tag, so one script's keys live on one shard.
def _agent_prefix(agent_id: uuid.UUID | str) -> str:
    return f"ap:{{{agent_id}}}"


def limits_key(agent_id: uuid.UUID | str) -> str:
    return f"{_agent_prefix(agent_id)}:limits"


def spent_key(agent_id: uuid.UUID | str, day: date) -> str:
    return f"{_agent_prefix(agent_id)}:d:{day.isoformat()}:spent"


def holds_key(agent_id: uuid.UUID | str, day: date) -> str:
    return f"{_agent_prefix(agent_id)}:d:{day.isoformat()}:holds"


def claim_key(agent_id: uuid.UUID | str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"{_agent_prefix(agent_id)}:idem:{digest}"


def rate_key(agent_id: uuid.UUID | str) -> str:
    return f"{_agent_prefix(agent_id)}:rate"


def blocked_key(agent_id: uuid.UUID | str) -> str:
    return f"{_agent_prefix(agent_id)}:blocked"


def credential_key(agent_id: uuid.UUID | str) -> str:
    return f"{_agent_prefix(agent_id)}:credential"


CREDENTIAL_TTL_SECONDS = 24 * 3600  # far longer than any container's cached copy of an agent (10 s)


# Days ---------------------------------------------------------------------------------------------------------
def budget_day(timezone: str, at: datetime) -> date:
    """The organization's calendar day at a moment (daylight-saving changes included)."""
    return at.astimezone(zoneinfo.ZoneInfo(timezone)).date()


def day_keys_expire_at(timezone: str, day: date) -> int:
    """Unix seconds at which a day's keys expire: two days after the day's local midnight end."""
    zone = zoneinfo.ZoneInfo(timezone)
    end = datetime.combine(day + timedelta(days=1 + DAY_KEYS_KEPT_DAYS), time(0), tzinfo=zone)
    return int(end.timestamp())


# Decisions ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DayTotals:
    """What Postgres says an agent's day holds: the total and the holds not yet settled (by idempotency key)."""

    spent_cents: int
    holds: dict[str, int]


@dataclass(frozen=True)
class Decision:
    """The engine's verdict on one request. `newly_held` is true when this call recorded the hold."""

    outcome: str  # approved, pending, per_transaction_limit_exceeded, daily_limit_exceeded
    spent_before_cents: int
    limits: Limits
    newly_held: bool

    @property
    def holds_budget(self) -> bool:
        return self.outcome in (APPROVED, PENDING)


@dataclass(frozen=True)
class Replay:
    """Another request already owns this idempotency key (maybe still being decided)."""

    transaction_id: uuid.UUID
    request_hash: str


@dataclass(frozen=True)
class Blocked:
    """The circuit breaker holds the agent."""


@dataclass(frozen=True)
class Revoked:
    """The key was rotated away or the agent disabled since this container cached it."""

    disabled: bool


@dataclass(frozen=True)
class Tripped:
    """This request tripped the circuit breaker: the agent is blocked from now on."""

    count: int
    max_requests_per_minute: int


@dataclass(frozen=True)
class ReserveRequest:
    agent_id: uuid.UUID
    idempotency_key: str
    transaction_id: uuid.UUID
    request_hash: str
    amount_cents: int
    day: date
    expire_at: int
    request_id: str
    now_ms: int
    key_hash: str = ""  # the request's key; "" matches any published credential (tests and benchmarks)


class BudgetEngine:
    """Runs the budget scripts, fetching limits and rebuilding a day's counter from Postgres when Redis lacks them.

    `reserve`, on every payment request's path, awaits `async_store` (the running loop's store); the rest is
    called from workers and the sweep through the blocking `store`.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        async_store: Callable[[], Awaitable[AsyncRedisStore]],
        load_limits: Callable[[uuid.UUID], Limits],
        load_day: Callable[[uuid.UUID, date], DayTotals],
    ) -> None:
        self.store = store
        self.async_store = async_store
        self.load_limits = load_limits
        self.load_day = load_day

    async def reserve(self, request: ReserveRequest) -> Decision | Replay | Blocked | Tripped | Revoked:
        store = await self.async_store()
        keys = [
            limits_key(request.agent_id),
            spent_key(request.agent_id, request.day),
            holds_key(request.agent_id, request.day),
            claim_key(request.agent_id, request.idempotency_key),
            rate_key(request.agent_id),
            blocked_key(request.agent_id),
            credential_key(request.agent_id),
        ]
        limits_arg = ""
        rebuilt: list[str | int] = [""]
        # At most three runs: the cached limits may be missing, then the day's counter may be missing. Postgres is
        # read in a worker thread: it happens once per agent every few seconds, not on every request.
        for _ in range(3):
            args: list[str | int] = [
                request.idempotency_key,
                str(request.transaction_id),
                request.request_hash,
                request.amount_cents,
                request.now_ms,
                request.request_id,
                request.expire_at,
                limits_arg,
                rebuilt[0],
                request.key_hash,
                *rebuilt[1:],
            ]
            reply = await store.run_script(RESERVE_SCRIPT, keys, args)
            kind = reply[0]
            if kind == "need_limits":
                limits = await run_blocking(self.load_limits, request.agent_id)
                limits_arg = limits.script_arg()
                continue
            if kind == "need_counter":
                totals = await run_blocking(self.load_day, request.agent_id, request.day)
                rebuilt = [totals.spent_cents]
                for field, cents in totals.holds.items():
                    rebuilt += [field, cents]
                continue
            return _parse_reply(reply)
        raise RuntimeError("budget script kept asking for data it was given")

    def release(self, *, agent_id: uuid.UUID, day: date, idempotency_key: str, undo_claim_of: str = "") -> int:
        """Give a hold's cents back to the day, once. Returns the cents freed (0 if already freed)."""
        return int(
            self.store.run_script(
                RELEASE_SCRIPT,
                [spent_key(agent_id, day), holds_key(agent_id, day), claim_key(agent_id, idempotency_key)],
                [idempotency_key, "release", undo_claim_of],
            )
        )

    def settle(self, *, agent_id: uuid.UUID, day: date, idempotency_key: str) -> None:
        """The charge went through: the hold's cents stay spent and the hold is no longer releasable."""
        self.store.run_script(
            RELEASE_SCRIPT,
            [spent_key(agent_id, day), holds_key(agent_id, day), claim_key(agent_id, idempotency_key)],
            [idempotency_key, "settle", ""],
        )

    def spent(self, agent_id: uuid.UUID, day: date) -> int:
        """Cents held or spent on the day, read from the same counter the engine decides with."""
        value = self.store.get(spent_key(agent_id, day))
        if value is None:
            return self.load_day(agent_id, day).spent_cents
        return int(value)

    def forget_limits(self, agent_id: uuid.UUID) -> None:
        """An admin changed the limits: the next request reads them from Postgres."""
        self.store.delete(limits_key(agent_id))

    def publish_credential(self, agent_id: uuid.UUID, *, key_hash: str, active: bool) -> None:
        """Make every container refuse a rotated key or a disabled agent from its very next payment request."""
        self.store.set(credential_key(agent_id), f"{key_hash}|{1 if active else 0}", ex=CREDENTIAL_TTL_SECONDS)

    def unblock(self, agent_id: uuid.UUID) -> None:
        self.store.delete(blocked_key(agent_id), rate_key(agent_id))


def _parse_reply(reply: list[Any]) -> Decision | Replay | Blocked | Tripped | Revoked:
    kind = reply[0]
    if kind in ("revoked", "disabled"):
        return Revoked(disabled=kind == "disabled")
    if kind == "blocked":
        return Blocked()
    if kind == "rate_limited":
        return Tripped(count=int(reply[1]), max_requests_per_minute=int(reply[2]))
    if kind == "replay":
        transaction_id, _, request_hash = str(reply[1]).partition("|")
        return Replay(transaction_id=uuid.UUID(transaction_id), request_hash=request_hash)
    return Decision(
        outcome=str(kind),
        spent_before_cents=int(reply[1]),
        newly_held=int(reply[2]) == 1,
        limits=Limits.from_script(reply[3:]),
    )


# Postgres reads the engine needs ------------------------------------------------------------------------------
def load_limits(agent_id: uuid.UUID) -> Limits:
    with db.connection() as conn:
        limits = policy_limits.load(conn, agent_id)
    if limits is None:
        raise BudgetUnavailable("This agent has no budget limits.")
    return limits


def load_day(agent_id: uuid.UUID, day: date) -> DayTotals:
    """The day's held and spent cents from the system of record, and the holds that can still be freed."""
    with db.connection() as conn:
        rows = conn.execute(
            """
            SELECT idempotency_key, amount_cents, status FROM transactions
            WHERE agent_id = %s AND budget_day = %s AND status IN ('pending', 'approved', 'completed')
            """,
            (agent_id, day),
        ).fetchall()
    return DayTotals(
        spent_cents=sum(int(r["amount_cents"]) for r in rows),
        holds={r["idempotency_key"]: int(r["amount_cents"]) for r in rows if r["status"] != "completed"},
    )


@functools.cache
def get_engine() -> BudgetEngine:
    """The container's budget engine over its one Redis store."""
    return BudgetEngine(get_store(), async_store=get_async_store, load_limits=load_limits, load_day=load_day)
