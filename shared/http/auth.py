"""API keys, request signatures, and who a request comes from (an agent or an organization's admin)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from shared.errors import (
    AgentDisabled,
    AuthenticationFailed,
    InvalidSignature,
    MissingApiKey,
    TimestampOutOfRange,
)
from shared.platform import db
from shared.platform.clock import clock

KeyMode = Literal["test", "live"]
SIGNATURE_TOLERANCE_SECONDS = 300
AUTH_CACHE_SECONDS = 10.0
_KEY_PREFIX_CHARS = 8  # hex characters kept after the key's kind, for display only


@dataclass(frozen=True)
class IssuedKey:
    """A freshly generated key: the plaintext goes to the caller once, the hash and prefix to the database."""

    plaintext: str
    hash: str
    prefix: str


def hash_key(key: str) -> str:
    """The lowercase hex SHA-256 of a key: what the database stores and what request signatures are keyed with."""
    return hashlib.sha256(key.encode()).hexdigest()


def _issue(kind: str, mode: KeyMode) -> IssuedKey:
    head = f"{kind}_{mode}_"
    body = secrets.token_hex(32)
    plaintext = head + body
    return IssuedKey(plaintext=plaintext, hash=hash_key(plaintext), prefix=head + body[:_KEY_PREFIX_CHARS])


def issue_agent_key(mode: KeyMode) -> IssuedKey:
    return _issue("apk", mode)


def issue_admin_key(mode: KeyMode) -> IssuedKey:
    return _issue("apa", mode)


_KEY_SHAPES = {kind: re.compile(rf"{kind}_(?:test|live)_[0-9a-f]{{64}}") for kind in ("apk", "apa")}


def _looks_like(key: str, kind: str) -> bool:
    return _KEY_SHAPES[kind].fullmatch(key) is not None


def bearer_key(authorization: str | None) -> str:
    """The key from an `Authorization: Bearer <key>` header."""
    if not authorization:
        raise MissingApiKey()
    scheme, _, key = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise MissingApiKey("The Authorization header must be 'Bearer <key>'.")
    return key.strip()


def compute_signature(key_hash: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """HMAC-SHA256 over "{timestamp}.{METHOD}.{path}.{raw_body}" keyed with the key's hex SHA-256, as hex."""
    message = f"{timestamp}.{method.upper()}.{path}.".encode() + body
    return hmac.new(key_hash.encode(), message, hashlib.sha256).hexdigest()


def verify_signature(
    *,
    key_hash: str,
    timestamp: str | None,
    signature: str | None,
    method: str,
    path: str,
    body: bytes,
    now: float | None = None,
) -> None:
    """Raise unless the signature header matches the request and the timestamp is within 300 s."""
    if not timestamp:
        raise TimestampOutOfRange("AgentPay-Timestamp header is missing.")
    try:
        sent_at = int(timestamp)
    except ValueError as exc:
        raise TimestampOutOfRange("AgentPay-Timestamp must be unix seconds.") from exc
    current = clock.time() if now is None else now
    if abs(current - sent_at) > SIGNATURE_TOLERANCE_SECONDS:
        raise TimestampOutOfRange()
    if not signature:
        raise InvalidSignature("AgentPay-Signature header is missing.")
    expected = "v1=" + compute_signature(key_hash, timestamp, method, path, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise InvalidSignature()


@dataclass(frozen=True)
class AgentIdentity:
    """An authenticated agent and its organization's day and standing, as cached for at most 10 s (its limits are the
    budget engine's to load: shared/policy/limits.py)."""

    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    key_hash: str
    is_active: bool
    blocked_at: datetime | None
    timezone: str
    # Outside local mode an organization spends once its admin email is verified; the address, for the refusal.
    organization_verified: bool = True
    admin_email: str = ""


@dataclass(frozen=True)
class AdminIdentity:
    """An organization's admin, authenticated by the organization's admin key."""

    organization_id: uuid.UUID
    timezone: str


class _TtlCache:
    """A tiny per-process cache: entries live at most `ttl` seconds; a write for a key invalidates it at once."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


agent_cache = _TtlCache(AUTH_CACHE_SECONDS)
admin_cache = _TtlCache(AUTH_CACHE_SECONDS)

_AGENT_BY_KEY_SQL = """
SELECT a.id, a.organization_id, a.name, a.api_key_hash, a.is_active, a.blocked_at, o.timezone,
       o.email_verified_at IS NOT NULL AS organization_verified, o.admin_email
FROM agents a
JOIN organizations o ON o.id = a.organization_id
WHERE a.api_key_hash = %s
"""


def load_agent(conn: db.Connection, key_hash: str) -> AgentIdentity | None:
    row = conn.execute(_AGENT_BY_KEY_SQL, (key_hash,)).fetchone()
    if row is None:
        return None
    return AgentIdentity(
        id=row["id"],
        organization_id=row["organization_id"],
        name=row["name"],
        key_hash=row["api_key_hash"],
        is_active=row["is_active"],
        blocked_at=row["blocked_at"],
        timezone=row["timezone"],
        organization_verified=row["organization_verified"],
        admin_email=row["admin_email"],
    )


def authenticate_agent(
    *,
    authorization: str | None,
    timestamp: str | None,
    signature: str | None,
    method: str,
    path: str,
    body: bytes,
) -> AgentIdentity:
    """The agent a signed request comes from; raises the 401/403 of API.md otherwise."""
    key = bearer_key(authorization)
    if not _looks_like(key, "apk"):
        if _looks_like(key, "apa"):
            raise AuthenticationFailed(
                "This is an organization (admin) key: it is for the dashboard and its API. An agent authenticates"
                " with its own apk_ key, shown once when the agent is created in the dashboard."
            )
        raise AuthenticationFailed()
    key_hash = hash_key(key)
    agent: AgentIdentity | None = agent_cache.get(key_hash)
    if agent is None:
        with db.connection() as conn:
            agent = load_agent(conn, key_hash)
        if agent is None:
            raise AuthenticationFailed()
        agent_cache.put(key_hash, agent)
    verify_signature(key_hash=key_hash, timestamp=timestamp, signature=signature, method=method, path=path, body=body)
    if not agent.is_active:
        raise AgentDisabled()
    return agent


def authenticate_admin(authorization: str | None) -> AdminIdentity:
    """The organization whose admin key this is. Agent keys are never admin keys."""
    key = bearer_key(authorization)
    if not _looks_like(key, "apa"):
        if _looks_like(key, "apk"):
            raise AuthenticationFailed(
                "This is an agent key: the dashboard API takes the organization's admin key (it starts with apa_)."
            )
        raise AuthenticationFailed("This is not an admin key.")
    key_hash = hash_key(key)
    admin: AdminIdentity | None = admin_cache.get(key_hash)
    if admin is None:
        with db.connection() as conn:
            row = conn.execute(
                "SELECT id, timezone FROM organizations WHERE admin_key_hash = %s", (key_hash,)
            ).fetchone()
        if row is None:
            raise AuthenticationFailed()
        admin = AdminIdentity(organization_id=row["id"], timezone=row["timezone"])
        admin_cache.put(key_hash, admin)
    return admin


def is_cached(authorization: str | None, cache: _TtlCache) -> bool:
    """Whether authenticating this header needs no database round trip (so it can run on the event loop)."""
    try:
        return cache.get(hash_key(bearer_key(authorization))) is not None
    except MissingApiKey:
        return True


def forget_agent(key_hash: str) -> None:
    """Drop a cached agent at once (its key was rotated, it was disabled, or its limits changed)."""
    with agent_cache._lock:
        agent_cache._entries.pop(key_hash, None)
