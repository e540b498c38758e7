"""`amount` is integer cents: anything else is refused before a request is made, whatever it rounds to."""

from __future__ import annotations

import asyncio
import enum
import json
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from conftest import API_KEY
from fake_agentpay import FakeAgentPay

import agentpay_spend

IN_CENTS = "amount is an integer number of cents: 500 means $5.00"
NOT_CENTS = [5.0, 5.5, 1e3, float("nan"), True, False, "500", Decimal("5"), Decimal("5.00"), Fraction(5)]


@pytest.mark.parametrize("amount", NOT_CENTS, ids=repr)
def test_a_non_integer_amount_is_refused_before_any_request(
    client: agentpay_spend.AgentPay, fake: FakeAgentPay, amount: Any
) -> None:
    with pytest.raises(agentpay_spend.InvalidRequestError) as info:
        client.pay.request(amount=amount, purpose="Search API credits", merchant="api.example.com")

    assert info.value.message == IN_CENTS
    assert info.value.code == "validation_error"
    assert info.value.errors == [{"field": "amount", "message": IN_CENTS}]
    assert fake.requests == []


@pytest.mark.parametrize("amount", [5.0, "500"], ids=repr)
def test_the_async_client_refuses_it_too(fake: FakeAgentPay, amount: Any) -> None:
    async def scenario() -> None:
        async with agentpay_spend.AsyncAgentPay(API_KEY, fake.url) as client:
            await client.pay.request(amount=amount, purpose="p", merchant="m")

    with pytest.raises(agentpay_spend.InvalidRequestError) as info:
        asyncio.run(scenario())
    assert info.value.message == IN_CENTS
    assert fake.requests == []


class Price(enum.IntEnum):
    COFFEE = 450


class Cents:
    """An integer type that is not int (as numpy's are): it says so with __index__."""

    def __index__(self) -> int:
        return 450


@pytest.mark.parametrize("amount", [Price.COFFEE, Cents()], ids=["IntEnum", "__index__"])
def test_integer_types_are_sent_as_plain_integers(
    client: agentpay_spend.AgentPay, fake: FakeAgentPay, amount: Any
) -> None:
    tx = client.pay.request(amount=amount, purpose="Coffee", merchant="cafe.example")

    assert tx.amount == 450
    assert json.loads(fake.requests[0].body)["amount"] == 450
    assert tx.idempotency_key == agentpay_spend.derive_idempotency_key(
        amount=450, merchant="cafe.example", purpose="Coffee"
    )
