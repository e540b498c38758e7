"""Failed authentications are throttled per client address and per key prefix, across processes; valid keys never.

The pen test sent 6,000 bad agent keys and 500 bad dashboard logins: no 429, no delay, no log line."""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Agent, ServerProcess, make_agent, make_org, signed_post
from tests.integration.test_dashboard_api import csrf_of
from tests.support.signing import encode, signed_headers

PAY = "/v1/payment-request"
PER_ADDRESS = 20  # failures an address may make in a minute before it gets 429s
PER_KEY = 10  # failures against one key prefix in a minute, from anywhere


def random_agent_key() -> str:
    return "apk_test_" + secrets.token_hex(32)


def bad_payment(client: Any, key: str | None = None) -> Any:
    body = encode({"amount": 100, "merchant": "m", "purpose": "p", "idempotency_key": uuid.uuid4().hex})
    return client.post(PAY, content=body, headers=signed_headers(key or random_agent_key(), "POST", PAY, body))


def client_at(app: Any, address: str) -> TestClient:
    return TestClient(app, raise_server_exceptions=False, client=(address, 40000))


def test_an_address_that_keeps_failing_gets_429_with_retry_after_and_is_logged_once(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    keys = [random_agent_key() for _ in range(PER_ADDRESS + 5)]
    with client_at(app, "198.51.100.7") as client, caplog.at_level(logging.INFO):
        answers = [bad_payment(client, key) for key in keys]
    codes = [(r.status_code, r.json()["error"]["code"]) for r in answers]
    assert codes[:PER_ADDRESS] == [(401, "invalid_api_key")] * PER_ADDRESS
    assert codes[PER_ADDRESS:] == [(429, "rate_limited")] * 5
    throttled = answers[-1]
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert "failed" in throttled.json()["error"]["message"].lower()
    lines = [r for r in caplog.records if r.name == "agentpay.auth"]
    failures = [r for r in lines if r.getMessage() == "authentication failed"]
    trips = [r for r in lines if r.getMessage() == "authentication throttled"]
    assert len(failures) == PER_ADDRESS and len(trips) == 1, [r.getMessage() for r in lines]
    assert trips[0].fields["address"] == "198.51.100.7"  # type: ignore[attr-defined]
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in lines)
    assert not any(key in logged for key in keys), "a key was logged (only its public prefix may be)"


def test_a_valid_key_from_a_throttled_address_is_never_refused(app: Any, services: Any) -> None:
    with client_at(app, "198.51.100.8") as client:
        org = make_org(client)
        agent = make_agent(client, org)
        for _ in range(PER_ADDRESS + 1):
            bad_payment(client)
        assert bad_payment(client).status_code == 429
        paid = signed_post(
            client, agent.api_key, PAY, {"amount": 100, "merchant": "m", "purpose": "p", "idempotency_key": "ok-1"}
        )
        assert paid.status_code == 201, paid.text
        assert client.get("/v1/dashboard/agents", headers=org.admin_headers).status_code == 200
        # A bad dashboard key from the same address is throttled as well: one count per address, whatever the route.
        refused = client.get("/v1/dashboard/agents", headers={"Authorization": "Bearer apa_test_" + "0" * 64})
        assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")


def test_other_addresses_are_not_throttled_by_one_that_fails(app: Any) -> None:
    with client_at(app, "198.51.100.9") as noisy, client_at(app, "198.51.100.10") as quiet:
        for _ in range(PER_ADDRESS + 1):
            bad_payment(noisy)
        assert bad_payment(noisy).status_code == 429
        assert (bad_payment(quiet).status_code, bad_payment(quiet).json()["error"]["code"]) == (401, "invalid_api_key")


def test_one_key_attacked_from_many_addresses_is_throttled_by_its_prefix(app: Any, agent: Agent) -> None:
    """A real key with wrong signatures from ever new addresses: the key's prefix is what they share."""
    answers = []
    for i in range(PER_KEY + 3):
        with client_at(app, f"203.0.113.{i + 1}") as client:
            body = encode({"amount": 100, "merchant": "m", "purpose": "p", "idempotency_key": uuid.uuid4().hex})
            headers = {**signed_headers(agent.api_key, "POST", PAY, body), "AgentPay-Signature": "v1=" + "0" * 64}
            answers.append(client.post(PAY, content=body, headers=headers))
    codes = [(r.status_code, r.json()["error"]["code"]) for r in answers]
    assert codes[:PER_KEY] == [(401, "invalid_signature")] * PER_KEY
    assert codes[PER_KEY:] == [(429, "rate_limited")] * 3
    with client_at(app, "203.0.113.200") as client:  # the agent itself, signing correctly, is not slowed
        paid = signed_post(
            client, agent.api_key, PAY, {"amount": 100, "merchant": "m", "purpose": "p", "idempotency_key": "x"}
        )
    assert paid.status_code == 201, paid.text


def test_bad_dashboard_logins_are_throttled_too(app: Any) -> None:
    with client_at(app, "198.51.100.11") as client:
        statuses = []
        for _ in range(PER_ADDRESS + 2):
            page = client.get("/dashboard/login")
            response = client.post(
                "/dashboard/login",
                data={"csrf_token": csrf_of(page.text), "admin_key": "apa_test_" + secrets.token_hex(32)},
            )
            statuses.append(response.status_code)
        assert statuses[:PER_ADDRESS] == [401] * PER_ADDRESS
        assert statuses[PER_ADDRESS:] == [429, 429]
        assert "Too many failed" in response.text and response.headers["retry-after"]


def test_the_count_holds_across_server_processes(live_servers: list[ServerProcess]) -> None:
    """Two processes (two Lambda containers) share the count through Redis: alternating between them helps nothing."""
    answers = []
    for i in range(PER_ADDRESS + 2):
        server = live_servers[i % 2]
        answers.append(bad_payment(httpx.Client(base_url=server.base_url)))
    assert [r.status_code for r in answers] == [401] * PER_ADDRESS + [429, 429]
