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
AgentPay lets you spend money within the budget your organization set. Amounts are integer cents \
(1250 = $12.50).
request_payment answers with a transaction whose status is approved (the charge follows at once), pending \
(a human must approve by email; call wait_for_approval), or an error (declined by a limit, blocked, ...). \
A payment is done only when its status is completed. If a call fails with a network error or a 5xx error, \
call it again with the SAME idempotency_key it returned: a new key could pay twice."""

STATUSES = """\
Status: `approved` = within budget, the charge is being made (not final yet); `pending` = a human must \
approve it by email before approval_expires_at (call wait_for_approval); `completed` = paid, \
stripe_charge_id is set (final); `declined` = refused by a limit, an admin or the card (final, \
decision_reason says why); `timed_out` = nobody approved in time (final)."""

RETRY_RULE = """\
Idempotency: the result always includes the idempotency_key used. If the call fails with a network error \
or an error whose `retryable` is true (5xx, AgentPay unavailable), retry with exactly the same arguments \
AND that same idempotency_key, never a new one, or the payment may happen twice. Do not retry 4xx errors \
unchanged."""

REQUEST_PAYMENT = f"""\
Ask AgentPay to pay `amount` (integer cents, 1250 = $12.50, USD) to `merchant` for `purpose`.
Small amounts are approved at once; amounts above the approval threshold wait for a human; amounts over \
the per-transaction or daily limit are declined with an error (code per_transaction_limit_exceeded or \
daily_limit_exceeded). {STATUSES}
{RETRY_RULE}
Without idempotency_key one is derived from amount, merchant, purpose and context, so two calls with \
identical arguments are the SAME payment; for two genuinely separate identical purchases pass distinct \
keys (e.g. an order id)."""

GET_TRANSACTION = f"""\
Read one of your AgentPay transactions by id (as returned by request_payment), as it is now. {STATUSES}"""

WAIT_FOR_APPROVAL = f"""\
Wait (polling) until a payment is final. Returns the transaction once `completed` (paid). Errors: \
`approval_wait_timeout` (retryable: still pending or approved after timeout_seconds; call again later, \
nothing was lost), or the payment's decision_reason when it ended declined or timed_out \
(declined_by_admin, approval_timed_out, charge_failed, ...). {STATUSES}"""


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
