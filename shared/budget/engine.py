"""The budget engine: every window of an agent's policy and of its organization's ceiling in Redis, decided and held
in one atomic Lua call, and rebuilt from Postgres when Redis lost them."""

from __future__ import annotations

import functools
import hashlib
import threading
import uuid
import zoneinfo
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from shared.errors import BudgetUnavailable
from shared.platform import db
from shared.platform.aio import run_blocking
from shared.platform.redis_store import AsyncRedisStore, LuaScript, RedisStore, get_async_store, get_store
from shared.policy import store as policy_store
from shared.policy.evaluate import Check, Window, approval, precheck, windows
from shared.policy.model import normalize_merchant
from shared.policy.outcomes import DecisionReason, Status
from shared.policy.store import Effective

_HERE = Path(__file__).parent
RESERVE_SCRIPT = LuaScript.from_file(_HERE / "reserve_budget.lua")
RELEASE_SCRIPT = LuaScript.from_file(_HERE / "release_hold.lua")

KEYS_KEPT_DAYS = 2  # a window's keys expire two days after the window ends
DAY_KEYS_KEPT_DAYS = KEYS_KEPT_DAYS
HELD_STATUSES = ("pending", "approved", "completed")
WINDOWS = tuple(Window)  # the order of the script's window keys, fixed whatever the policy
CREDENTIAL_TTL_SECONDS = 24 * 3600  # far longer than any container's cached copy of an agent (10 s)
_MAX_CACHED_POLICIES = 10_000


# Keys ---------------------------------------------------------------------------------------------------------
# Every key of an organization carries its id as the hash tag, so one script's keys (the agent's windows and the
# organization's) live on one shard.
def _organization_prefix(organization_id: uuid.UUID | str) -> str:
    return f"ap:{{{organization_id}}}"


def _agent_prefix(organization_id: uuid.UUID | str, agent_id: uuid.UUID | str) -> str:
    return f"{_organization_prefix(organization_id)}:a:{agent_id}"


def policy_version_key(organization_id: uuid.UUID | str, agent_id: uuid.UUID | str) -> str:
    return f"{_agent_prefix(organization_id, agent_id)}:pv"


def ceiling_version_key(organization_id: uuid.UUID | str) -> str:
    return f"{_organization_prefix(organization_id)}:o:pv"


def holds_key(organization_id: uuid.UUID | str, agent_id: uuid.UUID | str, day: date) -> str:
    return f"{_agent_prefix(organization_id, agent_id)}:d:{day.isoformat()}:holds"


def claim_key(organization_id: uuid.UUID | str, agent_id: uuid.UUID | str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"{_agent_prefix(organization_id, agent_id)}:idem:{digest}"


def rate_key(organization_id: uuid.UUID | str, agent_id: uuid.UUID | str) -> str:
    return f"{_agent_prefix(organization_id, agent_id)}:rate"


def blocked_key(organization_id: uuid.UUID | str, agent_id: uuid.UUID | str) -> str:
    return f"{_agent_prefix(organization_id, agent_id)}:blocked"


def credential_key(organization_id: uuid.UUID | str, agent_id: uuid.UUID | str) -> str:
    return f"{_agent_prefix(organization_id, agent_id)}:credential"


def window_key(
    window: Window, organization_id: uuid.UUID | str, agent_id: uuid.UUID | str, day: date, merchant: str
) -> str:
    """The counter of `window` that a payment on `day` to `merchant` is counted in."""
    agent = _agent_prefix(organization_id, agent_id)
    organization = _organization_prefix(organization_id)
    year, week, _ = day.isocalendar()
    keys = {
        Window.MERCHANT_DAY: f"{agent}:d:{day.isoformat()}:m:{_merchant_digest(merchant)}",
        Window.DAY: f"{agent}:d:{day.isoformat()}:spent",
        Window.WEEK: f"{agent}:w:{year}-W{week:02d}",
        Window.MONTH: f"{agent}:m:{day:%Y-%m}",
        Window.ORGANIZATION_DAY: f"{organization}:o:d:{day.isoformat()}",
        Window.ORGANIZATION_MONTH: f"{organization}:o:m:{day:%Y-%m}",
        Window.PAYMENTS_DAY: f"{agent}:d:{day.isoformat()}:n",
    }
    return keys[window]


def _merchant_digest(merchant: str) -> str:
    # Any text is a merchant; its key part is a digest of the compared form, so every key stays short and plain.
    return hashlib.sha256(normalize_merchant(merchant).encode()).hexdigest()[:24]


# Days and windows ---------------------------------------------------------------------------------------------
def budget_day(timezone: str, at: datetime) -> date:
    """The organization's calendar day at a moment (daylight-saving changes included)."""
    return at.astimezone(zoneinfo.ZoneInfo(timezone)).date()


def period(window: Window, day: date) -> tuple[date, date]:
    """The first and last calendar day of the window holding `day`: the ISO week runs Monday to Sunday."""
    if window is Window.WEEK:
        monday = day - timedelta(days=day.weekday())
        return monday, monday + timedelta(days=6)
    if window in (Window.MONTH, Window.ORGANIZATION_MONTH):
        first = day.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return first, following - timedelta(days=1)
    return day, day


@functools.lru_cache(maxsize=4096)
def expires_at(window: Window, timezone: str, day: date) -> int:
    """Unix seconds at which a window's keys expire: two days after the window's last local midnight. Cached: every
    request asks it for each of its windows, and the answer changes only with the day."""
    last = period(window, day)[1]
    end = datetime.combine(last + timedelta(days=1 + KEYS_KEPT_DAYS), time(0), tzinfo=zoneinfo.ZoneInfo(timezone))
    return int(end.timestamp())


def day_keys_expire_at(timezone: str, day: date) -> int:
    return expires_at(Window.DAY, timezone, day)


# What the engine reads from Postgres --------------------------------------------------------------------------
@dataclass(frozen=True)
class WindowQuery:
    """Which windows of one payment to sum from the system of record."""

    organization_id: uuid.UUID
    agent_id: uuid.UUID
    day: date
    merchant: str
    windows: tuple[Window, ...]


@dataclass(frozen=True)
class WindowTotals:
    """The held and spent sums of the windows asked for, and the day's holds not yet settled (when the day was asked
    for): idempotency key -> (cents, merchant)."""

    sums: dict[Window, int]
    holds: dict[str, tuple[int, str]] = field(default_factory=dict)


# Decisions ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """The engine's verdict on one request. `counters` is what each window held before it; `newly_held` is true when
    this call recorded the hold."""

    status: Status
    reason: DecisionReason
    newly_held: bool
    counters: dict[Window, int]
    exceeded: Check | None
    effective: Effective
    new_merchant: bool

    @property
    def outcome(self) -> str:
        """approved, pending, or the reason of a decline."""
        return self.reason.value if self.status is Status.DECLINED else self.status.value

    @property
    def holds_budget(self) -> bool:
        return self.status in (Status.APPROVED, Status.PENDING)

    @property
    def spent_before_cents(self) -> int:
        return self.counters.get(Window.DAY, 0)


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
    organization_id: uuid.UUID
    agent_id: uuid.UUID
    timezone: str
    day: date
    merchant: str
    amount_cents: int
    idempotency_key: str
    transaction_id: uuid.UUID
    request_hash: str
    request_id: str
    now_ms: int
    key_hash: str = ""  # the request's key; "" matches any published credential (tests and benchmarks)


class BudgetEngine:
    """Runs the budget scripts with the agent's policy, reading the policy and rebuilding windows from Postgres when
    Redis asks for them.

    Each container keeps the policies it decided with; the script tells it when one is older than another container
    has seen (or than Postgres, every 10 s), and it reads the policy again. `reserve`, on every payment request's
    path, awaits `async_store`; the rest runs from workers and the sweep through the blocking `store`.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        async_store: Callable[[], Awaitable[AsyncRedisStore]],
        load_policy: Callable[[uuid.UUID], Effective],
        load_windows: Callable[[WindowQuery], WindowTotals],
        has_paid_merchant: Callable[[uuid.UUID, str], bool],
    ) -> None:
        self.store = store
        self.async_store = async_store
        self.load_policy = load_policy
        self.load_windows = load_windows
        self.has_paid_merchant = has_paid_merchant
        self._policies: dict[uuid.UUID, Effective] = {}
        self._lock = threading.Lock()

    # The decision ---------------------------------------------------------------------------------------------
    async def reserve(self, request: ReserveRequest) -> Decision | Replay | Blocked | Tripped | Revoked:
        store = await self.async_store()
        effective = self._policies.get(request.agent_id)
        confirmed = effective is None
        if effective is None:
            effective = await self._read_policy(request.agent_id)
        keys = [
            policy_version_key(request.organization_id, request.agent_id),
            ceiling_version_key(request.organization_id),
            holds_key(request.organization_id, request.agent_id, request.day),
            claim_key(request.organization_id, request.agent_id, request.idempotency_key),
            rate_key(request.organization_id, request.agent_id),
            blocked_key(request.organization_id, request.agent_id),
            credential_key(request.organization_id, request.agent_id),
            *(window_key(w, request.organization_id, request.agent_id, request.day, request.merchant) for w in WINDOWS),
        ]
        merchant = normalize_merchant(request.merchant)
        rebuilt: dict[Window, int] = {}
        holds: list[str | int] = []
        new_merchant: bool | None = None
        # At most a few runs: the policy may be stale, then windows may be missing. Postgres is read in a worker
        # thread: it happens once per agent every few seconds, or when Redis lost its data, not on every request.
        for _ in range(5):
            policy = effective.policy
            refused = precheck(policy, merchant=merchant, amount_cents=request.amount_cents)
            checks = windows(policy, effective.ceiling, merchant=merchant, amount_cents=request.amount_cents)
            rule_on = policy.approval.new_merchant or (
                effective.shadow is not None and effective.shadow.approval.new_merchant
            )
            if new_merchant is None and rule_on:
                new_merchant = not await run_blocking(self.has_paid_merchant, request.agent_id, merchant)
            status, reason = approval(policy, amount_cents=request.amount_cents, new_merchant=bool(new_merchant))
            limits = policy.limits
            args: list[str | int] = [
                request.idempotency_key,
                str(request.transaction_id),
                request.request_hash,
                request.amount_cents,
                request.now_ms,
                request.request_id,
                expires_at(Window.DAY, request.timezone, request.day),
                effective.version,
                effective.ceiling_version,
                request.key_hash,
                "1" if confirmed else "",
                "" if limits.max_requests_per_minute is None else limits.max_requests_per_minute,
                refused.value if refused is not None else "",
                status.value,
                merchant,
                len(checks),
            ]
            for check in checks:
                args += [
                    "" if check.limit is None else check.limit,
                    check.increment,
                    expires_at(check.window, request.timezone, request.day),
                    rebuilt.get(check.window, ""),
                ]
            args.append(WINDOWS.index(Window.DAY) + 1)
            args += holds
            reply = await store.run_script(RESERVE_SCRIPT, keys, args)
            kind = reply[0]
            if kind in ("need_policy", "stale_policy"):
                effective = await self._read_policy(request.agent_id)
                confirmed = True
                continue
            if kind == "need_counters":
                missing = tuple(checks[int(index) - 1].window for index in reply[1:])
                totals = await run_blocking(
                    self.load_windows,
                    WindowQuery(request.organization_id, request.agent_id, request.day, merchant, missing),
                )
                rebuilt.update(totals.sums)
                if Window.DAY in missing:
                    holds = []
                    for field_name, (cents, paid_to) in totals.holds.items():
                        holds += [field_name, f"{cents}:{request.now_ms}:{paid_to}"]
                continue
            return _parse_reply(reply, checks, refused, reason, effective, bool(new_merchant))
        raise RuntimeError("budget script kept asking for data it was given")

    async def _read_policy(self, agent_id: uuid.UUID) -> Effective:
        effective = await run_blocking(self.load_policy, agent_id)
        with self._lock:
            if len(self._policies) >= _MAX_CACHED_POLICIES:
                self._policies.clear()
            self._policies[agent_id] = effective
        return effective

    # Holds after the decision ---------------------------------------------------------------------------------
    def _hold_keys(
        self, organization_id: uuid.UUID, agent_id: uuid.UUID, day: date, merchant: str, idempotency_key: str
    ) -> list[str]:
        return [
            holds_key(organization_id, agent_id, day),
            claim_key(organization_id, agent_id, idempotency_key),
            *(window_key(w, organization_id, agent_id, day, merchant) for w in WINDOWS),
        ]

    def release(
        self,
        *,
        organization_id: uuid.UUID,
        agent_id: uuid.UUID,
        day: date,
        merchant: str,
        idempotency_key: str,
        undo_claim_of: str = "",
        free_hold: bool = True,
    ) -> int:
        """Give a hold back to every window it was counted in, once. Returns the cents freed (0 if already freed).

        `undo_claim_of` also drops the idempotency claim that transaction took; `free_hold=False` drops only that
        (a request that found its hold already counted by an earlier run of itself)."""
        given = ["1" if w is Window.PAYMENTS_DAY else "cents" for w in WINDOWS]
        return int(
            self.store.run_script(
                RELEASE_SCRIPT,
                self._hold_keys(organization_id, agent_id, day, merchant, idempotency_key),
                [idempotency_key if free_hold else "", "release", undo_claim_of, *given],
            )
        )

    def settle(
        self, *, organization_id: uuid.UUID, agent_id: uuid.UUID, day: date, merchant: str, idempotency_key: str
    ) -> None:
        """The charge went through: the hold stays spent in its windows and is no longer releasable."""
        self.store.run_script(
            RELEASE_SCRIPT,
            self._hold_keys(organization_id, agent_id, day, merchant, idempotency_key),
            [idempotency_key, "settle", "", *(["0"] * len(WINDOWS))],
        )

    # What admins see and change -------------------------------------------------------------------------------
    def spent(self, organization_id: uuid.UUID, agent_id: uuid.UUID, day: date, window: Window = Window.DAY) -> int:
        """Cents held or spent in a window (payments, for the count), from the counter the engine decides with."""
        value = self.store.get(window_key(window, organization_id, agent_id, day, ""))
        if value is None:
            query = WindowQuery(organization_id, agent_id, day, "", (window,))
            return self.load_windows(query).sums[window]
        return int(value)

    def forget_policy(self, organization_id: uuid.UUID, agent_id: uuid.UUID) -> None:
        """An admin changed the policy: every container reads it from Postgres before its next decision."""
        self._policies.pop(agent_id, None)
        self.store.delete(policy_version_key(organization_id, agent_id))

    def forget_ceiling(self, organization_id: uuid.UUID) -> None:
        """An owner changed the organization's ceiling: likewise, for all its agents."""
        with self._lock:
            for agent_id in [a for a, e in self._policies.items() if e.organization_id == organization_id]:
                self._policies.pop(agent_id, None)
        self.store.delete(ceiling_version_key(organization_id))

    def publish_credential(
        self, organization_id: uuid.UUID, agent_id: uuid.UUID, *, key_hash: str, active: bool
    ) -> None:
        """Make every container refuse a rotated key or a disabled agent from its very next payment request."""
        self.store.set(
            credential_key(organization_id, agent_id),
            f"{key_hash}|{1 if active else 0}",
            ex=CREDENTIAL_TTL_SECONDS,
        )

    def unblock(self, organization_id: uuid.UUID, agent_id: uuid.UUID) -> None:
        self.store.delete(blocked_key(organization_id, agent_id), rate_key(organization_id, agent_id))


def _parse_reply(
    reply: list[Any],
    checks: list[Check],
    refused: DecisionReason | None,
    reason: DecisionReason,
    effective: Effective,
    new_merchant: bool,
) -> Decision | Replay | Blocked | Tripped | Revoked:
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
    counters = {check.window: int(value) for check, value in zip(checks, reply[3:], strict=True)}
    exceeded = checks[int(reply[2]) - 1] if int(reply[2]) else None
    status = Status(str(kind))
    if status is Status.DECLINED:
        reason = refused if refused is not None else exceeded.reason if exceeded is not None else reason
    return Decision(
        status=status,
        reason=reason,
        newly_held=int(reply[1]) == 1,
        counters=counters,
        exceeded=exceeded,
        effective=effective,
        new_merchant=new_merchant,
    )


# Postgres reads the engine needs ------------------------------------------------------------------------------
def load_policy(agent_id: uuid.UUID) -> Effective:
    with db.connection() as conn:
        effective = policy_store.load(conn, agent_id)
    if effective is None:
        raise BudgetUnavailable("This agent has no policy.")
    return effective


_MERCHANT_SQL = "rtrim(lower(btrim(merchant)), '.')"  # normalize_merchant, as the index computes it


def load_windows(query: WindowQuery) -> WindowTotals:
    """The windows' held and spent sums from the system of record, and the day's holds that can still be freed."""
    filters: dict[Window, str] = {
        Window.MERCHANT_DAY: f"agent_id = %(agent)s AND budget_day = %(day)s AND {_MERCHANT_SQL} = %(merchant)s",
        Window.DAY: "agent_id = %(agent)s AND budget_day = %(day)s",
        Window.WEEK: "agent_id = %(agent)s AND budget_day BETWEEN %(week_first)s AND %(week_last)s",
        Window.MONTH: "agent_id = %(agent)s AND budget_day BETWEEN %(month_first)s AND %(month_last)s",
        Window.ORGANIZATION_DAY: "budget_day = %(day)s",
        Window.ORGANIZATION_MONTH: "budget_day BETWEEN %(month_first)s AND %(month_last)s",
        Window.PAYMENTS_DAY: "agent_id = %(agent)s AND budget_day = %(day)s",
    }
    week, month = period(Window.WEEK, query.day), period(Window.MONTH, query.day)
    spans = [period(w, query.day) for w in query.windows]
    params: dict[str, Any] = {
        "organization": query.organization_id,
        "agent": query.agent_id,
        "day": query.day,
        "merchant": normalize_merchant(query.merchant),
        "week_first": week[0],
        "week_last": week[1],
        "month_first": month[0],
        "month_last": month[1],
        "first": min(first for first, _ in spans),
        "last": max(last for _, last in spans),
        "held": list(HELD_STATUSES),
    }
    columns = ", ".join(
        f"count(*) FILTER (WHERE {filters[w]}) AS {w.value}"
        if w is Window.PAYMENTS_DAY
        else f"COALESCE(sum(amount_cents) FILTER (WHERE {filters[w]}), 0) AS {w.value}"
        for w in query.windows
    )
    with db.connection() as conn:
        row = conn.execute(
            f"SELECT {columns} FROM transactions WHERE organization_id = %(organization)s"
            " AND budget_day BETWEEN %(first)s AND %(last)s AND status = ANY(%(held)s)",
            params,
        ).fetchone()
        holds: dict[str, tuple[int, str]] = {}
        if Window.DAY in query.windows:
            rows = conn.execute(
                f"SELECT idempotency_key, amount_cents, {_MERCHANT_SQL} AS merchant FROM transactions"
                " WHERE agent_id = %s AND budget_day = %s AND status IN ('pending', 'approved')",
                (query.agent_id, query.day),
            ).fetchall()
            holds = {r["idempotency_key"]: (int(r["amount_cents"]), r["merchant"]) for r in rows}
    assert row is not None
    return WindowTotals(sums={w: int(row[w.value] or 0) for w in query.windows}, holds=holds)


def has_paid_merchant(agent_id: uuid.UUID, merchant: str) -> bool:
    """Whether the agent has an approved or completed payment to the merchant (the new-merchant approval rule)."""
    with db.connection() as conn:
        row = conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM transactions WHERE agent_id = %s AND {_MERCHANT_SQL} = %s"
            " AND status IN ('approved', 'completed')) AS paid",
            (agent_id, normalize_merchant(merchant)),
        ).fetchone()
    return bool(row and row["paid"])


@functools.cache
def get_engine() -> BudgetEngine:
    """The container's budget engine over its one Redis store."""
    return BudgetEngine(
        get_store(),
        async_store=get_async_store,
        load_policy=load_policy,
        load_windows=load_windows,
        has_paid_merchant=has_paid_merchant,
    )
