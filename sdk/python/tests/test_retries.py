"""Network failures and 5xx are retried with backoff, re-signed, with the same idempotency key; 4xx never."""

from __future__ import annotations

import itertools
import json
import re
import socket
import time

import httpx
import pytest
from conftest import API_KEY
from fake_agentpay import Canned, FakeAgentPay, error_body

import agentpay_spend
from agentpay_spend import _http

UNAVAILABLE = Canned(503, error_body("unavailable", "budget_unavailable", "Try again."), {"Retry-After": "2"})


def test_503_503_201_gives_one_result_with_one_key_and_fresh_timestamps(
    client: agentpay_spend.AgentPay,
    fake: FakeAgentPay,
    backoffs: list[tuple[int, float | None]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start = int(time.time())
    ticks = itertools.count(start)
    monkeypatch.setattr(_http, "_timestamp", lambda: str(next(ticks)))
    fake.script += [UNAVAILABLE, UNAVAILABLE]

    tx = client.pay.request(amount=700, purpose="p", merchant="m")

    assert tx.status == "approved"
    assert len(fake.requests) == 3
    assert all(r.signature_ok for r in fake.requests)
    keys = {r.headers["idempotency-key"] for r in fake.requests}
    assert keys == {json.loads(fake.requests[0].body)["idempotency_key"]} == {tx.idempotency_key}
    assert [r.headers["agentpay-timestamp"] for r in fake.requests] == [str(start + i) for i in range(3)]
    assert backoffs == [(0, 2.0), (1, 2.0)]  # Retry-After honoured on 503


@pytest.mark.parametrize("status", [500, 502, 504])
def test_other_5xx_are_retried_with_jitter(
    client: agentpay_spend.AgentPay, fake: FakeAgentPay, backoffs: list[tuple[int, float | None]], status: int
) -> None:
    fake.script.append(Canned(status, error_body("api_error", "internal_error", "Oops.")))

    client.pay.request(amount=1, purpose="p", merchant="m")

    assert len(fake.requests) == 2
    assert backoffs == [(0, None)]


def test_retries_stop_after_max_retries(
    client: agentpay_spend.AgentPay, fake: FakeAgentPay, backoffs: list[tuple[int, float | None]]
) -> None:
    fake.script += [UNAVAILABLE] * 10

    with pytest.raises(agentpay_spend.APIError) as info:
        client.pay.request(amount=1, purpose="p", merchant="m")

    assert len(fake.requests) == 4  # the first try and max_retries=3 more
    assert (info.value.http_status, info.value.code, info.value.request_id) == (
        503,
        "budget_unavailable",
        "req_test",
    )


def test_max_retries_zero_means_one_try(fake: FakeAgentPay, backoffs: list[tuple[int, float | None]]) -> None:
    fake.script += [UNAVAILABLE]
    with (
        agentpay_spend.AgentPay(API_KEY, fake.url, max_retries=0) as client,
        pytest.raises(agentpay_spend.APIError),
    ):
        client.pay.request(amount=1, purpose="p", merchant="m")
    assert len(fake.requests) == 1 and backoffs == []


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid_token"),
        (401, "invalid_signature"),
        (402, "daily_limit_exceeded"),
        (403, "agent_blocked"),
        (404, "not_found"),
        (409, "request_in_progress"),
        (413, "payload_too_large"),
        (422, "validation_error"),
        (429, "rate_limited"),
    ],
)
def test_4xx_is_never_retried(
    client: agentpay_spend.AgentPay,
    fake: FakeAgentPay,
    backoffs: list[tuple[int, float | None]],
    status: int,
    code: str,
) -> None:
    fake.script.append(Canned(status, error_body("x", code, "No."), {"Retry-After": "1"}))

    with pytest.raises(agentpay_spend.AgentPayError):
        client.pay.request(amount=1, purpose="p", merchant="m")

    assert len(fake.requests) == 1
    assert backoffs == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_network_failure_is_retried_then_raised(backoffs: list[tuple[int, float | None]]) -> None:
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    with (
        agentpay_spend.AgentPay(API_KEY, unreachable) as client,
        pytest.raises(agentpay_spend.APIConnectionError) as info,
    ):
        client.transactions.retrieve("7b0f0d52-3a51-4c43-9d67-0c1f4b7f9a10")
    assert isinstance(info.value, agentpay_spend.APIError)
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert backoffs == [(0, None), (1, None), (2, None)]
    url = f"{unreachable}/v1/transactions/7b0f0d52-3a51-4c43-9d67-0c1f4b7f9a10"
    assert re.fullmatch(
        rf"Could not reach AgentPay at {re.escape(url)} after 4 attempts: ConnectError: .+", str(info.value)
    )


@pytest.mark.parametrize(("max_retries", "attempts"), [(0, "1 attempt"), (2, "3 attempts")])
def test_a_connection_failure_names_the_url_and_the_attempts(
    backoffs: list[tuple[int, float | None]], max_retries: int, attempts: str
) -> None:
    unreachable = f"http://127.0.0.1:{_closed_port()}"
    with (
        agentpay_spend.AgentPay(API_KEY, unreachable, max_retries=max_retries) as client,
        pytest.raises(agentpay_spend.APIConnectionError) as info,
    ):
        client.pay.request(amount=500, purpose="p", merchant="m")
    assert str(info.value).startswith(
        f"Could not reach AgentPay at {unreachable}/v1/payment-request after {attempts}: "
    )


def test_should_retry_decision() -> None:
    def answer(status: int) -> httpx.Response:
        return httpx.Response(status)

    assert _http._should_retry(attempt=0, max_retries=3, response=None)
    assert _http._should_retry(attempt=2, max_retries=3, response=answer(503))
    assert _http._should_retry(attempt=0, max_retries=3, response=answer(500))
    assert not _http._should_retry(attempt=3, max_retries=3, response=answer(503))
    assert not _http._should_retry(attempt=3, max_retries=3, response=None)
    for status in (200, 201, 202, 400, 402, 404, 409, 429):
        assert not _http._should_retry(attempt=0, max_retries=3, response=answer(status))


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    for attempt, ceiling in [(0, 0.25), (1, 0.5), (2, 1.0), (5, 8.0), (20, 8.0)]:
        delays = [_http._backoff_delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the whole range, not a fixed step
    assert _http._backoff_delay(0, 2.0) == 2.0
    assert _http._backoff_delay(0, 3600.0) == _http.RETRY_AFTER_CAP


def test_retry_after_only_read_from_503() -> None:
    assert _http._retry_delay(0, httpx.Response(500, headers={"Retry-After": "30"})) <= 0.25
    assert _http._retry_delay(0, httpx.Response(503, headers={"Retry-After": "7"})) == 7.0
