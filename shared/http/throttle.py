"""Fixed-window counters in Redis: failed authentications per client address and key prefix, sign-ups per address.

Failed authentications: only failures are counted and only failures are refused (429 instead of 401 past a limit).
A request that authenticates never touches the counters, so a valid key is never slowed down, whoever else fails from
its address. Sign-ups (outside local mode): a client address may create a few organizations an hour. The counts live
in Redis, so they hold across Lambda containers and server processes."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from shared.config import Settings
from shared.errors import AgentPayError, AuthenticationFailed, AuthenticationThrottled, SignupThrottled
from shared.platform.redis_store import LuaScript, get_store

AUTH_WINDOW_SECONDS = 60
SIGNUP_WINDOW_SECONDS = 3600
# throttle:authfail:addr:<address>, throttle:authfail:key:<key prefix>, throttle:signup:<address>
KEY_PREFIX = "throttle:"
COUNT_SCRIPT = LuaScript.from_file(Path(__file__).resolve().parent / "count_in_window.lua")
# The public part of a well-formed key (the dashboard shows it): the kind, the mode and 8 hex characters.
_KEY_PREFIX_SHAPE = re.compile(r"(ap[ka]_(?:test|live)_[0-9a-f]{8})[0-9a-f]{56}")

log = logging.getLogger("agentpay.auth")


def _count(counter: str, window_seconds: int) -> tuple[int, int]:
    """One more event on `counter`: the events of its window so far, and the seconds until the window ends."""
    events, ttl = get_store().run_script(COUNT_SCRIPT, [KEY_PREFIX + counter], [window_seconds])
    return int(events), max(1, int(ttl))


# Failed authentications ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """How many failed authentications a window allows per client address and per key prefix."""

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
    counters = [(f"authfail:addr:{address}", limits.per_address)] if address else []
    if prefix:
        counters.append((f"authfail:key:{prefix}", limits.per_key))
    fields = {"code": failure.code, "address": address, "key_prefix": prefix}
    try:
        counted = [(*_count(name, AUTH_WINDOW_SECONDS), limit) for name, limit in counters]
    except Exception:
        unanswered = "authentication failed (not counted: Redis did not answer)"
        log.warning(unanswered, extra={"fields": fields}, exc_info=True)
        return failure
    over = [(failures, ttl, limit) for failures, ttl, limit in counted if failures > limit]
    if not over:
        log.warning("authentication failed", extra={"fields": fields})
        return failure
    if any(failures == limit + 1 for failures, _, limit in over):  # once per window: when the limit is first passed
        log.warning("authentication throttled", extra={"fields": {**fields, "window_seconds": AUTH_WINDOW_SECONDS}})
    retry_after = max(ttl for _, ttl, _ in over)
    return AuthenticationThrottled(
        f"Too many failed authentications from this address or for this key (the last: {failure.message}); "
        f"try again in {retry_after} s.",
        retry_after=retry_after,
    )


# Sign-ups -----------------------------------------------------------------------------------------------------
def check_signup(*, address: str | None, settings: Settings) -> None:
    """Count a sign-up attempt from this address; SignupThrottled past the hourly limit. Local mode counts nothing.

    Counted before the organization is created, so a refused attempt costs no Stripe customer. If Redis cannot
    count, the sign-up goes ahead: it still needs the sign-up token and a verified email before it can spend."""
    if settings.is_local or not address:
        return
    try:
        attempts, ttl = _count(f"signup:{address}", SIGNUP_WINDOW_SECONDS)
    except Exception:
        log.warning("sign-up not counted: Redis did not answer", extra={"fields": {"address": address}}, exc_info=True)
        return
    if attempts > settings.signups_per_address_per_hour:
        if attempts == settings.signups_per_address_per_hour + 1:
            log.warning("sign-ups throttled", extra={"fields": {"address": address}})
        raise SignupThrottled(
            f"Too many sign-ups from this address; try again in {(ttl + 59) // 60} minutes.", retry_after=ttl
        )
