"""`agentpay-mcp` (the Python SDK's MCP server) driven by a real MCP client over stdio, against the real server."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import REPO, Agent, ServerProcess, _free_port
from tests.sdk.conftest import Approver, policy, put_policy

mcp = pytest.importorskip("mcp", reason="`agentpay-mcp` needs the mcp package")
from mcp import ClientSession, StdioServerParameters, stdio_client  # noqa: E402
from mcp.types import CallToolResult  # noqa: E402

TOOLS = {"request_payment", "get_transaction", "wait_for_approval"}


def _command() -> tuple[str, list[str]]:
    """The installed `agentpay-mcp` script next to this Python, as an MCP client config names it; else the module."""
    script = Path(sys.executable).parent / "agentpay-mcp"
    return (str(script), []) if script.exists() else (sys.executable, ["-m", "agentpay_spend.mcp"])


def with_session(api_key: str, base_url: str, body: Callable[[ClientSession], Awaitable[Any]]) -> Any:
    """Starts `agentpay-mcp` as a subprocess, opens a client session over its stdio and runs `body` in it."""
    command, args = _command()
    params = StdioServerParameters(
        command=command,
        args=args,
        cwd=str(REPO),
        env={"AGENTPAY_API_KEY": api_key, "AGENTPAY_BASE_URL": base_url},
    )

    async def main() -> Any:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await body(session)

    return anyio.run(main)


def data(result: Any) -> dict[str, Any]:
    """The tool's JSON: structured content, which must equal the text content a model reads."""
    assert isinstance(result, CallToolResult)
    assert json.loads(result.content[0].text) == result.structuredContent
    structured: dict[str, Any] = result.structuredContent
    return structured


@pytest.fixture()
def agent(new_agent: Any) -> Agent:
    agent: Agent = new_agent()  # daily 5000, per transaction 2000, approval threshold 1000
    return agent


def test_tools_are_listed_with_descriptions_a_model_can_follow(sdk_server: ServerProcess, agent: Agent) -> None:
    async def body(session: ClientSession) -> Any:
        return (await session.list_tools()).tools

    tools = {tool.name: tool for tool in with_session(agent.api_key, sdk_server.base_url, body)}

    assert set(tools) == TOOLS
    request = tools["request_payment"]
    assert request.description is not None
    text = request.description.lower()
    assert "idempotency_key" in text and "same idempotency_key" in text and "cents" in text
    for status in ("approved", "pending", "completed", "declined", "timed_out"):
        assert status in text
    assert set(request.inputSchema["required"]) == {"amount", "purpose", "merchant"}
    assert request.inputSchema["properties"]["amount"]["type"] == "integer"
    assert "completed" in (tools["wait_for_approval"].description or "")
    assert tools["get_transaction"].inputSchema["required"] == ["transaction_id"]


def test_the_description_says_what_each_decline_means_and_that_it_is_final() -> None:
    import agentpay_spend
    from agentpay_spend import mcp as agentpay_mcp

    assert list(agentpay_mcp.DECLINES) == list(agentpay_spend.BUDGET_DECLINE_REASONS), "every decline, in order"
    text = agentpay_mcp.REQUEST_PAYMENT
    for code, meaning in agentpay_mcp.DECLINES.items():
        assert f"- {code}: {meaning}." in text
    assert "exceed" in agentpay_mcp.DECLINES["weekly_limit_exceeded"]
    assert "Do NOT retry a declined payment with another idempotency_key" in text
    assert "do NOT split it into smaller payments" in text
    for reason in agentpay_spend.APPROVAL_REASONS:  # pending: people decide, the model waits
        assert reason in text
    assert "people decide, not you: call wait_for_approval and wait" in text
    assert "waits for people" in agentpay_mcp.WAIT_FOR_APPROVAL
    assert "never retry it with another idempotency_key or split it" in agentpay_mcp.INSTRUCTIONS


def test_request_payment_get_transaction_and_wait(sdk_server: ServerProcess, agent: Agent) -> None:
    run = uuid.uuid4().hex

    async def body(session: ClientSession) -> list[Any]:
        paid = await session.call_tool(
            "request_payment",
            {"amount": 150, "purpose": "Search API credits", "merchant": "mcp.example", "context": {"run": run}},
        )
        tx_id = data(paid)["id"]
        read = await session.call_tool("get_transaction", {"transaction_id": tx_id})
        done = await session.call_tool("wait_for_approval", {"transaction_id": tx_id, "timeout_seconds": 60})
        return [paid, read, done]

    paid, read, done = with_session(agent.api_key, sdk_server.base_url, body)

    assert not paid.isError
    tx = data(paid)
    assert (tx["status"], tx["decision_reason"], tx["amount"], tx["context"]) == (
        "approved",
        "auto_approved",
        150,
        {"run": run},
    )
    assert tx["idempotency_key"].startswith("ap_"), "the key the tool used comes back"
    assert data(read)["id"] == tx["id"]
    assert (data(done)["status"], data(done)["stripe_charge_id"][:3]) == ("completed", "pi_")


def test_errors_are_structured_with_the_api_code_and_the_key_to_retry_with(
    sdk_server: ServerProcess, agent: Agent
) -> None:
    async def body(session: ClientSession) -> list[Any]:
        over = await session.call_tool(
            "request_payment", {"amount": 2500, "purpose": "Too much", "merchant": "mcp.example"}
        )
        pending = await session.call_tool(
            "request_payment",
            {"amount": 1500, "purpose": "Needs a human", "merchant": "mcp.example", "idempotency_key": "order-7"},
        )
        wait = await session.call_tool(
            "wait_for_approval", {"transaction_id": data(pending)["id"], "timeout_seconds": 0.3}
        )
        missing = await session.call_tool("get_transaction", {"transaction_id": str(uuid.uuid4())})
        return [over, pending, wait, missing]

    over, pending, wait, missing = with_session(agent.api_key, sdk_server.base_url, body)

    assert over.isError
    error = data(over)["error"]
    assert (error["code"], error["http_status"], error["retryable"]) == ("per_transaction_limit_exceeded", 402, False)
    assert "$20.00" in error["message"] and error["request_id"]  # the limit, in dollars
    assert data(over)["transaction"]["status"] == "declined"
    assert data(over)["idempotency_key"].startswith("ap_")

    assert not pending.isError and data(pending)["status"] == "pending"
    assert data(pending)["idempotency_key"] == "order-7"
    assert wait.isError
    assert (data(wait)["error"]["code"], data(wait)["error"]["retryable"]) == ("approval_wait_timeout", True)
    assert data(wait)["transaction"]["status"] == "pending"
    assert missing.isError and data(missing)["error"]["code"] == "not_found"


def test_a_policy_decline_answers_its_code_message_and_figures(
    sdk_server: ServerProcess, agent: Agent, admin_http: httpx.Client
) -> None:
    limits = {"per_transaction_limit": 200, "daily_limit": None, "weekly_limit": 300, "approval_threshold": 200}
    put_policy(admin_http, agent, policy(limits=limits, block=["ads.example.com"]))
    run = uuid.uuid4().hex

    async def body(session: ClientSession) -> list[Any]:
        calls = [
            ("ok", 200, "mcp.example"),
            ("over the week", 200, "mcp.example"),
            ("banner ads", 50, "Ads.Example.com"),
        ]
        return [
            await session.call_tool(
                "request_payment", {"amount": amount, "purpose": f"{purpose} {run}", "merchant": merchant}
            )
            for purpose, amount, merchant in calls
        ]

    ok, weekly, blocked = with_session(agent.api_key, sdk_server.base_url, body)

    assert not ok.isError and data(ok)["status"] == "approved"
    assert weekly.isError and blocked.isError
    error = data(weekly)["error"]
    assert (error["type"], error["code"], error["http_status"], error["retryable"]) == (
        "budget",
        "weekly_limit_exceeded",
        402,
        False,
    )
    assert error["message"] == "Weekly limit of $3.00 would be exceeded ($2.00 already spent or held, $2.00 requested)."
    assert (error["limit"], error["spent"], error["requested"]) == (300, 200, 200) and "merchant" not in error
    assert "split it into smaller payments" in error["advice"]
    assert data(weekly)["transaction"]["decision_reason"] == "weekly_limit_exceeded"

    error = data(blocked)["error"]
    assert (error["code"], error["merchant"], error["requested"]) == ("merchant_blocked", "ads.example.com", 50)
    assert "ads.example.com" in error["message"] and "limit" not in error


def test_an_amount_in_dollars_is_refused_not_paid_as_cents(sdk_server: ServerProcess, agent: Agent) -> None:
    """A model thinking in dollars sends 5.0: paid as 5 cents it would be 1/100 of what it meant."""

    async def body(session: ClientSession) -> Any:
        return await session.call_tool(
            "request_payment", {"amount": 5.0, "purpose": "Dollars", "merchant": "mcp.example"}
        )

    refused = with_session(agent.api_key, sdk_server.base_url, body)
    assert refused.isError
    assert "integer number of cents: 500 means $5.00" in str(refused.content), refused.content


def test_an_approval_by_email_completes_the_wait(sdk_server: ServerProcess, agent: Agent) -> None:
    async def body(session: ClientSession) -> Any:
        pending = await session.call_tool(
            "request_payment", {"amount": 1200, "purpose": "Dataset licence", "merchant": "mcp.example"}
        )
        return await session.call_tool(
            "wait_for_approval", {"transaction_id": data(pending)["id"], "timeout_seconds": 60}
        )

    with Approver(agent.id) as approver:
        done = with_session(agent.api_key, sdk_server.base_url, body)
    assert not done.isError
    assert data(done)["id"] in approver.approved
    assert (data(done)["status"], data(done)["decision_reason"]) == ("completed", "approved_by_admin")


def test_an_unreachable_server_says_retry_with_the_same_key(agent: Agent) -> None:
    down = f"http://127.0.0.1:{_free_port()}"

    async def body(session: ClientSession) -> Any:
        return await session.call_tool(
            "request_payment", {"amount": 100, "purpose": "Anything", "merchant": "mcp.example"}
        )

    result = with_session(agent.api_key, down, body)
    assert result.isError
    error = data(result)["error"]
    assert (error["code"], error["retryable"]) == ("connection_error", True)
    assert data(result)["idempotency_key"].startswith("ap_")


def test_without_a_key_the_command_says_so() -> None:
    import os
    import subprocess

    command, args = _command()
    env = {k: v for k, v in os.environ.items() if k != "AGENTPAY_API_KEY"}
    result = subprocess.run([command, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "AGENTPAY_API_KEY" in result.stderr and result.stdout == ""
