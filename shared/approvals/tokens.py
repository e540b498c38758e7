"""The approval email's one-click links: a signed token per action (HS256, under APPROVAL_JWT_SECRET)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import jwt

from shared.approvals.decisions import Action
from shared.errors import ForgedToken, InvalidToken, LinkExpired
from shared.platform.clock import clock

ISSUER = "agentpay"
AUDIENCE = "agentpay-approval"
ALGORITHM = "HS256"  # pinned: a token claiming any other algorithm, "none" included, is refused


@dataclass(frozen=True)
class ApprovalToken:
    """What a verified approval link says: which transaction, which action."""

    transaction_id: uuid.UUID
    action: Action
    expires_at: datetime
    jti: str


def issue_token(*, transaction_id: uuid.UUID | str, action: Action, expires_at: datetime, secret: str) -> str:
    """One token per action: a decline token never approves and an approve token never declines."""
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(transaction_id),
        "act": action,
        "iat": int(clock.time()),
        "exp": int(expires_at.timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def read_token(token: str, *, action: Action, secret: str) -> ApprovalToken:
    """Verify a link's token for this action.

    410 once expired, 401 if forged or tampered with, 400 if malformed or made for the other action.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "aud", "iss", "jti"]},
            leeway=0,
        )
    except jwt.ExpiredSignatureError as exc:
        raise LinkExpired() from exc
    except jwt.InvalidSignatureError as exc:
        raise ForgedToken("This approval link's signature is not valid.") from exc
    except jwt.PyJWTError as exc:
        raise InvalidToken() from exc
    if claims.get("act") != action:
        raise InvalidToken(f"This link cannot {action} a payment.")
    try:
        transaction_id = uuid.UUID(str(claims["sub"]))
    except ValueError as exc:
        raise InvalidToken() from exc
    try:
        expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=clock.now().tzinfo)
    except (ValueError, OverflowError, OSError) as exc:  # an end no datetime can hold: not a token we issued
        raise InvalidToken() from exc
    return ApprovalToken(transaction_id=transaction_id, action=action, expires_at=expires_at, jti=str(claims["jti"]))
