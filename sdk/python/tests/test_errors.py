"""Each error answer of the API maps to its class by status and code, carrying the API's data."""

from __future__ import annotations

import pytest
from conftest import API_KEY
from fake_agentpay import Canned, FakeAgentPay, error_body

import agentpay_spend
from agentpay_spend import _errors


@pytest.mark.parametrize(
    ("status", "type_", "code", "cls"),
    [
        (401, "authentication", "missing_api_key", agentpay_spend.AuthenticationError),
        (401, "authentication", "timestamp_out_of_range", agentpay_spend.AuthenticationError),
        (403, "permission", "agent_blocked", agentpay_spend.AgentBlockedError),
        (403, "permission", "agent_disabled", agentpay_spend.AgentBlockedError),
        (403, "permission", "signup_token_required", agentpay_spend.PermissionDeniedError),
        (404, "not_found", "not_found", agentpay_spend.NotFoundError),
        (409, "conflict", "idempotency_key_reused", agentpay_spend.IdempotencyError),
        (409, "conflict", "request_in_progress", agentpay_spend.IdempotencyError),
        (409, "conflict", "already_decided", agentpay_spend.ConflictError),
        (400, "invalid_request", "invalid_token", agentpay_spend.InvalidRequestError),
        (410, "gone", "link_expired", agentpay_spend.InvalidRequestError),
        (413, "invalid_request", "payload_too_large", agentpay_spend.InvalidRequestError),
        (422, "invalid_request", "unsupported_currency", agentpay_spend.InvalidRequestError),
        (503, "unavailable", "budget_unavailable", agentpay_spend.APIError),
        (500, "api_error", "internal_error", agentpay_spend.APIError),
    ],
)
def test_error_mapping(
    client: agentpay_spend.AgentPay,
    fake: FakeAgentPay,
    status: int,
    type_: str,
    code: str,
    cls: type[Exception],
) -> None:
    fake.script += [Canned(status, error_body(type_, code, "Told you so."))] * 4

    with pytest.raises(cls) as info:
        client.pay.request(amount=1, purpose="p", merchant="m")

    exc = info.value
    assert type(exc) is cls
    assert isinstance(exc, agentpay_spend.AgentPayError)
    assert (exc.http_status, exc.type, exc.code, exc.message, exc.request_id) == (
        status,
        type_,
        code,
        "Told you so.",
        "req_test",
    )
    assert exc.body == error_body(type_, code, "Told you so.")
    assert code in str(exc) and "req_test" in str(exc)


def test_budget_exceeded_carries_the_declined_transaction(client: agentpay_spend.AgentPay) -> None:
    with pytest.raises(agentpay_spend.BudgetExceededError) as info:
        client.pay.request(amount=50_000, purpose="too much", merchant="m")

    exc = info.value
    assert (exc.http_status, exc.type, exc.code) == (402, "budget", "per_transaction_limit_exceeded")
    assert "50000" in exc.message
    assert exc.transaction is not None
    assert (exc.transaction.status, exc.transaction.amount) == ("declined", 50_000)
    assert exc.transaction.decision_reason == "per_transaction_limit_exceeded"
    assert "error" in exc.transaction.extra  # the body's error key is kept, not a field
    assert (exc.limit, exc.spent, exc.requested, exc.merchant) == (10_000, None, 50_000, None)
    assert not exc.is_merchant_rule and not exc.is_organization_limit


def _declined(code: str, amount: int, **figures: object) -> Canned:
    """A 402 as the server answers it: the declined transaction with the budget error added."""
    tx = {
        "id": "7b0f0d52-3a51-4c43-9d67-0c1f4b7f9a10",
        "object": "transaction",
        "organization_id": "5a3f7c3e-8f0e-4a55-9a0c-2f1c8c1e1b11",
        "agent_id": "c4b2a9d1-0e6f-4f4e-8b9a-6d5e4c3b2a10",
        "amount": amount,
        "currency": "usd",
        "merchant": "API.Example.com",
        "purpose": "p",
        "context": {},
        "status": "declined",
        "decision_reason": code,
        "idempotency_key": "k-1",
        "stripe_charge_id": None,
        "approval_expires_at": None,
        "created_at": "2025-11-24T16:00:00+00:00",
        "completed_at": None,
    }
    return Canned(402, {**tx, **error_body("budget", code, "In words.", **figures)})


@pytest.mark.parametrize(
    ("code", "figures", "expected", "merchant_rule", "organization"),
    [
        (
            "weekly_limit_exceeded",
            {"limit": 50_000, "spent": 48_000, "requested": 2500},
            (50_000, 48_000, 2500, None),
            False,
            False,
        ),
        (
            "merchant_blocked",
            {"merchant": "api.example.com"},
            (None, None, 2500, "api.example.com"),
            True,
            False,
        ),
        (
            "merchant_not_allowed",
            {"merchant": "api.example.com"},
            (None, None, 2500, "api.example.com"),
            True,
            False,
        ),
        (
            "merchant_daily_limit_exceeded",
            {"limit": 5000, "spent": 4000, "requested": 2500},
            (5000, 4000, 2500, None),
            True,
            False,
        ),
        (
            "organization_monthly_limit_exceeded",
            {"limit": 900_000, "spent": 899_000, "requested": 2500},
            (900_000, 899_000, 2500, None),
            False,
            True,
        ),
        # Counted in payments, not cents: 100 made today, the limit is 100.
        (
            "payment_count_exceeded",
            {"limit": 100, "spent": 100, "requested": 2500},
            (100, 100, 2500, None),
            False,
            False,
        ),
        # A figure of the wrong type is not passed on as a number.
        (
            "daily_limit_exceeded",
            {"limit": True, "spent": "12", "requested": 2500},
            (None, None, 2500, None),
            False,
            False,
        ),
    ],
)
def test_a_policy_decline_carries_its_rule_and_figures(
    client: agentpay_spend.AgentPay,
    fake: FakeAgentPay,
    code: str,
    figures: dict[str, object],
    expected: tuple[object, ...],
    merchant_rule: bool,
    organization: bool,
) -> None:
    fake.script.append(_declined(code, 2500, **figures))

    with pytest.raises(agentpay_spend.BudgetExceededError) as info:
        client.pay.request(amount=2500, purpose="p", merchant="API.Example.com")

    exc = info.value
    assert (exc.http_status, exc.type, exc.code, exc.message) == (402, "budget", code, "In words.")
    assert (exc.limit, exc.spent, exc.requested, exc.merchant) == expected
    assert (exc.is_merchant_rule, exc.is_organization_limit) == (merchant_rule, organization)
    assert exc.transaction is not None and exc.transaction.decision_reason == code


def test_every_budget_decline_reason_is_one_kind_or_another() -> None:
    reasons = set(agentpay_spend.BUDGET_DECLINE_REASONS)
    assert len(reasons) == 10 and reasons < set(agentpay_spend.DECISION_REASONS)
    assert set(agentpay_spend.APPROVAL_REASONS) < set(agentpay_spend.DECISION_REASONS) - reasons
    merchant = {r for r in reasons if agentpay_spend.BudgetExceededError("", code=r).is_merchant_rule}
    organization = {
        r for r in reasons if agentpay_spend.BudgetExceededError("", code=r).is_organization_limit
    }
    assert merchant == {"merchant_blocked", "merchant_not_allowed", "merchant_daily_limit_exceeded"}
    assert organization == {"organization_daily_limit_exceeded", "organization_monthly_limit_exceeded"}


def test_validation_error_lists_the_fields(client: agentpay_spend.AgentPay) -> None:
    with pytest.raises(agentpay_spend.InvalidRequestError) as info:
        client.pay.request(amount=0, purpose="p", merchant="m")

    assert info.value.http_status == 422
    assert info.value.code == "validation_error"
    assert info.value.errors == [{"field": "amount", "message": "must be an integer from 1 to 100000000"}]


def test_rate_limit_reads_retry_after(client: agentpay_spend.AgentPay, fake: FakeAgentPay) -> None:
    fake.script.append(
        Canned(429, error_body("rate_limit", "rate_limited", "Slow down."), {"Retry-After": "42"})
    )

    with pytest.raises(agentpay_spend.RateLimitError) as info:
        client.pay.request(amount=1, purpose="p", merchant="m")

    assert info.value.retry_after == 42.0
    assert info.value.headers["retry-after"] == "42"


# The server's message for a trip says who unblocks the agent and where; the SDK passes it on as it is.
BREAKER = (
    "This agent sent more than 2 payment requests in 60 s, so the circuit breaker blocked it."
    " Retrying will not help: an admin must unblock it in the dashboard (Agents, then Unblock)."
)


def test_a_429_without_retry_after_is_the_circuit_breaker_and_is_not_retried(
    client: agentpay_spend.AgentPay, fake: FakeAgentPay, backoffs: list[tuple[int, float | None]]
) -> None:
    fake.script += [Canned(429, error_body("rate_limit", "rate_limited", BREAKER))] * 2

    with pytest.raises(agentpay_spend.RateLimitError) as info:
        client.pay.request(amount=1, purpose="p", merchant="m")

    assert len(fake.requests) == 1 and backoffs == [], "a tripped breaker is never retried"
    assert (info.value.agent_blocked, info.value.retry_after, info.value.message) == (True, None, BREAKER)


def test_a_429_with_retry_after_is_a_throttle_that_ends(
    client: agentpay_spend.AgentPay, fake: FakeAgentPay
) -> None:
    message = "Too many failed authentications from this address or for this key; try again in 42 s."
    fake.script.append(Canned(429, error_body("rate_limit", "rate_limited", message), {"Retry-After": "42"}))

    with pytest.raises(agentpay_spend.RateLimitError) as info:
        client.pay.request(amount=1, purpose="p", merchant="m")

    assert (info.value.agent_blocked, info.value.retry_after, info.value.message) == (False, 42.0, message)


def test_non_json_error_is_an_api_error(client: agentpay_spend.AgentPay, fake: FakeAgentPay) -> None:
    fake.script += [Canned(502, b"<html>Bad Gateway</html>")] * 4

    with pytest.raises(agentpay_spend.APIError) as info:
        client.transactions.retrieve("x")

    assert info.value.http_status == 502
    assert info.value.code is None
    assert info.value.request_id == "req_test"  # from X-Request-Id when the body has none
    assert info.value.body == "<html>Bad Gateway</html>"


def test_unexpected_success_body_is_an_api_error(client: agentpay_spend.AgentPay, fake: FakeAgentPay) -> None:
    fake.script.append(Canned(200, {"id": "only-an-id"}))

    with pytest.raises(agentpay_spend.APIError, match="unexpected object"):
        client.transactions.retrieve("x")


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert _errors.parse_retry_after("3") == 3.0
    assert _errors.parse_retry_after(None) is None
    assert _errors.parse_retry_after("soon") is None
    assert _errors.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTPAY_API_KEY", raising=False)
    with pytest.raises(agentpay_spend.AuthenticationError, match="AGENTPAY_API_KEY"):
        agentpay_spend.AgentPay()
    with pytest.raises(agentpay_spend.AuthenticationError, match="AGENTPAY_API_KEY"):
        agentpay_spend.AsyncAgentPay()


def test_environment_supplies_key_and_base_url(monkeypatch: pytest.MonkeyPatch, fake: FakeAgentPay) -> None:
    monkeypatch.setenv("AGENTPAY_API_KEY", API_KEY)
    monkeypatch.setenv("AGENTPAY_BASE_URL", fake.url + "/")
    with agentpay_spend.AgentPay() as client:
        assert client.base_url == fake.url
        assert client.pay.request(amount=1, purpose="p", merchant="m").status == "approved"
    monkeypatch.delenv("AGENTPAY_BASE_URL")
    with agentpay_spend.AgentPay() as client:
        assert client.base_url == "http://127.0.0.1:8000"


def test_every_error_class_has_a_one_line_docstring() -> None:
    classes = [
        c
        for c in vars(agentpay_spend).values()
        if isinstance(c, type) and issubclass(c, agentpay_spend.AgentPayError)
    ]
    assert len(classes) == 15
    for cls in classes:
        assert cls.__doc__ and "\n" not in cls.__doc__.strip(), cls


def test_replay_of_a_budget_decline_raises_like_the_first_answer(client: agentpay_spend.AgentPay) -> None:
    with pytest.raises(agentpay_spend.BudgetExceededError) as first:
        client.pay.request(amount=50_000, purpose="too much", merchant="m")
    # The 402 was "lost"; the retry with the same derived key is answered 200 with the declined transaction.
    with pytest.raises(agentpay_spend.BudgetExceededError) as replay:
        client.pay.request(amount=50_000, purpose="too much", merchant="m")

    assert replay.value.http_status == 200
    assert replay.value.code == first.value.code == "per_transaction_limit_exceeded"
    assert replay.value.transaction is not None and first.value.transaction is not None
    assert replay.value.transaction.id == first.value.transaction.id
    # The replay's answer is the transaction alone: only the amount requested is known again.
    assert (replay.value.limit, replay.value.spent, replay.value.requested) == (None, None, 50_000)


def test_a_blocked_merchant_is_declined_with_the_merchant_as_compared(
    client: agentpay_spend.AgentPay,
) -> None:
    with pytest.raises(agentpay_spend.BudgetExceededError) as info:
        client.pay.request(amount=100, purpose="Banner ads", merchant="Ads.Example.com")

    exc = info.value
    assert (exc.code, exc.merchant, exc.limit, exc.requested) == (
        "merchant_blocked",
        "ads.example.com",
        None,
        100,
    )
    assert exc.is_merchant_rule
