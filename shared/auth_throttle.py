"""Failed authentications, counted per client address and per key prefix in Redis; past a limit, 429 instead of 401.

Only failures are counted and only failures are refused: a request that authenticates never touches the counters,
so a valid key is never slowed down, whoever else fails from its address. The counts live in Redis, so they hold
across Lambda containers and server processes."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from shared.config import Settings
from shared.errors import AgentPayError, AuthenticationFailed, AuthenticationThrottled
from shared.redis_store import LuaScript, get_store

WINDOW_SECONDS = 60
KEY_PREFIX = "authfail:"  # authfail:addr:<client address>, authfail:key:<key prefix>
COUNT_SCRIPT = LuaScript.from_file(Path(__file__).resolve().parent / "count_failures.lua")
# The public part of a well-formed key (the dashboard shows it): the kind, the mode and 8 hex characters.
_KEY_PREFIX_SHAPE = re.compile(r"(ap[ka]_(?:test|live)_[0-9a-f]{8})[0-9a-f]{56}")

log = logging.getLogger("agentpay.auth")


@dataclass(frozen=True)
class Limits:
    """How many failures a window allows per client address and per key prefix."""

    per_address: int
    per_key: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(per_address=settings.auth_failures_per_address, per_key=settings.auth_failures_per_key)


def key_prefix_of(key: str | None) -> str | None:
    """The public prefix of a well-formed key, or None (a malformed key is counted by its address alone)."""
    found = _KEY_PREFIX_SHAPE.fullmatch(key or "")
    return found.group(1) if found else None


def refusal_after(
    failure: AuthenticationFailed, *, address: str | None, key: str | None, limits: Limits
) -> AgentPayError:
    """Count one failed authentication; the error to answer with: the failure itself, or 429 past a limit.

    Blocking (one or two Redis calls): from a coroutine, run it in a worker thread. If Redis cannot count, the
    failure is answered as it is: the request is refused either way."""
    prefix = key_prefix_of(key)
    counters = [(f"{KEY_PREFIX}addr:{address}", limits.per_address)] if address else []
    if prefix:
        counters.append((f"{KEY_PREFIX}key:{prefix}", limits.per_key))
    fields = {"code": failure.code, "address": address, "key_prefix": prefix}
    try:
        counted = [(*_count(name), limit) for name, limit in counters]
    except Exception:
        log.warning(
            "authentication failed (not counted: Redis did not answer)", extra={"fields": fields}, exc_info=True
        )
        return failure
    over = [(failures, ttl, limit) for failures, ttl, limit in counted if failures > limit]
    if not over:
        log.warning("authentication failed", extra={"fields": fields})
        return failure
    if any(failures == limit + 1 for failures, _, limit in over):  # once per window: when the limit is first passed
        log.warning("authentication throttled", extra={"fields": {**fields, "window_seconds": WINDOW_SECONDS}})
    retry_after = max(ttl for _, ttl, _ in over)
    return AuthenticationThrottled(
        f"Too many failed authentications from this address or for this key (the last: {failure.message}); "
        f"try again in {retry_after} s.",
        retry_after=retry_after,
    )


def _count(counter: str) -> tuple[int, int]:
    failures, ttl = get_store().run_script(COUNT_SCRIPT, [counter], [WINDOW_SECONDS])
    return int(failures), max(1, int(ttl))
