"""Organizations: sign-up, their admin key and verified email, their Stripe customer and their calendar day."""

from __future__ import annotations

import uuid
import zoneinfo
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from shared.audit import log as audit
from shared.errors import InvalidToken, LinkExpired, ValidationFailed
from shared.http.auth import IssuedKey, KeyMode, issue_admin_key
from shared.jobs import outbox as jobs
from shared.platform import db
from shared.platform.clock import clock, iso

if TYPE_CHECKING:
    import stripe

    from shared.vendors.stripe import BillingSetup


@dataclass(frozen=True)
class NewOrganization:
    """A created organization and its admin key, shown to the caller once."""

    organization: dict[str, Any]
    admin_key: IssuedKey


def validate_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationFailed(
            [
                {
                    "field": "timezone",
                    "message": f"'{name}' is not an IANA timezone name (e.g. 'Europe/Paris').",
                }
            ]
        ) from exc
    return name


def sign_up(
    stripe_client: stripe.StripeClient,
    *,
    name: str,
    admin_email: str,
    timezone: str,
    key_mode: KeyMode,
    attach_test_card: bool,
    email_verified: bool,
) -> NewOrganization:
    """Create the organization: its Stripe customer first (keyed by the new id), then the row with its admin key.

    Unless `email_verified` (local mode, or an operator's `agentpay org create`), the row starts unverified and the
    verification email is queued in the same transaction: the organization spends only once the link is posted."""
    # Here, not at the top: the email worker and the sweep read organizations and never sign one up, and Stripe's
    # SDK (with the HTTP libraries it loads) costs a cold start about 35 ms.
    from shared.vendors import stripe as stripe_api

    validate_timezone(timezone)
    organization_id = uuid.uuid4()
    billing = stripe_api.set_up_customer(
        stripe_client,
        organization_id=str(organization_id),
        name=name,
        email=admin_email,
        attach_test_card=attach_test_card,
    )
    key = issue_admin_key(key_mode)
    with db.connection() as conn:
        row = conn.execute(
            f"""
            INSERT INTO organizations (id, name, admin_email, admin_key_hash, admin_key_prefix, timezone,
                                       stripe_customer_id, stripe_payment_method_id, email_verified_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
            RETURNING {ORGANIZATION_COLUMNS}
            """,
            (
                organization_id,
                name,
                admin_email,
                key.hash,
                key.prefix,
                timezone,
                billing.customer_id,
                billing.payment_method_id,
                clock.now() if email_verified else None,
            ),
        ).fetchone()
        verification = None if email_verified else jobs.enqueue(conn, jobs.email_verification_job(organization_id))
    assert row is not None
    jobs.publish([verification])
    return NewOrganization(organization=row, admin_key=key)


def record_billing(conn: db.Connection, organization_id: uuid.UUID, billing: BillingSetup) -> None:
    conn.execute(
        "UPDATE organizations SET stripe_customer_id = %s, stripe_payment_method_id = %s WHERE id = %s",
        (billing.customer_id, billing.payment_method_id, organization_id),
    )


# What a page or the API may see of an organization: never its admin key's hash.
ORGANIZATION_COLUMNS = (
    "id, name, admin_email, timezone, admin_key_prefix, stripe_customer_id, stripe_payment_method_id,"
    " email_verified_at, created_at"
)


def get_organization(conn: db.Connection, organization_id: uuid.UUID) -> dict[str, Any] | None:
    return conn.execute(
        f"SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = %s", (organization_id,)
    ).fetchone()


def organization_view(row: dict[str, Any]) -> dict[str, Any]:
    """The organization as the API shows it."""
    return {
        "id": str(row["id"]),
        "object": "organization",
        "name": row["name"],
        "admin_email": row["admin_email"],
        "timezone": row["timezone"],
        "admin_key_prefix": row["admin_key_prefix"],
        "has_payment_method": bool(row.get("stripe_payment_method_id")),
        "email_verified_at": iso(row["email_verified_at"]) if row.get("email_verified_at") else None,
        "created_at": iso(row["created_at"]),
    }


# Verifying the admin email -----------------------------------------------------------------------------------------
# The link in the verification email carries a signed token (HS256 under APPROVAL_JWT_SECRET, its own audience so an
# approval token never verifies an email and the reverse). It names the organization and the address it was sent to:
# changing the admin email makes older links worthless.
VERIFICATION_AUDIENCE = "agentpay-email-verification"
VERIFICATION_TTL = timedelta(days=7)


@dataclass(frozen=True)
class EmailVerification:
    """What a verified link says: this organization's admin owns this address."""

    organization_id: uuid.UUID
    email: str


def issue_verification_token(*, organization_id: uuid.UUID | str, email: str, secret: str) -> str:
    import jwt  # here, not at the top: the sweep reads organizations and never signs a link

    claims = {
        "iss": "agentpay",
        "aud": VERIFICATION_AUDIENCE,
        "sub": str(organization_id),
        "email": email,
        "iat": int(clock.time()),
        "exp": int((clock.now() + VERIFICATION_TTL).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def read_verification_token(token: str, *, secret: str) -> EmailVerification:
    """Verify a link's token: 410 once expired, 400 for anything that is not a verification token of ours."""
    import jwt

    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=VERIFICATION_AUDIENCE,
            issuer="agentpay",
            options={"require": ["exp", "sub", "aud", "iss", "email"]},
        )
        return EmailVerification(organization_id=uuid.UUID(str(claims["sub"])), email=str(claims["email"]))
    except jwt.ExpiredSignatureError as exc:
        raise LinkExpired("This verification link has expired. Sign in to the dashboard to get a new one.") from exc
    except (jwt.PyJWTError, ValueError, OverflowError) as exc:
        raise InvalidToken("This verification link is not valid. It may have been copied incompletely.") from exc


def verify_email(conn: db.Connection, verification: EmailVerification) -> dict[str, Any]:
    """Mark the admin email verified (once, audited); the organization either way. An address that is no longer the
    admin's verifies nothing (InvalidToken)."""
    row = conn.execute(
        f"""
        UPDATE organizations SET email_verified_at = %s
        WHERE id = %s AND admin_email = %s AND email_verified_at IS NULL
        RETURNING {ORGANIZATION_COLUMNS}
        """,
        (clock.now(), verification.organization_id, verification.email),
    ).fetchone()
    if row is not None:
        audit.record(
            conn,
            organization_id=row["id"],
            actor="admin",
            action="organization.email_verified",
            details={"email": verification.email},
        )
        return row
    return organization_to_verify(conn, verification)


def organization_to_verify(conn: db.Connection, verification: EmailVerification) -> dict[str, Any]:
    """The organization a verification link names, while the address is still its admin's; InvalidToken otherwise."""
    organization = get_organization(conn, verification.organization_id)
    if organization is None or organization["admin_email"] != verification.email:
        raise InvalidToken("This verification link is not valid for this organization's current admin email.")
    return organization
