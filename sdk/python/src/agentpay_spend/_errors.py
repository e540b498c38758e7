"""Every error the SDK raises, and the mapping from the API's error shape to them."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

from ._outcomes import MERCHANT_RULE_REASONS, ORGANIZATION_LIMIT_REASONS
from ._transaction import Transaction


class AgentPayError(Exception):
    """Base of every error raised by the AgentPay SDK."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        type: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.type = type
        self.code = code
        self.request_id = request_id
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})

    def __str__(self) -> str:
        details = ", ".join(
            f"{name}={value}"
            for name, value in (
                ("http_status", self.http_status),
                ("code", self.code),
                ("request_id", self.request_id),
            )
            if value is not None
        )
        return f"{self.message} ({details})" if details else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, http_status={self.http_status!r}, "
            f"code={self.code!r}, request_id={self.request_id!r})"
        )


class AuthenticationError(AgentPayError):
    """401: the API key is missing or wrong, or the request signature or timestamp was rejected."""


class BudgetExceededError(AgentPayError):
    """402: the agent's spend policy declined the payment; `code` names the rule (BUDGET_DECLINE_REASONS)."""

    # `limit`, `spent` and `requested` are cents (for payment_count_exceeded, `limit` and `spent` count
    # payments); `merchant` is the merchant a merchant rule refused, as the server compared it (lower case).
    # Each is None when the answer does not state it: `spent` for the per-transaction limit, `limit` for a
    # blocked merchant, all but `requested` when a replay (answered 200) raises the decline again.
    limit: int | None
    spent: int | None
    requested: int | None
    merchant: str | None
    transaction: Transaction | None

    def __init__(
        self,
        message: str,
        *,
        transaction: Transaction | None = None,
        limit: int | None = None,
        spent: int | None = None,
        requested: int | None = None,
        merchant: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.transaction = transaction
        self.limit = limit
        self.spent = spent
        self.requested = requested if requested is not None or transaction is None else transaction.amount
        self.merchant = merchant

    @property
    def is_merchant_rule(self) -> bool:
        """True when a merchant rule declined it: blocked, not allowed, or over the merchant's daily cap."""
        return self.code in MERCHANT_RULE_REASONS

    @property
    def is_organization_limit(self) -> bool:
        """True when the organization's ceiling, over all its agents together, declined it."""
        return self.code in ORGANIZATION_LIMIT_REASONS


class PermissionDeniedError(AgentPayError):
    """403: the caller is known but may not do this."""


class AgentBlockedError(PermissionDeniedError):
    """403: the agent is blocked by the circuit breaker or disabled by an admin (`code` says which)."""


class InvalidRequestError(AgentPayError):
    """400/413/422 and other 4xx: the request was malformed; `errors` lists field problems when given."""

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errors: list[dict[str, Any]] = list(errors or [])


class NotFoundError(InvalidRequestError):
    """404: no such object, or it belongs to another agent."""


class ConflictError(AgentPayError):
    """409: the request conflicts with the current state of the object."""


class IdempotencyError(ConflictError):
    """409: the idempotency key was reused with other parameters, or its first request is in progress."""


class RateLimitError(AgentPayError):
    """429: the circuit breaker blocked the agent (`agent_blocked`), or wait `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    @property
    def agent_blocked(self) -> bool:
        """True when the circuit breaker tripped: only an admin unblocking the agent helps."""
        return self.retry_after is None


class APIError(AgentPayError):
    """5xx or an unexpected answer from the API, after any retries."""


class APIConnectionError(APIError):
    """The API could not be reached (connection refused, timeout, ...) after all retries."""


class PaymentDeclinedError(AgentPayError):
    """A payment being waited on ended declined or timed out; `reason` is its decision_reason."""

    def __init__(self, message: str, *, transaction: Transaction, **kwargs: Any) -> None:
        kwargs.setdefault("code", transaction.decision_reason)
        super().__init__(message, **kwargs)
        self.transaction = transaction
        self.reason = transaction.decision_reason


class ApprovalTimeoutError(AgentPayError):
    """wait_for_approval gave up locally before a decision; `transaction` is the last state seen."""

    def __init__(self, message: str, *, transaction: Transaction | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("code", "approval_wait_timeout")
        super().__init__(message, **kwargs)
        self.transaction = transaction


class WebhookSignatureError(AgentPayError):
    """A webhook's AgentPay-Signature header is missing, malformed, stale or does not match its body."""


_BLOCKED_CODES = frozenset({"agent_blocked", "agent_disabled"})
_IDEMPOTENCY_CODES = frozenset({"idempotency_key_reused", "request_in_progress"})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def error_from_response(status: int, body: Any, headers: Mapping[str, str]) -> AgentPayError:
    """Map an error answer to its class by HTTP status and `error.code`."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    code = error.get("code")
    message = str(error.get("message") or f"AgentPay answered HTTP {status}.")
    common: dict[str, Any] = {
        "http_status": status,
        "type": error.get("type"),
        "code": code,
        "request_id": error.get("request_id") or headers.get("x-request-id"),
        "body": body,
        "headers": headers,
    }
    if status == 401:
        return AuthenticationError(message, **common)
    if status == 402:
        try:
            transaction: Transaction | None = Transaction.from_dict(body)
        except ValueError:
            transaction = None
        return BudgetExceededError(
            message,
            transaction=transaction,
            limit=_int_or_none(error.get("limit")),
            spent=_int_or_none(error.get("spent")),
            requested=_int_or_none(error.get("requested")),
            merchant=error.get("merchant") if isinstance(error.get("merchant"), str) else None,
            **common,
        )
    if status == 403:
        cls = AgentBlockedError if code in _BLOCKED_CODES else PermissionDeniedError
        return cls(message, **common)
    if status == 404:
        return NotFoundError(message, errors=error.get("errors"), **common)
    if status == 409:
        return (IdempotencyError if code in _IDEMPOTENCY_CODES else ConflictError)(message, **common)
    if status == 429:
        return RateLimitError(message, retry_after=parse_retry_after(headers.get("retry-after")), **common)
    if 400 <= status < 500:
        return InvalidRequestError(message, errors=error.get("errors"), **common)
    return APIError(message, **common)
