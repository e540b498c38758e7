"""AgentPay for Python: spend within a budget, wait for a human's approval, verify decision webhooks."""

from . import webhooks
from ._client import AgentPay, AsyncAgentPay
from ._errors import (
    AgentBlockedError,
    AgentPayError,
    APIConnectionError,
    APIError,
    ApprovalTimeoutError,
    AuthenticationError,
    BudgetExceededError,
    ConflictError,
    IdempotencyError,
    InvalidRequestError,
    NotFoundError,
    PaymentDeclinedError,
    PermissionDeniedError,
    RateLimitError,
    WebhookSignatureError,
)
from ._signing import derive_idempotency_key
from ._transaction import Transaction
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIError",
    "AgentBlockedError",
    "AgentPay",
    "AgentPayError",
    "ApprovalTimeoutError",
    "AsyncAgentPay",
    "AuthenticationError",
    "BudgetExceededError",
    "ConflictError",
    "IdempotencyError",
    "InvalidRequestError",
    "NotFoundError",
    "PaymentDeclinedError",
    "PermissionDeniedError",
    "RateLimitError",
    "Transaction",
    "WebhookSignatureError",
    "__version__",
    "derive_idempotency_key",
    "webhooks",
]
