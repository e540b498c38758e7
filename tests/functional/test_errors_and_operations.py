"""Every error in the API's one shape, request ids everywhere, the body limit, health, and Sentry on a crash."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from tests.conftest import Org


def test_unknown_route_is_404_in_the_error_shape(client: Any) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    body = response.json()
    assert body["error"]["type"] == "not_found" and body["error"]["code"] == "not_found"
    assert body["error"]["request_id"].startswith("req_")
    assert response.headers["x-request-id"] == body["error"]["request_id"]


def test_wrong_method_is_405_in_the_error_shape(client: Any) -> None:
    response = client.delete("/v1/orgs")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_every_response_has_a_distinct_request_id(client: Any) -> None:
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_signup_validation_names_each_field(client: Any) -> None:
    response = client.post("/v1/orgs", json={"name": "", "admin_email": "not-an-email"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    fields = {e["field"] for e in error["errors"]}
    assert fields == {"name", "admin_email"}


def test_malformed_json_is_422_not_500(client: Any) -> None:
    response = client.post("/v1/orgs", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


def test_unknown_timezone_is_422_on_timezone(client: Any) -> None:
    response = client.post("/v1/orgs", json={"name": "Acme", "admin_email": "a@b.co", "timezone": "Mars/Olympus"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["error"]["errors"]] == ["timezone"]


def test_body_over_64_kib_is_413(client: Any) -> None:
    response = client.post("/v1/orgs", content=b"x" * (64 * 1024 + 1), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_signup_returns_admin_key_and_organization(client: Any) -> None:
    response = client.post(
        "/v1/orgs", json={"name": "Acme", "admin_email": "finance@acme.example.com", "timezone": "Europe/Paris"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["organization"]["timezone"] == "Europe/Paris"
    assert body["organization"]["has_payment_method"] is True  # local mode attaches a test card
    assert body["admin_key"].startswith("apa_test_")


def test_create_agent_refuses_limits_out_of_order(client: Any, org: Org) -> None:
    response = client.post(
        "/v1/dashboard/agents",
        json={
            "name": "a",
            "limits": {"daily_limit": 100, "per_transaction_limit": 200, "approval_threshold": 300},
        },
        headers=org.admin_headers,
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["error"]["errors"]}
    assert fields == {"approval_threshold", "per_transaction_limit"}


def test_create_agent_returns_key_once_and_agent_object(client: Any, org: Org) -> None:
    response = client.post(
        "/v1/dashboard/agents",
        json={
            "name": "buyer",
            "limits": {"daily_limit": 5000, "per_transaction_limit": 2000, "approval_threshold": 0},
        },
        headers=org.admin_headers,
    )
    assert response.status_code == 201
    agent = response.json()["agent"]
    assert agent["object"] == "agent" and agent["is_active"] is True
    assert agent["limits"] == {
        "daily_limit": 5000,
        "per_transaction_limit": 2000,
        "approval_threshold": 0,
        "max_requests_per_minute": 20,
    }
    assert agent["spend_today"] == 0 and agent["remaining_today"] == 5000
    assert response.json()["api_key"].startswith(agent["key_prefix"])


def test_healthz_is_ok_when_database_and_redis_answer(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def _kill_other_backends() -> None:
    from shared.platform import db

    with db.connection() as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )


def _create_agent(client: Any, org: Org) -> int:
    return int(
        client.post(
            "/v1/dashboard/agents",
            json={"name": "x", "limits": {"daily_limit": 1, "per_transaction_limit": 1, "approval_threshold": 0}},
            headers=org.admin_headers,
        ).status_code
    )


def test_a_connection_dropped_while_idle_is_replaced_before_use(
    client: Any, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from shared.platform import db

    monkeypatch.setattr(db, "IDLE_CHECK_SECONDS", 0.2)
    _kill_other_backends()
    time.sleep(0.3)
    assert [_create_agent(client, org) for _ in range(3)] == [201, 201, 201]


def test_a_connection_dropped_while_busy_costs_at_most_one_503_then_recovers(client: Any, org: Org) -> None:
    _kill_other_backends()
    statuses = [_create_agent(client, org) for _ in range(4)]
    assert set(statuses) <= {201, 503} and statuses.count(503) <= 1
    assert statuses[-2:] == [201, 201]


def test_unhandled_error_reaches_sentry_and_client_gets_500_without_trace(services: Any) -> None:
    import sentry_sdk
    from sentry_sdk.transport import Transport

    from shared.http import app as web

    captured: list[Any] = []

    class CapturingTransport(Transport):
        def capture_envelope(self, envelope: Any) -> None:
            captured.append(envelope)

    router = APIRouter()

    @router.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret-db-password=hunter2 in a stack trace")

    web._sentry_started = False
    try:
        assert web.init_sentry("https://public@sentry.invalid/1", environment="test", transport=CapturingTransport)
        app = web.create_app(router)
        with TestClient(app, raise_server_exceptions=False) as test_client:
            response = test_client.get("/boom")
        sentry_sdk.flush()
    finally:
        sentry_sdk.get_client().close()
        web._sentry_started = False
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["type"] == "api_error" and body["error"]["request_id"] == response.headers["x-request-id"]
    assert "hunter2" not in response.text and "Traceback" not in response.text
    events = [item.payload.json for env in captured for item in env.items if item.type == "event"]
    assert len(events) == 1
    assert events[0]["exception"]["values"][-1]["type"] == "RuntimeError"


def test_dashboard_requires_an_admin_key(client: Any) -> None:
    response = client.post("/v1/dashboard/agents", json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"
    response = client.post("/v1/dashboard/agents", json={}, headers={"Authorization": f"Bearer apa_test_{'0' * 64}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_ids_are_uuids(client: Any, org: Org) -> None:
    uuid.UUID(org.id)


def test_log_lines_are_json_with_request_and_agent_ids(client: Any, org: Org) -> None:
    import io
    import json
    import logging

    from shared.platform.logs import JsonLogFormatter
    from tests.conftest import make_agent, signed_get

    agent = make_agent(client, org)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("agentpay")
    logger.addHandler(handler)
    try:
        response = signed_get(client, agent.api_key, f"/v1/transactions/{uuid.uuid4()}")
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    request_line = next(line for line in lines if line["message"] == "request")
    assert request_line["request_id"] == response.headers["x-request-id"]
    assert request_line["agent_id"] == agent.id
    assert request_line["status"] == 404 and request_line["path"].startswith("/v1/transactions/")
    assert agent.api_key not in stream.getvalue()
