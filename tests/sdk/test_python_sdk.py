"""The Python SDK against a real local server (uvicorn, job dispatcher, PostgreSQL, Valkey, localstripe)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import agentpay_spend
import httpx
import pytest

from tests.conftest import Agent, ServerProcess, signed_post
from tests.sdk.conftest import Approver, FlakyProxy, policy, put_policy, transaction_rows

WRONG_KEY = "apk_test_" + "0" * 64


class Answers:
    """Records each HTTP answer the SDK got (status, replay header), to check the wire-level outcome."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str | None]] = []

    def __call__(self, response: httpx.Response) -> None:
        self.seen.append((response.status_code, response.headers.get("idempotent-replayed")))


@pytest.fixture()
def agent(new_agent: Any) -> Agent:
    agent: Agent = new_agent()  # daily 5000, per transaction 2000, approval threshold 1000
    return agent


@pytest.fixture()
def answers() -> Answers:
    return Answers()


@pytest.fixture()
def client(sdk_server: ServerProcess, agent: Agent, answers: Answers) -> Iterator[agentpay_spend.AgentPay]:
    http = httpx.Client(timeout=10, event_hooks={"response": [answers]})
    with agentpay_spend.AgentPay(api_key=agent.api_key, base_url=sdk_server.base_url, http_client=http) as c:
        yield c


def purchase(**overrides: Any) -> dict[str, Any]:
    """A purchase no earlier run made, so the derived key never replays an old transaction."""
    params: dict[str, Any] = {
        "amount": 100,
        "purpose": "Search API credits",
        "merchant": "sdk-python.example",
        "context": {"run": uuid.uuid4().hex},
    }
    return {**params, **overrides}


def test_a_small_payment_is_approved_then_charged(client: agentpay_spend.AgentPay, answers: Answers) -> None:
    tx = client.pay.request(**purchase(amount=125))

    assert answers.seen[-1][0] == 201
    assert (tx.status, tx.decision_reason, tx.amount) == ("approved", "auto_approved", 125)
    done = client.pay.wait_for_approval(tx.id, timeout=60, poll_interval=0.2)
    assert done.id == tx.id and done.status == "completed"
    assert done.stripe_charge_id is not None and done.stripe_charge_id.startswith("pi_")
    assert done.completed_at is not None


def test_a_replay_with_the_derived_key_returns_the_same_transaction(
    client: agentpay_spend.AgentPay, answers: Answers, agent: Agent
) -> None:
    params = purchase(amount=150)
    first = client.pay.request(**params)
    again = client.pay.request(**params)

    assert again.id == first.id
    assert again.idempotency_key == first.idempotency_key == agentpay_spend.derive_idempotency_key(**params)
    assert answers.seen == [(201, None), (200, "true")]
    assert len(transaction_rows(agent.id, first.idempotency_key or "")) == 1


def test_over_the_per_transaction_limit_raises_budget_exceeded(client: agentpay_spend.AgentPay) -> None:
    with pytest.raises(agentpay_spend.BudgetExceededError) as info:
        client.pay.request(**purchase(amount=2001))

    exc = info.value
    assert (exc.http_status, exc.code, exc.type) == (402, "per_transaction_limit_exceeded", "budget")
    assert exc.request_id and "$20.00" in exc.message  # the limit, in dollars
    assert exc.transaction is not None
    assert (exc.transaction.status, exc.transaction.amount) == ("declined", 2001)


def test_over_the_daily_limit_raises_budget_exceeded_also_on_replay(sdk_server: ServerProcess, new_agent: Any) -> None:
    agent = new_agent(daily_limit=300, per_transaction_limit=200, approval_threshold=200)
    with agentpay_spend.AgentPay(api_key=agent.api_key, base_url=sdk_server.base_url) as client:
        assert client.pay.request(**purchase(amount=200)).status == "approved"
        over = purchase(amount=200)
        with pytest.raises(agentpay_spend.BudgetExceededError) as info:
            client.pay.request(**over)
        assert (info.value.http_status, info.value.code) == (402, "daily_limit_exceeded")
        assert info.value.transaction is not None and info.value.transaction.status == "declined"

        with pytest.raises(agentpay_spend.BudgetExceededError) as replay:
            client.pay.request(**over)
        assert (replay.value.http_status, replay.value.code) == (200, "daily_limit_exceeded")
        assert replay.value.transaction is not None
        assert replay.value.transaction.id == info.value.transaction.id


def test_a_policy_set_in_the_dashboard_declines_as_typed_errors_naming_the_rule(
    sdk_server: ServerProcess, new_agent: Any, admin_http: httpx.Client
) -> None:
    agent = new_agent()
    limits = {"per_transaction_limit": 200, "daily_limit": None, "weekly_limit": 300, "approval_threshold": 200}
    answer = put_policy(admin_http, agent, policy(limits=limits, block=["*.ads.example"]))
    assert answer["policy"]["limits"]["weekly_limit"] == 300 and answer["limits"]["daily_limit"] is None

    with agentpay_spend.AgentPay(api_key=agent.api_key, base_url=sdk_server.base_url) as client:
        assert client.pay.request(**purchase(amount=200)).status == "approved"
        over = purchase(amount=200)
        with pytest.raises(agentpay_spend.BudgetExceededError) as weekly:
            client.pay.request(**over)
        with pytest.raises(agentpay_spend.BudgetExceededError) as blocked:
            client.pay.request(**purchase(amount=50, merchant="Banners.Ads.Example"))
        with pytest.raises(agentpay_spend.BudgetExceededError) as replay:
            client.pay.request(**over)

    exc = weekly.value
    assert (exc.http_status, exc.type, exc.code) == (402, "budget", "weekly_limit_exceeded")
    assert (exc.limit, exc.spent, exc.requested, exc.merchant) == (300, 200, 200, None)
    assert not exc.is_merchant_rule and not exc.is_organization_limit
    assert exc.message == "Weekly limit of $3.00 would be exceeded ($2.00 already spent or held, $2.00 requested)."
    assert exc.transaction is not None
    assert (exc.transaction.status, exc.transaction.decision_reason) == ("declined", "weekly_limit_exceeded")

    exc = blocked.value
    assert (exc.http_status, exc.code) == (402, "merchant_blocked")
    assert (exc.limit, exc.spent, exc.requested, exc.merchant) == (None, None, 50, "banners.ads.example")
    assert exc.is_merchant_rule and "banners.ads.example" in exc.message
    assert exc.transaction is not None and exc.transaction.decision_reason == "merchant_blocked"

    assert (replay.value.http_status, replay.value.code) == (200, "weekly_limit_exceeded")
    assert replay.value.transaction is not None and replay.value.transaction.id == weekly.value.transaction.id


def test_a_pending_payment_outlasts_a_short_local_wait(client: agentpay_spend.AgentPay, answers: Answers) -> None:
    tx = client.pay.request(**purchase(amount=1500))
    assert answers.seen[-1][0] == 202
    assert (tx.status, tx.decision_reason) == ("pending", "approval_required")
    assert tx.approval_expires_at is not None

    with pytest.raises(agentpay_spend.ApprovalTimeoutError) as info:
        client.pay.wait_for_approval(tx, timeout=0.5, poll_interval=0.1)
    assert info.value.transaction is not None and info.value.transaction.status == "pending"
    assert client.transactions.retrieve(tx.id).status == "pending", "the local timeout changes nothing on the server"


def test_a_pending_payment_approved_by_email_link_completes(client: agentpay_spend.AgentPay, agent: Agent) -> None:
    tx = client.pay.request(**purchase(amount=1800))
    assert tx.status == "pending"

    with Approver(agent.id) as approver:
        done = client.pay.wait_for_approval(tx.id, timeout=60, poll_interval=0.2)

    assert approver.approved == [tx.id]
    assert (done.status, done.decision_reason) == ("completed", "approved_by_admin")
    assert done.stripe_charge_id is not None and done.stripe_charge_id.startswith("pi_")


def test_the_circuit_breaker_counts_every_payment_request_then_answers_429_once_then_403(
    sdk_server: ServerProcess, new_agent: Any, answers: Answers
) -> None:
    """What the SDK READMEs say counts toward max_requests_per_minute, and what the trip looks like."""
    agent = new_agent(max_requests_per_minute=3)  # per transaction limit 2000
    http = httpx.Client(timeout=10, event_hooks={"response": [answers]})
    with agentpay_spend.AgentPay(api_key=agent.api_key, base_url=sdk_server.base_url, http_client=http) as client:
        first = purchase(amount=10)
        tx = client.pay.request(**first)  # 1: approved
        client.pay.request(**first)  # 2: a replay counts too
        with pytest.raises(agentpay_spend.BudgetExceededError):
            client.pay.request(**purchase(amount=3000))  # 3: so does a decline
        for _ in range(3):
            client.transactions.retrieve(tx.id)  # reads never count
        with pytest.raises(agentpay_spend.InvalidRequestError):
            client.pay.request(**purchase(purpose=" "))  # nor does a request refused as invalid (422)

        with pytest.raises(agentpay_spend.RateLimitError) as info:
            client.pay.request(**purchase(amount=10))  # 4 in 60 s: the breaker trips
        assert (info.value.http_status, info.value.code) == (429, "rate_limited")
        assert [status for status, _ in answers.seen] == [201, 200, 402, 200, 200, 200, 422, 429], "not retried"
        # A trip without Retry-After is the blocked agent's: the error says only an admin can help.
        assert info.value.agent_blocked == ("retry-after" not in info.value.headers)

        with pytest.raises(agentpay_spend.AgentBlockedError) as blocked:
            client.pay.request(**purchase(amount=10))
        assert (blocked.value.http_status, blocked.value.code) == (403, "agent_blocked")


@pytest.mark.parametrize("amount", [5.0, 12.5, "500"], ids=repr)
def test_a_non_integer_amount_is_refused_before_sending_in_the_servers_own_words(
    client: agentpay_spend.AgentPay, answers: Answers, admin_http: httpx.Client, agent: Agent, amount: Any
) -> None:
    with pytest.raises(agentpay_spend.InvalidRequestError) as info:
        client.pay.request(**purchase(amount=amount))
    assert answers.seen == [], "nothing was sent"

    raw = {**purchase(amount=amount), "idempotency_key": uuid.uuid4().hex}
    server = signed_post(admin_http, agent.api_key, "/v1/payment-request", raw)
    assert server.status_code == 422
    assert info.value.errors == server.json()["error"]["errors"]
    assert info.value.message == "amount is an integer number of cents: 500 means $5.00"


def test_a_wrong_key_raises_authentication_error(sdk_server: ServerProcess) -> None:
    client = agentpay_spend.AgentPay(api_key=WRONG_KEY, base_url=sdk_server.base_url)
    with client, pytest.raises(agentpay_spend.AuthenticationError) as info:
        client.pay.request(**purchase())
    assert (info.value.http_status, info.value.code) == (401, "invalid_api_key")
    assert info.value.request_id


def test_retries_through_two_503s_make_exactly_one_transaction(flaky_proxy: FlakyProxy, agent: Agent) -> None:
    params = purchase(amount=175)
    with agentpay_spend.AgentPay(api_key=agent.api_key, base_url=flaky_proxy.base_url, max_retries=3) as client:
        tx = client.pay.request(**params)
        assert client.transactions.retrieve(tx.id).id == tx.id

    # The first 503 never reached the server; the second did, and only its answer was lost; the third is a replay.
    assert flaky_proxy.payment_requests == [503, 503, 200]
    assert tx.status in ("approved", "completed") and tx.amount == 175
    rows = transaction_rows(agent.id, agentpay_spend.derive_idempotency_key(**params))
    assert [row["id"] for row in rows] == [uuid.UUID(tx.id)]


def test_without_retries_the_503_reaches_the_caller(flaky_proxy: FlakyProxy, agent: Agent) -> None:
    client = agentpay_spend.AgentPay(api_key=agent.api_key, base_url=flaky_proxy.base_url, max_retries=0)
    with client, pytest.raises(agentpay_spend.APIError) as info:
        client.pay.request(**purchase())
    assert (info.value.http_status, info.value.code) == (503, "upstream_unavailable")


def test_the_async_client_pays_and_reads_back(sdk_server: ServerProcess, agent: Agent) -> None:
    async def main() -> tuple[agentpay_spend.Transaction, agentpay_spend.Transaction]:
        async with agentpay_spend.AsyncAgentPay(api_key=agent.api_key, base_url=sdk_server.base_url) as client:
            tx = await client.pay.request(**purchase(amount=90))
            return tx, await client.pay.wait_for_approval(tx.id, timeout=60, poll_interval=0.2)

    tx, done = asyncio.run(main())
    assert tx.status == "approved" and done.status == "completed" and done.id == tx.id
