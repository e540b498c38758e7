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
from ._outcomes import (
    APPROVAL_REASONS,
    BUDGET_DECLINE_REASONS,
    DECISION_REASONS,
    TRANSACTION_STATUSES,
    ApprovalReason,
    BudgetDeclineReason,
    DecisionReason,
    ShadowVerdict,
    TransactionStatus,
)
from ._signing import derive_idempotency_key
from ._transaction import Transaction
from ._version import __version__

__all__ = [
    "APPROVAL_REASONS",
    "BUDGET_DECLINE_REASONS",
    "DECISION_REASONS",
    "TRANSACTION_STATUSES",
    "APIConnectionError",
    "APIError",
    "AgentBlockedError",
    "AgentPay",
    "AgentPayError",
    "ApprovalReason",
    "ApprovalTimeoutError",
    "AsyncAgentPay",
    "AuthenticationError",
    "BudgetDeclineReason",
    "BudgetExceededError",
    "ConflictError",
    "DecisionReason",
    "IdempotencyError",
    "InvalidRequestError",
    "NotFoundError",
    "PaymentDeclinedError",
    "PermissionDeniedError",
    "RateLimitError",
    "ShadowVerdict",
    "Transaction",
    "TransactionStatus",
    "WebhookSignatureError",
    "__version__",
    "derive_idempotency_key",
    "webhooks",
]
