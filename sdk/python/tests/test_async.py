"""AsyncAgentPay behaves exactly like AgentPay: signing, replay, errors, retries, waiting."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import time

import pytest
from conftest import API_KEY
from fake_agentpay import Canned, FakeAgentPay, error_body

import agentpay_spend
from agentpay_spend import _http


def test_same_public_surface() -> None:
    for sync_obj, async_obj in [
        (agentpay_spend.AgentPay, agentpay_spend.AsyncAgentPay),
        (agentpay_spend._client.Pay, agentpay_spend._client.AsyncPay),
        (agentpay_spend._client.Transactions, agentpay_spend._client.AsyncTransactions),
    ]:
        public = {n for n in dir(sync_obj) if not n.startswith("_")}
        assert public == {n for n in dir(async_obj) if not n.startswith("_")}
        for name in public:
            sync_attr, async_attr = getattr(sync_obj, name), getattr(async_obj, name)
            if inspect.isfunction(sync_attr):
                assert inspect.iscoroutinefunction(async_attr), name
                assert list(inspect.signature(sync_attr).parameters) == list(
                    inspect.signature(async_attr).parameters
                ), name


def test_request_replay_and_wait(fake: FakeAgentPay, backoffs: list[tuple[int, float | None]]) -> None:
    async def scenario() -> None:
        async with agentpay_spend.AsyncAgentPay(API_KEY, fake.url) as client:
            tx = await client.pay.request(amount=2500, purpose="p", merchant="m", context={"n": 1})
            again = await client.pay.request(amount=2500, purpose="p", merchant="m", context={"n": 1.0})
            assert again.id == tx.id and tx.status == "pending"

            async def no_sleep(seconds: float) -> None:
                pass

            done = await client.pay.wait_for_approval(tx.id, sleep=no_sleep)
            assert done.status == "completed"
            assert (await client.transactions.retrieve(tx.id)).status == "completed"

    asyncio.run(scenario())
    assert all(r.signature_ok for r in fake.requests)


def test_retry_then_success(
    fake: FakeAgentPay, backoffs: list[tuple[int, float | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = itertools.count(int(time.time()))
    monkeypatch.setattr(_http, "_timestamp", lambda: str(next(ticks)))
    unavailable = Canned(503, error_body("unavailable", "budget_unavailable", "Later."), {"Retry-After": "1"})
    fake.script += [unavailable, unavailable]

    async def scenario() -> agentpay_spend.Transaction:
        async with agentpay_spend.AsyncAgentPay(API_KEY, fake.url) as client:
            return await client.pay.request(amount=10, purpose="p", merchant="m")

    tx = asyncio.run(scenario())
    assert tx.status == "approved"
    assert len(fake.requests) == 3
    assert len({r.headers["idempotency-key"] for r in fake.requests}) == 1
    assert len({r.headers["agentpay-timestamp"] for r in fake.requests}) == 3
    assert {json.loads(r.body)["idempotency_key"] for r in fake.requests} == {tx.idempotency_key}
    assert backoffs == [(0, 1.0), (1, 1.0)]


def test_errors_and_no_retry_on_4xx(fake: FakeAgentPay, backoffs: list[tuple[int, float | None]]) -> None:
    async def scenario() -> None:
        async with agentpay_spend.AsyncAgentPay(API_KEY, fake.url) as client:
            with pytest.raises(agentpay_spend.BudgetExceededError) as info:
                await client.pay.request(amount=20_000, purpose="p", merchant="m")
            assert info.value.transaction is not None
            assert info.value.transaction.status == "declined"

            fake.script.append(Canned(403, error_body("permission", "agent_blocked", "Blocked.")))
            with pytest.raises(agentpay_spend.AgentBlockedError):
                await client.pay.request(amount=1, purpose="p", merchant="m")

            tx = await client.pay.request(amount=2000, purpose="p", merchant="m")
            fake.outcome[tx.id] = "declined"
            with pytest.raises(agentpay_spend.PaymentDeclinedError) as declined:
                await client.pay.wait_for_approval(tx.id, sleep=asyncio.sleep, poll_interval=0.0)
            assert declined.value.reason == "declined_by_admin"

    asyncio.run(scenario())
    assert backoffs == []


def test_async_local_timeout(fake: FakeAgentPay) -> None:
    async def scenario() -> None:
        async with agentpay_spend.AsyncAgentPay(API_KEY, fake.url) as client:
            tx = await client.pay.request(amount=2000, purpose="p", merchant="m")
            fake.outcome[tx.id] = "never"
            with pytest.raises(agentpay_spend.ApprovalTimeoutError):
                await client.pay.wait_for_approval(tx.id, timeout=0.05, poll_interval=0.01)

    asyncio.run(scenario())
