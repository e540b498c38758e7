"""The AgentPay and AsyncAgentPay clients and their `pay` and `transactions` resources."""

from __future__ import annotations

import asyncio
import operator
import os
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self, SupportsIndex
from urllib.parse import quote

import httpx

from . import _http
from ._errors import (
    APIError,
    ApprovalTimeoutError,
    AuthenticationError,
    BudgetExceededError,
    InvalidRequestError,
    PaymentDeclinedError,
)
from ._outcomes import BUDGET_DECLINE_REASONS
from ._signing import derive_idempotency_key, normalize_numbers
from ._transaction import Transaction
from ._version import __version__

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
PAYMENT_REQUEST_PATH = "/v1/payment-request"
# The same sentence as the server's 422 for a non-integer amount (tests/sdk checks they stay equal).
AMOUNT_IN_CENTS = "amount is an integer number of cents: 500 means $5.00"


def _cents(amount: object) -> int:
    """The amount as an int; a float is refused even when whole (5.0 from someone thinking in dollars)."""
    if isinstance(amount, SupportsIndex) and not isinstance(amount, bool):
        return operator.index(amount)
    raise InvalidRequestError(
        AMOUNT_IN_CENTS, code="validation_error", errors=[{"field": "amount", "message": AMOUNT_IN_CENTS}]
    )


class _ClientConfig:
    """Settings resolved once from arguments and the environment."""

    def __init__(self, api_key: str | None, base_url: str | None, max_retries: int, timeout: float) -> None:
        api_key = api_key or os.environ.get("AGENTPAY_API_KEY")
        if not api_key:
            raise AuthenticationError(
                "No AgentPay API key: pass AgentPay(api_key='apk_...') or set AGENTPAY_API_KEY.",
                code="missing_api_key",
            )
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.api_key = api_key
        self.base_url = (base_url or os.environ.get("AGENTPAY_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.max_retries = max_retries
        self.timeout = timeout
        self.headers = {"Accept": "application/json", "User-Agent": f"agentpay-spend-python/{__version__}"}

    def payment_request(
        self,
        *,
        amount: int,
        purpose: str,
        merchant: str,
        context: dict[str, Any] | None,
        idempotency_key: str | None,
        callback_url: str | None,
        currency: str,
    ) -> httpx.Request:
        amount = _cents(amount)
        context = context if context is not None else {}
        key = idempotency_key or derive_idempotency_key(
            amount=amount, merchant=merchant, purpose=purpose, currency=currency, context=context
        )
        # Sent normalised, like the key is derived: the same purchase is always the same bytes.
        body: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "merchant": merchant,
            "purpose": purpose,
            "context": normalize_numbers(context),
            "idempotency_key": key,
        }
        if callback_url is not None:
            body["callback_url"] = callback_url
        return httpx.Request(
            "POST",
            self.base_url + PAYMENT_REQUEST_PATH,
            content=_http.encode_json(body),
            headers={**self.headers, "Content-Type": "application/json", "Idempotency-Key": key},
        )

    def retrieve_request(self, transaction_id: str) -> httpx.Request:
        if not transaction_id:
            raise ValueError("transaction_id must not be empty")
        url = f"{self.base_url}/v1/transactions/{quote(transaction_id, safe='')}"
        return httpx.Request("GET", url, headers=self.headers)


def _transaction(body: dict[str, Any]) -> Transaction:
    try:
        return Transaction.from_dict(body)
    except ValueError as exc:
        raise APIError(f"AgentPay answered with an unexpected object: {exc}", body=body) from exc


# A replay (200) of a payment declined for one of these raises, as its first answer (402) did.
_BUDGET_REASONS = frozenset(BUDGET_DECLINE_REASONS)


def _payment(body: dict[str, Any]) -> Transaction:
    """The requested payment; a replay (200) of one a limit declined raises as the first answer (402) did."""
    transaction = _transaction(body)
    if transaction.status == "declined" and transaction.decision_reason in _BUDGET_REASONS:
        raise BudgetExceededError(
            f"Payment {transaction.id} was declined: {transaction.decision_reason}.",
            http_status=200,
            type="budget",
            code=transaction.decision_reason,
            body=body,
            transaction=transaction,
        )
    return transaction


def _transaction_id(transaction: str | Transaction) -> str:
    return transaction.id if isinstance(transaction, Transaction) else transaction


def _outcome(transaction: Transaction) -> Transaction | None:
    """The transaction if it completed; raises if it was declined or timed out; None while undecided."""
    if transaction.status == "completed":
        return transaction
    if transaction.status in ("declined", "timed_out"):
        raise PaymentDeclinedError(
            f"Payment {transaction.id} ended {transaction.status}: {transaction.decision_reason}.",
            transaction=transaction,
        )
    return None


def _timed_out(transaction_id: str, timeout: float, last: Transaction | None) -> ApprovalTimeoutError:
    status = last.status if last else "unknown"
    return ApprovalTimeoutError(
        f"No final decision on payment {transaction_id} within {timeout:g} s (last status: {status}).",
        transaction=last,
    )


# -- sync ----------------------------------------------------------------------------------------------------
class Transactions:
    """Read transactions: `client.transactions.retrieve(id)`."""

    def __init__(self, client: AgentPay) -> None:
        self._client = client

    def retrieve(self, transaction_id: str) -> Transaction:
        """The agent's own transaction as it is now; NotFoundError for anything else."""
        request = self._client._config.retrieve_request(transaction_id)
        return _transaction(self._client._transport.request(request))


class Pay:
    """Ask to spend and wait for the decision: `client.pay.request(...)`, `.wait_for_approval(id)`."""

    def __init__(self, client: AgentPay) -> None:
        self._client = client

    def request(
        self,
        *,
        amount: int,
        purpose: str,
        merchant: str,
        context: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        currency: str = "usd",
    ) -> Transaction:
        """Request a payment of `amount` cents. Returns it approved, pending or (replayed) as it is now.

        Raises BudgetExceededError when the agent's policy declines it (`.code` names the rule; `.limit`,
        `.spent`, `.requested`, `.merchant` and `.transaction` say more), also when the call replays a payment
        the policy declined. Without `idempotency_key` one is derived from the parameters, so
        retrying the same call never pays twice.
        """
        request = self._client._config.payment_request(
            amount=amount,
            purpose=purpose,
            merchant=merchant,
            context=context,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
            currency=currency,
        )
        return _payment(self._client._transport.request(request))

    def wait_for_approval(
        self,
        transaction_id: str | Transaction,
        timeout: float = 600.0,
        poll_interval: float = 5.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Transaction:
        """Poll until the payment is `completed` and return it.

        `approved` is not final (the charge follows), so polling goes on. Raises PaymentDeclinedError
        when it ends declined or timed out, ApprovalTimeoutError when `timeout` seconds pass first.
        """
        tx_id = _transaction_id(transaction_id)
        deadline = clock() + timeout
        last: Transaction | None = None
        while True:
            last = self._client.transactions.retrieve(tx_id)
            if (done := _outcome(last)) is not None:
                return done
            remaining = deadline - clock()
            if remaining <= 0:
                raise _timed_out(tx_id, timeout, last)
            sleep(min(poll_interval, remaining))


class AgentPay:
    """Synchronous AgentPay client for an agent; use as a context manager or call close()."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        max_retries: int = 3,
        timeout: float = 10.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._config = _ClientConfig(api_key, base_url, max_retries, timeout)
        self._transport = _http.SyncTransport(
            api_key=self._config.api_key,
            http=http_client or httpx.Client(timeout=timeout),
            max_retries=max_retries,
        )
        self.pay = Pay(self)
        self.transactions = Transactions(self)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def close(self) -> None:
        """Close the underlying HTTP connections."""
        self._transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- async ---------------------------------------------------------------------------------------------------
class AsyncTransactions:
    """Read transactions: `await client.transactions.retrieve(id)`."""

    def __init__(self, client: AsyncAgentPay) -> None:
        self._client = client

    async def retrieve(self, transaction_id: str) -> Transaction:
        """The agent's own transaction as it is now; NotFoundError for anything else."""
        request = self._client._config.retrieve_request(transaction_id)
        return _transaction(await self._client._transport.request(request))


class AsyncPay:
    """Async twin of Pay: `await client.pay.request(...)`, `await client.pay.wait_for_approval(id)`."""

    def __init__(self, client: AsyncAgentPay) -> None:
        self._client = client

    async def request(
        self,
        *,
        amount: int,
        purpose: str,
        merchant: str,
        context: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        currency: str = "usd",
    ) -> Transaction:
        """Request a payment of `amount` cents; see Pay.request."""
        request = self._client._config.payment_request(
            amount=amount,
            purpose=purpose,
            merchant=merchant,
            context=context,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
            currency=currency,
        )
        return _payment(await self._client._transport.request(request))

    async def wait_for_approval(
        self,
        transaction_id: str | Transaction,
        timeout: float = 600.0,
        poll_interval: float = 5.0,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Transaction:
        """Poll until the payment is `completed`; see Pay.wait_for_approval."""
        tx_id = _transaction_id(transaction_id)
        deadline = clock() + timeout
        last: Transaction | None = None
        while True:
            last = await self._client.transactions.retrieve(tx_id)
            if (done := _outcome(last)) is not None:
                return done
            remaining = deadline - clock()
            if remaining <= 0:
                raise _timed_out(tx_id, timeout, last)
            await sleep(min(poll_interval, remaining))


class AsyncAgentPay:
    """Asynchronous AgentPay client; use `async with` or `await close()`."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        max_retries: int = 3,
        timeout: float = 10.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._config = _ClientConfig(api_key, base_url, max_retries, timeout)
        self._transport = _http.AsyncTransport(
            api_key=self._config.api_key,
            http=http_client or httpx.AsyncClient(timeout=timeout),
            max_retries=max_retries,
        )
        self.pay = AsyncPay(self)
        self.transactions = AsyncTransactions(self)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    async def close(self) -> None:
        """Close the underlying HTTP connections."""
        await self._transport.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
