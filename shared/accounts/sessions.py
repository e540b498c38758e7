"""Web sessions of the dashboard: the web_sessions rows behind its cookie, and the CSRF tokens of its forms."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from shared.accounts import organizations
from shared.errors import AuthenticationFailed
from shared.platform import db
from shared.platform.clock import clock

# A session is a row of web_sessions. The cookie carries a random token and the row keeps only its SHA-256, so the
# table opens no session. Every request reads the row and the organization in one query, which refuses a revoked or
# expired session and one opened with an admin key the organization no longer has. CSRF tokens are an HMAC of the
# session id under SESSION_SECRET: a session's tokens end with it.
SESSION_MAX_AGE_SECONDS = 12 * 3600
SESSION_TOKEN_BYTES = 32  # 256 random bits
EXPIRED_SESSIONS_KEPT_SECONDS = 24 * 3600  # then the sweep deletes them


@dataclass(frozen=True)
class OpenedSession:
    """A new session; its token goes into the cookie and nowhere else."""

    session_id: uuid.UUID
    token: str


@dataclass(frozen=True)
class WebSession:
    """A live session and its organization (the columns of organizations.get_organization)."""

    session_id: uuid.UUID
    organization: dict[str, Any]

    @property
    def organization_id(self) -> uuid.UUID:
        return uuid.UUID(str(self.organization["id"]))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(conn: db.Connection, *, organization_id: uuid.UUID, admin_key_hash: str) -> OpenedSession:
    """A session for the admin who just proved this key; AuthenticationFailed if it is no longer the org's key."""
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    now = clock.now()
    # Inserted only while the key is still the organization's: a key changed since it was checked (a cached
    # identity) opens nothing.
    row = conn.execute(
        """
        INSERT INTO web_sessions (organization_id, token_hash, admin_key_hash, created_at, expires_at)
        SELECT id, %s, admin_key_hash, %s, %s FROM organizations WHERE id = %s AND admin_key_hash = %s
        RETURNING id
        """,
        (_token_hash(token), now, now + timedelta(seconds=SESSION_MAX_AGE_SECONDS), organization_id, admin_key_hash),
    ).fetchone()
    if row is None:
        raise AuthenticationFailed()
    return OpenedSession(session_id=row["id"], token=token)


def load_session(conn: db.Connection, token: str | None) -> WebSession | None:
    """The live session of a cookie's token, with its organization; None for anything else."""
    if not token or len(token) > 256:
        return None
    row = conn.execute(
        f"""
        SELECT s.id AS session_id, o.*
        FROM web_sessions AS s
        JOIN LATERAL (
            SELECT {organizations.ORGANIZATION_COLUMNS} FROM organizations
            WHERE id = s.organization_id AND admin_key_hash = s.admin_key_hash
        ) AS o ON true
        WHERE s.token_hash = %s AND s.revoked_at IS NULL AND s.expires_at > %s
        """,
        (_token_hash(token), clock.now()),
    ).fetchone()
    if row is None:
        return None
    session_id = row.pop("session_id")
    return WebSession(session_id=session_id, organization=row)


def revoke_session(conn: db.Connection, *, session_id: uuid.UUID) -> bool:
    """End one session (logout); False if it had already ended."""
    row = conn.execute(
        "UPDATE web_sessions SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL RETURNING id",
        (clock.now(), session_id),
    ).fetchone()
    return row is not None


def revoke_sessions(conn: db.Connection, *, organization_id: uuid.UUID) -> int:
    """End every session of the organization (its admin key changed, a member left); how many were live."""
    now = clock.now()
    cursor = conn.execute(
        "UPDATE web_sessions SET revoked_at = %s WHERE organization_id = %s AND revoked_at IS NULL AND expires_at > %s",
        (now, organization_id, now),
    )
    return cursor.rowcount


def delete_expired_sessions(conn: db.Connection, *, limit: int) -> int:
    """Delete up to `limit` sessions that expired more than a day ago; how many went."""
    cursor = conn.execute(
        """
        DELETE FROM web_sessions WHERE id IN (
            SELECT id FROM web_sessions WHERE expires_at < %s ORDER BY expires_at LIMIT %s
        )
        """,
        (clock.now() - timedelta(seconds=EXPIRED_SESSIONS_KEPT_SECONDS), limit),
    )
    return cursor.rowcount


def _mac(secret: str, purpose: str, message: str) -> str:
    return hmac.new(secret.encode(), f"{purpose}|{message}".encode(), hashlib.sha256).hexdigest()


def session_csrf_token(secret: str, session_id: uuid.UUID) -> str:
    """The token every signed-in form carries: an HMAC of the session id.

    Its own purpose, apart from the pre-login forms' tokens: a session id is no secret, and a form cookie set to
    one must not make the login page hand out that session's token.
    """
    return _mac(secret, "session-csrf", str(session_id))


def csrf_token(secret: str, binding: str) -> str:
    """The token of the forms shown before login: an HMAC of the random form cookie."""
    return _mac(secret, "csrf", binding)


def csrf_valid(secret: str, binding: str | None, sent: str | None) -> bool:
    if not binding or not sent:
        return False
    return hmac.compare_digest(csrf_token(secret, binding).encode(), sent.encode())
