"""Organizations: sign-up, their admin key, their Stripe customer and their calendar day."""

from __future__ import annotations

import uuid
import zoneinfo
from dataclasses import dataclass
from typing import Any

import stripe

from shared import db, stripe_api
from shared.auth import IssuedKey, KeyMode, issue_admin_key
from shared.clock import iso
from shared.errors import ValidationFailed


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
) -> NewOrganization:
    """Create the organization: its Stripe customer first (keyed by the new id), then the row with its admin key."""
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
            """
            INSERT INTO organizations (id, name, admin_email, admin_key_hash, admin_key_prefix, timezone,
                                       stripe_customer_id, stripe_payment_method_id)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            RETURNING id, name, admin_email, timezone, admin_key_prefix, stripe_customer_id,
                      stripe_payment_method_id, created_at
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
            ),
        ).fetchone()
    assert row is not None
    return NewOrganization(organization=row, admin_key=key)


def record_billing(conn: db.Connection, organization_id: uuid.UUID, billing: stripe_api.BillingSetup) -> None:
    conn.execute(
        "UPDATE organizations SET stripe_customer_id = %s, stripe_payment_method_id = %s WHERE id = %s",
        (billing.customer_id, billing.payment_method_id, organization_id),
    )


# What a page or the API may see of an organization: never its admin key's hash.
ORGANIZATION_COLUMNS = (
    "id, name, admin_email, timezone, admin_key_prefix, stripe_customer_id, stripe_payment_method_id, created_at"
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
        "created_at": iso(row["created_at"]),
    }
