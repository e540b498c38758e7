"""THE policy of an agent and the ceiling of an organization: one value each, read from and written to the API's JSON
with every rule checked, and compared by everything that decides (the budget script, the evaluation, the simulation).

On the wire money is integer cents named `*_limit`; in the code the same values are named `*_cents`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from shared.errors import ValidationFailed

DEFAULT_MAX_REQUESTS_PER_MINUTE = 20
MAX_REQUESTS_PER_MINUTE = 10_000
# Every window's sum stays far below 2^53, so the budget script's doubles compare it exactly. A month holds at most
# 31 days of the largest daily limit; the monthly limit has the same cap, so no sum of held amounts nears 2^53.
MAX_LIMIT_CENTS = 100_000_000_000
MAX_DAILY_LIMIT_CENTS = MAX_LIMIT_CENTS
MAX_PAYMENTS_PER_DAY = 1_000_000
MAX_MERCHANT_PATTERNS = 500
MAX_MERCHANT_CAPS = 200

# A host name as people write it (letters, digits, hyphens, dots, an optional port is not a host), or "*." + one.
_HOST = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


@dataclass(frozen=True)
class Limits:
    """The amounts and counts an agent may not exceed; None is no such rule. Field names are budget_limits' columns."""

    per_tx_limit_cents: int | None = None
    daily_limit_cents: int | None = None
    weekly_limit_cents: int | None = None
    monthly_limit_cents: int | None = None
    approval_threshold_cents: int | None = None
    max_requests_per_minute: int | None = DEFAULT_MAX_REQUESTS_PER_MINUTE
    max_payments_per_day: int | None = None


# The wire names of the limits, in the order API.md lists them; and the chain they must keep where set.
LIMIT_WIRE_NAMES = {
    "per_tx_limit_cents": "per_transaction_limit",
    "daily_limit_cents": "daily_limit",
    "weekly_limit_cents": "weekly_limit",
    "monthly_limit_cents": "monthly_limit",
    "approval_threshold_cents": "approval_threshold",
    "max_requests_per_minute": "max_requests_per_minute",
    "max_payments_per_day": "max_payments_per_day",
}
LIMIT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Limits))
_ORDERED = ("approval_threshold_cents", "per_tx_limit_cents", "daily_limit_cents", "weekly_limit_cents",
            "monthly_limit_cents")  # fmt: skip
_SPENDING = ("per_tx_limit_cents", "daily_limit_cents", "weekly_limit_cents", "monthly_limit_cents")
_RANGES = {
    "max_requests_per_minute": (1, MAX_REQUESTS_PER_MINUTE),
    "max_payments_per_day": (1, MAX_PAYMENTS_PER_DAY),
}


@dataclass(frozen=True)
class MerchantRules:
    """Which merchants an agent may pay (an empty allow list allows all not blocked) and per-merchant daily caps."""

    allow: tuple[str, ...] = ()
    block: tuple[str, ...] = ()
    daily_caps: tuple[tuple[str, int], ...] = ()  # (merchant host, cents a day), hosts unique

    def cap_for(self, merchant: str) -> int | None:
        host = normalize_merchant(merchant)
        return next((cents for name, cents in self.daily_caps if name == host), None)


@dataclass(frozen=True)
class ApprovalRules:
    """When a payment that passes every limit still waits for people."""

    new_merchant: bool = False
    dual_approval_above_cents: int | None = None


@dataclass(frozen=True)
class Policy:
    """An agent's whole policy."""

    limits: Limits = field(default_factory=Limits)
    merchants: MerchantRules = field(default_factory=MerchantRules)
    approval: ApprovalRules = field(default_factory=ApprovalRules)

    def with_limits(self, **changes: int | None) -> Policy:
        return replace(self, limits=replace(self.limits, **changes))


@dataclass(frozen=True)
class Ceiling:
    """An organization's ceiling over all its agents together; None is no such ceiling."""

    daily_limit_cents: int | None = None
    monthly_limit_cents: int | None = None


# Merchants ----------------------------------------------------------------------------------------------------------
def normalize_merchant(merchant: str) -> str:
    """How a merchant is compared: trimmed, lower case, without a trailing dot."""
    return merchant.strip().lower().rstrip(".")


def matches(pattern: str, merchant: str) -> bool:
    """A host matches itself; "*.example.com" matches example.com and every name under it. Case is ignored."""
    host = normalize_merchant(merchant)
    if pattern.startswith("*."):
        base = pattern[2:]
        return host == base or host.endswith("." + base)
    return host == pattern


def matches_any(patterns: tuple[str, ...], merchant: str) -> bool:
    return any(matches(pattern, merchant) for pattern in patterns)


# The wire form ------------------------------------------------------------------------------------------------------
class _Problems:
    """Collects every problem of a document, each with the path of its field, so one 422 names them all."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.items: list[dict[str, str]] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(
            {"field": ".".join(part for part in (self.path, where) if part) or "body", "message": message}
        )

    def raise_any(self) -> None:
        if self.items:
            raise ValidationFailed(self.items)


def _object(value: Any, where: str, problems: _Problems, allowed: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(where, "must be an object")
        return {}
    for name in value:
        if name not in allowed:
            problems.add(f"{where}.{name}" if where else name, "is not a field of this object")
    return value


def _cents(value: Any, where: str, problems: _Problems, *, low: int = 0, high: int = MAX_LIMIT_CENTS) -> int | None:
    if value is None:
        return None
    # Strict, as payment amounts are: "1000", 1000.0 and true are refused, never read as a number of cents.
    if type(value) is not int:
        problems.add(where, "must be an integer number of cents or null")
        return None
    if not low <= value <= high:
        problems.add(where, f"must be between {low} and {high}")
        return None
    return value


def _patterns(value: Any, where: str, problems: _Problems, *, wildcard: bool) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_MERCHANT_PATTERNS:
        problems.add(where, f"must be a list of at most {MAX_MERCHANT_PATTERNS} merchant patterns")
        return ()
    found: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            problems.add(f"{where}[{index}]", "must be a host name")
            continue
        pattern = normalize_merchant(item)
        host = pattern[2:] if wildcard and pattern.startswith("*.") else pattern
        if not _HOST.match(host):
            what = 'a host name, or "*." and a host name' if wildcard else "one host name (no *)"
            problems.add(f"{where}[{index}]", f"{item!r} is not {what}")
            continue
        if pattern not in found:
            found.append(pattern)
    return tuple(found)


def limits_from_wire(value: Any, problems: _Problems, where: str = "limits") -> Limits:
    """Limits from their wire object; an absent field is no such rule (max_requests_per_minute: its default)."""
    body = _object(value, where, problems, tuple(LIMIT_WIRE_NAMES.values()))
    read: dict[str, int | None] = {}
    for column, name in LIMIT_WIRE_NAMES.items():
        if name not in body:
            continue
        if column in _RANGES:
            low, high = _RANGES[column]
            read[column] = _cents(body[name], f"{where}.{name}", problems, low=low, high=high)
        else:
            read[column] = _cents(body[name], f"{where}.{name}", problems)
    limits = Limits(**read)
    check_limits(limits, problems, where)
    return limits


def check_limits(limits: Limits, problems: _Problems, where: str = "limits") -> None:
    """0 <= approval_threshold <= per_transaction_limit <= daily <= weekly <= monthly where set; one spending limit."""

    def at(name: str) -> str:
        return f"{where}.{name}" if where else name

    if all(getattr(limits, column) is None for column in _SPENDING):
        problems.add(where, "set at least one of per_transaction_limit, daily_limit, weekly_limit, monthly_limit")
    chain = [(column, getattr(limits, column)) for column in _ORDERED if getattr(limits, column) is not None]
    for (lower, low_value), (upper, high_value) in zip(chain, chain[1:], strict=False):
        if low_value <= high_value:
            continue
        # The threshold is the one to fix when it passes a limit; among windows, the longer one is too short.
        if lower == "approval_threshold_cents":
            problems.add(at("approval_threshold"), f"must not exceed {LIMIT_WIRE_NAMES[upper]}")
        else:
            problems.add(at(LIMIT_WIRE_NAMES[upper]), f"must be at least {LIMIT_WIRE_NAMES[lower]}")


def check_basic_limits(limits: Limits) -> None:
    """The rules of the first API's limits (POST agents, PUT .../limits), with its messages and plain field names;
    then the whole chain, for a policy whose weekly or monthly limit the new values would cross."""
    errors = []
    threshold, per_tx, daily = limits.approval_threshold_cents, limits.per_tx_limit_cents, limits.daily_limit_cents
    if threshold is not None and threshold < 0:
        errors.append({"field": "approval_threshold", "message": "must be 0 or more"})
    if threshold is not None and per_tx is not None and threshold > per_tx:
        errors.append({"field": "approval_threshold", "message": "must not exceed per_transaction_limit"})
    if per_tx is not None and daily is not None and per_tx > daily:
        errors.append({"field": "per_transaction_limit", "message": "must not exceed daily_limit"})
    if daily is not None and daily > MAX_DAILY_LIMIT_CENTS:
        errors.append({"field": "daily_limit", "message": f"must be at most {MAX_DAILY_LIMIT_CENTS}"})
    rpm = limits.max_requests_per_minute
    if rpm is not None and not 1 <= rpm <= MAX_REQUESTS_PER_MINUTE:
        errors.append(
            {"field": "max_requests_per_minute", "message": f"must be between 1 and {MAX_REQUESTS_PER_MINUTE}"}
        )
    if errors:
        raise ValidationFailed(errors)
    problems = _Problems("")
    check_limits(limits, problems, "")
    problems.raise_any()


def policy_from_wire(value: Any, path: str = "policy") -> Policy:
    """The policy of a PUT, every field checked: a 422 names each problem by its path (policy.limits.weekly_limit)."""
    problems = _Problems(path)
    body = _object(value, "", problems, ("limits", "merchants", "approval"))
    if "limits" not in body:
        problems.add("limits", "is required")
    limits = limits_from_wire(body.get("limits"), problems)
    merchants = _object(body.get("merchants"), "merchants", problems, ("allow", "block", "limits"))
    allow = _patterns(merchants.get("allow"), "merchants.allow", problems, wildcard=True)
    block = _patterns(merchants.get("block"), "merchants.block", problems, wildcard=True)
    caps: list[tuple[str, int]] = []
    raw_caps = merchants.get("limits")
    if raw_caps is not None and (not isinstance(raw_caps, list) or len(raw_caps) > MAX_MERCHANT_CAPS):
        problems.add("merchants.limits", f"must be a list of at most {MAX_MERCHANT_CAPS} merchant caps")
        raw_caps = []
    for index, item in enumerate(raw_caps or []):
        where = f"merchants.limits[{index}]"
        cap = _object(item, where, problems, ("merchant", "daily_limit"))
        if not isinstance(item, dict):
            continue
        names = _patterns([cap.get("merchant")], f"{where}.merchant", problems, wildcard=False)
        cents = _cents(cap.get("daily_limit"), f"{where}.daily_limit", problems)
        if cents is None and "daily_limit" in cap and cap["daily_limit"] is None:
            problems.add(f"{where}.daily_limit", "must be an integer number of cents")
        if names and cents is not None:
            if any(name == names[0] for name, _ in caps):
                problems.add(f"{where}.merchant", f"{names[0]} has a cap already")
            else:
                caps.append((names[0], cents))
    approval = _object(body.get("approval"), "approval", problems, ("new_merchant", "dual_approval_above"))
    new_merchant = approval.get("new_merchant", False)
    if not isinstance(new_merchant, bool):
        problems.add("approval.new_merchant", "must be true or false")
        new_merchant = False
    dual = _cents(approval.get("dual_approval_above"), "approval.dual_approval_above", problems)
    problems.raise_any()
    return Policy(
        limits=limits,
        merchants=MerchantRules(allow=allow, block=block, daily_caps=tuple(caps)),
        approval=ApprovalRules(new_merchant=new_merchant, dual_approval_above_cents=dual),
    )


def ceiling_from_wire(value: Any, path: str = "policy") -> Ceiling:
    problems = _Problems(path)
    body = _object(value, "", problems, ("limits",))
    limits = _object(body.get("limits"), "limits", problems, ("daily_limit", "monthly_limit"))
    daily = _cents(limits.get("daily_limit"), "limits.daily_limit", problems)
    monthly = _cents(limits.get("monthly_limit"), "limits.monthly_limit", problems)
    if daily is not None and monthly is not None and daily > monthly:
        problems.add("limits.daily_limit", "must not exceed monthly_limit")
    problems.raise_any()
    return Ceiling(daily_limit_cents=daily, monthly_limit_cents=monthly)


def limits_wire(limits: Limits) -> dict[str, int | None]:
    return {name: getattr(limits, column) for column, name in LIMIT_WIRE_NAMES.items()}


def policy_wire(policy: Policy) -> dict[str, Any]:
    """The policy object of API.md."""
    return {
        "limits": limits_wire(policy.limits),
        "merchants": {
            "allow": list(policy.merchants.allow),
            "block": list(policy.merchants.block),
            "limits": [{"merchant": name, "daily_limit": cents} for name, cents in policy.merchants.daily_caps],
        },
        "approval": {
            "new_merchant": policy.approval.new_merchant,
            "dual_approval_above": policy.approval.dual_approval_above_cents,
        },
    }


def ceiling_wire(ceiling: Ceiling) -> dict[str, Any]:
    return {"limits": {"daily_limit": ceiling.daily_limit_cents, "monthly_limit": ceiling.monthly_limit_cents}}
