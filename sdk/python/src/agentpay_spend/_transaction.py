"""The Transaction object the API answers with, as a typed, immutable value."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from ._outcomes import ShadowVerdict

TERMINAL_STATUSES = frozenset({"declined", "completed", "timed_out"})


@dataclass(frozen=True)
class Transaction:
    """One payment request and its decision; `amount` is integer cents."""

    id: str
    object: str
    organization_id: str
    agent_id: str
    amount: int
    currency: str
    merchant: str
    purpose: str
    context: dict[str, Any]
    status: str
    decision_reason: str | None
    idempotency_key: str | None
    stripe_charge_id: str | None
    approval_expires_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    # Dashboard answers only: what the agent's draft policy would have decided; None from the agent API.
    shadow: ShadowVerdict | None = None
    # Fields a newer server may add; kept so nothing the API said is lost.
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        """True once the transaction can no longer change (declined, completed or timed out)."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transaction:
        """Build from the API's JSON; unknown keys go to `extra`. ValueError if required keys are missing."""
        try:
            return cls(
                id=str(data["id"]),
                object=str(data.get("object", "transaction")),
                organization_id=str(data["organization_id"]),
                agent_id=str(data["agent_id"]),
                amount=int(data["amount"]),
                currency=str(data.get("currency", "usd")),
                merchant=str(data["merchant"]),
                purpose=str(data["purpose"]),
                context=dict(data.get("context") or {}),
                status=str(data["status"]),
                decision_reason=_optional_str(data.get("decision_reason")),
                idempotency_key=_optional_str(data.get("idempotency_key")),
                stripe_charge_id=_optional_str(data.get("stripe_charge_id")),
                approval_expires_at=_optional_datetime(data.get("approval_expires_at")),
                created_at=_datetime(data["created_at"]),
                completed_at=_optional_datetime(data.get("completed_at")),
                shadow=_shadow(data.get("shadow")),
                extra={k: v for k, v in data.items() if k not in _FIELD_NAMES},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a transaction object: {exc!r}") from exc


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _shadow(value: Any) -> ShadowVerdict | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a shadow verdict object, got {value!r}")
    verdict = {"status": str(value["status"]), "decision_reason": str(value["decision_reason"])}
    return cast(ShadowVerdict, verdict)


def _datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {value!r}")
    return datetime.fromisoformat(value)


def _optional_datetime(value: Any) -> datetime | None:
    return None if value is None else _datetime(value)


_FIELD_NAMES = frozenset(Transaction.__dataclass_fields__) - {"extra"}
