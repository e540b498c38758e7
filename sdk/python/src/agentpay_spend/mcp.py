"""`agentpay-mcp`: AgentPay's payment tools for a model, served over MCP on stdio and built on this SDK.

Needs the `mcp` extra: `pip install 'agentpay-spend[mcp]'`."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime
from typing import Annotated, Any

import anyio
from mcp.server.fastmcp import FastMCP
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BeforeValidator, Field

import agentpay_spend

# A wait longer than this is split into several calls: MCP clients give up on a silent tool call eventually.
MAX_WAIT_SECONDS = 600
POLL_INTERVAL_SECONDS = 2.0

INSTRUCTIONS = """\
AgentPay lets you spend money within the spend policy your organization set. Amounts are integer cents \
(1250 = $12.50).
request_payment answers with a transaction whose status is approved (the charge follows at once), \
pending (people must approve it first: call wait_for_approval and wait for them), or an error. An error \
with type "budget" (HTTP 402) means the policy declined the payment: its code names the limit or rule \
and its message says it in words. A decline is final: never retry it with another idempotency_key or \
split it into smaller payments to get around a limit; tell the user which limit declined it. A payment \
is done only when its status is completed. If a call fails with a network error or a 5xx error, call it \
again with the SAME idempotency_key it returned: a new key could pay twice."""

# What each decline of the agent's policy means (tests/sdk/test_mcp.py checks every budget reason is here).
DECLINES = {
    "merchant_blocked": "the policy blocks this merchant",
    "merchant_not_allowed": "the merchant is not on the policy's list of allowed merchants",
    "per_transaction_limit_exceeded": "the amount exceeds the limit for a single payment",
    "merchant_daily_limit_exceeded": "the amount would exceed the merchant's daily cap (today's spend there)",
    "daily_limit_exceeded": "the amount would exceed the agent's daily limit (its spend today)",
    "weekly_limit_exceeded": "the amount would exceed the agent's weekly limit (its spend since Monday)",
    "monthly_limit_exceeded": "the amount would exceed the agent's monthly limit (its spend this month)",
    "organization_daily_limit_exceeded": (
        "the amount would exceed the organization's daily limit (all its agents' spend today together)"
    ),
    "organization_monthly_limit_exceeded": (
        "the amount would exceed the organization's monthly limit (all its agents' spend this month together)"
    ),
    "payment_count_exceeded": "one more payment would exceed the agent's limit of payments a day",
}

DECLINE_RULE = """\
A decline is final and deliberate: people set these limits. Do NOT retry a declined payment with another \
idempotency_key, do NOT split it into smaller payments, and do not pay through another merchant to get \
around a limit or rule. Tell the user which limit or rule declined it (quote the message); only a person \
can change the policy."""

STATUSES = """\
Status: `approved` = within the policy, the charge is being made (not final yet); `pending` = people \
must approve it before approval_expires_at (decision_reason approval_required: the amount is above the \
approval threshold; new_merchant_requires_approval: this agent never paid this merchant before); people \
decide, not you: call wait_for_approval and wait, never ask for the payment again; `completed` = paid, \
stripe_charge_id is set (final); `declined` = refused by the policy, an admin or the card (final, \
decision_reason says why); `timed_out` = nobody approved in time (final)."""

RETRY_RULE = """\
Idempotency: the result always includes the idempotency_key used. If the call fails with a network error \
or an error whose `retryable` is true (5xx, AgentPay unavailable), retry with exactly the same arguments \
AND that same idempotency_key, never a new one, or the payment may happen twice. Do not retry 4xx errors \
unchanged."""

_DECLINE_LIST = "\n".join(f"- {code}: {meaning}." for code, meaning in DECLINES.items())

REQUEST_PAYMENT = f"""\
Ask AgentPay to pay `amount` (integer cents, 1250 = $12.50, USD) to `merchant` for `purpose`.
The agent's spend policy decides: within every limit and rule the payment is approved, or pending when \
people must approve it first. Otherwise it is declined with an error (http_status 402, type "budget") \
whose `code` names the rule and whose `message` says it in words, with `limit`, `spent` (what the \
limit's window already spent or held) and `requested` in cents (for payment_count_exceeded, limit and \
spent count payments), or `merchant` for a merchant rule. The codes:
{_DECLINE_LIST}
{DECLINE_RULE}
{STATUSES}
{RETRY_RULE}
Without idempotency_key one is derived from amount, merchant, purpose and context, so two calls with \
identical arguments are the SAME payment; for two genuinely separate identical purchases pass distinct \
keys (e.g. an order id)."""

GET_TRANSACTION = f"""\
Read one of your AgentPay transactions by id (as returned by request_payment), as it is now. {STATUSES}"""

WAIT_FOR_APPROVAL = f"""\
Wait (polling) until a payment is final. A pending payment waits for people (an admin approves or declines \
it); waiting, and calling this again later, is all there is to do. Returns the transaction once `completed` \
(paid). Errors: `approval_wait_timeout` (retryable: still pending or approved after timeout_seconds; call \
again later, nothing was lost), or the payment's decision_reason when it ended declined or timed_out \
(declined_by_admin: people said no, do not ask again; approval_timed_out: nobody decided in time; \
charge_failed). {STATUSES}"""

# Added to a decline's answer, where a model reads it at the moment it matters.
DECLINE_ADVICE = (
    "Declined by the agent's spend policy (see code and message). Do not retry with another idempotency_key "
    "or split it into smaller payments; tell the user which limit declined it."
)


def transaction_json(transaction: agentpay_spend.Transaction) -> dict[str, Any]:
    """The transaction as the API sent it (datetimes back to ISO 8601, fields the SDK does not know kept)."""
    data: dict[str, Any] = {}
    for field in dataclasses.fields(transaction):
        if field.name == "extra" or (field.name == "shadow" and transaction.shadow is None):
            continue  # shadow: the dashboard's, never in the agent API's answers
        value = getattr(transaction, field.name)
        data[field.name] = value.isoformat() if isinstance(value, datetime) else value
    return {**data, **transaction.extra}


def _result(data: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(data))], structuredContent=data)


def _error(exc: agentpay_spend.AgentPayError, **details: Any) -> CallToolResult:
    """A tool error the model can act on: the API's code and message, and whether retrying can help."""
    retryable = isinstance(exc, agentpay_spend.APIError | agentpay_spend.ApprovalTimeoutError)
    error: dict[str, Any] = {
        "type": exc.type,
        "code": exc.code
        or ("connection_error" if isinstance(exc, agentpay_spend.APIConnectionError) else None),
        "message": exc.message,
        "http_status": exc.http_status,
        "request_id": exc.request_id,
        "retryable": retryable,
    }
    if isinstance(exc, agentpay_spend.RateLimitError):
        error["retry_after"] = exc.retry_after
    if isinstance(exc, agentpay_spend.InvalidRequestError) and exc.errors:
        error["errors"] = exc.errors
    if isinstance(exc, agentpay_spend.BudgetExceededError):
        error.update(limit=exc.limit, spent=exc.spent, requested=exc.requested, merchant=exc.merchant)
        error["advice"] = DECLINE_ADVICE
    transaction = getattr(exc, "transaction", None)
    if isinstance(transaction, agentpay_spend.Transaction):
        details["transaction"] = transaction_json(transaction)
    data = {"error": {k: v for k, v in error.items() if v is not None}, **details}
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(data))], structuredContent=data, isError=True
    )


def _whole_cents(value: Any) -> Any:
    """Refuse 5.0 before pydantic makes it 5: a model thinking in dollars would pay 1/100 of what it meant."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("amount is an integer number of cents: 500 means $5.00")
    return value


def build_server(
    client: agentpay_spend.AsyncAgentPay, *, poll_interval: float = POLL_INTERVAL_SECONDS
) -> FastMCP:
    """The MCP server with the three payment tools, all calling AgentPay through `client`."""
    server: FastMCP = FastMCP("agentpay", instructions=INSTRUCTIONS, log_level="WARNING")

    @server.tool(
        description=REQUEST_PAYMENT, annotations=ToolAnnotations(destructiveHint=True, idempotentHint=True)
    )
    async def request_payment(
        amount: Annotated[
            int,
            BeforeValidator(_whole_cents),
            Field(ge=1, le=100_000_000, description="Integer cents: 1250 means $12.50."),
        ],
        purpose: Annotated[str, Field(min_length=1, max_length=2000, description="What is bought and why.")],
        merchant: Annotated[
            str, Field(min_length=1, max_length=255, description="Who is paid, e.g. api.example.com.")
        ],
        context: Annotated[
            dict[str, Any] | None,
            Field(description="Optional JSON object kept with the payment (task id, ...)."),
        ] = None,
        idempotency_key: Annotated[
            str | None,
            Field(
                min_length=1,
                max_length=255,
                description="Reuse the key a failed call returned when retrying it; omit on a first call.",
            ),
        ] = None,
        callback_url: Annotated[
            str | None, Field(description="Optional https URL that receives the payment's decision webhooks.")
        ] = None,
    ) -> CallToolResult:
        key = idempotency_key or agentpay_spend.derive_idempotency_key(
            amount=amount, merchant=merchant, purpose=purpose, context=context or {}
        )
        try:
            transaction = await client.pay.request(
                amount=amount,
                purpose=purpose,
                merchant=merchant,
                context=context,
                idempotency_key=key,
                callback_url=callback_url,
            )
        except agentpay_spend.AgentPayError as exc:
            return _error(exc, idempotency_key=key)
        return _result(transaction_json(transaction))

    @server.tool(description=GET_TRANSACTION, annotations=ToolAnnotations(readOnlyHint=True))
    async def get_transaction(
        transaction_id: Annotated[str, Field(min_length=1, description="The transaction's id (a UUID).")],
    ) -> CallToolResult:
        try:
            return _result(transaction_json(await client.transactions.retrieve(transaction_id)))
        except agentpay_spend.AgentPayError as exc:
            return _error(exc)

    @server.tool(description=WAIT_FOR_APPROVAL, annotations=ToolAnnotations(readOnlyHint=True))
    async def wait_for_approval(
        transaction_id: Annotated[str, Field(min_length=1, description="The transaction's id (a UUID).")],
        timeout_seconds: Annotated[
            float, Field(ge=0, le=MAX_WAIT_SECONDS, description="How long to wait this time, in seconds.")
        ] = 60,
    ) -> CallToolResult:
        try:
            done = await client.pay.wait_for_approval(
                transaction_id, timeout=timeout_seconds, poll_interval=poll_interval
            )
        except agentpay_spend.AgentPayError as exc:
            return _error(exc)
        return _result(transaction_json(done))

    return server


async def _serve() -> None:
    async with agentpay_spend.AsyncAgentPay() as client:  # AGENTPAY_API_KEY, AGENTPAY_BASE_URL
        await build_server(client).run_stdio_async()


def serve_stdio() -> int:
    """Runs until the client closes stdin; stdout carries only MCP messages, so diagnostics go to stderr."""
    try:
        anyio.run(_serve)
    except agentpay_spend.AuthenticationError as exc:
        print(f"agentpay-mcp: {exc.message}", file=sys.stderr)
        return 2
    return 0


def main() -> None:
    """The `agentpay-mcp` console script (AGENTPAY_API_KEY, AGENTPAY_BASE_URL from the environment)."""
    sys.exit(serve_stdio())


if __name__ == "__main__":
    main()
