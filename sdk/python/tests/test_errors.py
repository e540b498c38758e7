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
