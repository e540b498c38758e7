"""A LangChain agent that pays through AgentPay: within its budget, with a human approving large amounts.

    pip install langchain langchain-openai ./sdk/python
    export AGENTPAY_API_KEY=apk_test_...            # the agent key (`make run` prints it; .agentpay/dev.json)
    export AGENTPAY_BASE_URL=http://127.0.0.1:8000  # the default
    export OPENAI_API_KEY=sk-...
    python examples/langchain_payment.py "Buy \\$12.50 of search API credits from api.example.com"

`request_payment` and `payment_status` are plain functions (the AgentPay part); `build_tools` applies LangChain's
`@tool` to them (as `tool(fn)`, so they stay importable without LangChain), which turns the signature and the
docstring into the tool's schema and description.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

import agentpay_spend

SYSTEM_PROMPT = """\
You buy things for the user with the request_payment tool. Amounts are integer cents (1250 = $12.50).
A payment is done only when its status is `completed`. `approved` means the charge is under way; `pending` means a
human must approve it by email: tell the user and check later with payment_status. If request_payment returns an
error with retry_with_same_idempotency_key = true, call it again with the same arguments and that idempotency_key;
never invent a new key for the same purchase, or it may be paid twice."""


@functools.cache
def client() -> agentpay_spend.AgentPay:
    """One client for the process; reads AGENTPAY_API_KEY and AGENTPAY_BASE_URL."""
    return agentpay_spend.AgentPay()


def _transaction(tx: agentpay_spend.Transaction) -> dict[str, Any]:
    return {
        "transaction_id": tx.id,
        "status": tx.status,
        "decision_reason": tx.decision_reason,
        "amount_cents": tx.amount,
        "merchant": tx.merchant,
        "idempotency_key": tx.idempotency_key,
        "approval_expires_at": tx.approval_expires_at.isoformat() if tx.approval_expires_at else None,
        "stripe_charge_id": tx.stripe_charge_id,
    }


def _error(exc: agentpay_spend.AgentPayError, idempotency_key: str | None = None) -> str:
    return json.dumps(
        {
            "error": {"code": exc.code, "message": exc.message, "request_id": exc.request_id},
            # Only an outage (5xx, network) is worth retrying, and only with the same key.
            "retry_with_same_idempotency_key": isinstance(exc, agentpay_spend.APIError),
            "idempotency_key": idempotency_key,
        }
    )


def request_payment(amount_cents: int, purpose: str, merchant: str, idempotency_key: str | None = None) -> str:
    """Pay a merchant through AgentPay, within the budget the user's organization set.

    Returns JSON with transaction_id, status (approved: being charged; pending: a human must approve it by email;
    completed: paid) and the idempotency_key used. When the organization's policy declines it, returns an error with
    its code (merchant_blocked, merchant_not_allowed, a limit's code such as daily_limit_exceeded or
    weekly_limit_exceeded, or payment_count_exceeded) and a message naming the rule: a decline is final, so do not
    retry it with another key, split it into smaller payments or route it to another merchant; tell the user.
    If the error says retry_with_same_idempotency_key,
    call again with the same arguments and that idempotency_key: a new key could pay twice.

    Args:
        amount_cents: The amount in integer cents: 1250 means $12.50.
        purpose: What is bought and why, for the human who may approve it.
        merchant: Who is paid, e.g. api.example.com.
        idempotency_key: Omit on a first call; when retrying a failed call, the key that call returned.
    """
    key = idempotency_key or agentpay_spend.derive_idempotency_key(
        amount=amount_cents, purpose=purpose, merchant=merchant
    )
    try:
        tx = client().pay.request(amount=amount_cents, purpose=purpose, merchant=merchant, idempotency_key=key)
    except agentpay_spend.AgentPayError as exc:
        return _error(exc, key)
    return json.dumps(_transaction(tx))


def payment_status(transaction_id: str) -> str:
    """Look up a payment made with request_payment, e.g. to see whether a pending one was approved.

    Args:
        transaction_id: The transaction_id request_payment returned.
    """
    try:
        return json.dumps(_transaction(client().transactions.retrieve(transaction_id)))
    except agentpay_spend.AgentPayError as exc:
        return _error(exc)


def build_tools() -> list[Any]:
    from langchain_core.tools import tool

    # parse_docstring: the Args section becomes each parameter's description in the tool's schema.
    return [tool(request_payment, parse_docstring=True), tool(payment_status, parse_docstring=True)]


def main(task: str) -> None:
    from langchain.agents import create_agent

    agent = create_agent(model="openai:gpt-4.1-mini", tools=build_tools(), system_prompt=SYSTEM_PROMPT)
    result = agent.invoke({"messages": [{"role": "user", "content": task}]})
    print(result["messages"][-1].content)


if __name__ == "__main__":
    main(" ".join(sys.argv[1:]) or "Buy $1.25 of weather API calls from weather.example for the forecast task.")
