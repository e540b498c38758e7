"""Recorded API Gateway HTTP API (payload 2.0) events replayed through the real Mangum handlers and services."""

from __future__ import annotations

import base64
import importlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.signing import signed_headers

EVENTS = Path(__file__).resolve().parent.parent / "events"

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class FakeLambdaContext:
    """The attributes of the context object AWS passes to a Python handler."""

    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = "4a9a1b62-6c2c-4a43-9a8f-2f1a1b2c3d4e"
    log_group_name: str = "/aws/lambda/agentpay"
    log_stream_name: str = "2026/03/12/[$LATEST]0123456789abcdef"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 15_000


def load_event(name: str, **values: str) -> dict[str, Any]:
    """A recorded event with each {{PLACEHOLDER}} replaced by values[PLACEHOLDER]."""
    text = (EVENTS / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, f"{name} has a placeholder left: pass it to load_event"
    return json.loads(text)


def handler_of(function: str) -> Handler:
    # Imported here, not at module level: the app reads its settings when it is built.
    return importlib.import_module(f"functions.{function}.app").handler


def invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
    response = handler_of(function)(event, FakeLambdaContext(function_name=f"agentpay-{function}"))
    assert set(response) >= {"statusCode", "headers", "body", "isBase64Encoded"}, response
    return response


def json_body(response: dict[str, Any]) -> dict[str, Any]:
    body = response["body"]
    if response["isBase64Encoded"]:
        body = base64.b64decode(body).decode()
    assert response["headers"]["content-type"].startswith("application/json")
    return json.loads(body)


def error_of(response: dict[str, Any]) -> dict[str, Any]:
    body = json_body(response)
    assert set(body) == {"error"}, body
    assert body["error"]["request_id"] == response["headers"]["x-request-id"]
    return body["error"]


def transaction_event(transaction_id: str, *, api_key: str | None) -> dict[str, Any]:
    path = f"/v1/transactions/{transaction_id}"
    if api_key is None:
        event = load_event(
            "transactions_get.json",
            TRANSACTION_ID=transaction_id,
            AUTHORIZATION="",
            AGENTPAY_TIMESTAMP="",
            AGENTPAY_SIGNATURE="",
        )
        for name in ("authorization", "agentpay-timestamp", "agentpay-signature"):
            del event["headers"][name]
        return event
    headers = signed_headers(api_key, "GET", path)
    return load_event(
        "transactions_get.json",
        TRANSACTION_ID=transaction_id,
        AUTHORIZATION=headers["Authorization"],
        AGENTPAY_TIMESTAMP=headers["AgentPay-Timestamp"],
        AGENTPAY_SIGNATURE=headers["AgentPay-Signature"],
    )


@pytest.fixture(scope="module")
def keys(services: Any) -> dict[str, str]:
    """An organization and an agent created through the dashboard function's handler itself."""
    org = invoke("dashboard", load_event("orgs_create.json"))
    assert org["statusCode"] == 201, org["body"]
    admin_key = json_body(org)["admin_key"]
    created = invoke("dashboard", load_event("dashboard_agents_create.json", AUTHORIZATION=f"Bearer {admin_key}"))
    assert created["statusCode"] == 201, created["body"]
    return {"admin_key": admin_key, "agent_key": json_body(created)["api_key"]}


def test_healthz_answers_ok(services: Any) -> None:
    response = invoke("dashboard", load_event("healthz.json"))
    assert response["statusCode"] == 200
    assert json_body(response)["status"] == "ok"
    assert response["headers"]["x-request-id"].startswith("req_")


def test_signup_answers_201_with_an_admin_key(services: Any) -> None:
    response = invoke("dashboard", load_event("orgs_create.json"))
    assert response["statusCode"] == 201, response["body"]
    body = json_body(response)
    assert body["admin_key"].startswith("apa_test_")
    assert body["organization"]["name"] == "Lambda Replay Org"
    assert body["organization"]["timezone"] == "Europe/Berlin"


def test_base64_encoded_body_is_decoded(services: Any) -> None:
    event = load_event("orgs_create_base64.json")
    assert event["isBase64Encoded"] is True
    response = invoke("dashboard", event)
    assert response["statusCode"] == 201, response["body"]
    body = json_body(response)
    assert body["admin_key"].startswith("apa_test_")
    assert body["organization"]["name"] == "Lambda Replay Org (base64)"


def test_admin_creates_an_agent_with_a_test_key(keys: dict[str, str]) -> None:
    assert keys["agent_key"].startswith("apk_test_")


def test_agent_creation_without_the_admin_key_is_401(services: Any) -> None:
    event = load_event("dashboard_agents_create.json", AUTHORIZATION="")
    del event["headers"]["authorization"]
    response = invoke("dashboard", event)
    assert response["statusCode"] == 401
    assert error_of(response)["type"] == "authentication"


def test_signed_poll_of_an_unknown_transaction_is_404(keys: dict[str, str]) -> None:
    response = invoke("transactions", transaction_event(str(uuid.uuid4()), api_key=keys["agent_key"]))
    assert response["statusCode"] == 404, response["body"]
    error = error_of(response)
    assert (error["type"], error["code"]) == ("not_found", "not_found")


def test_unsigned_poll_is_401_invalid_signature(keys: dict[str, str]) -> None:
    event = transaction_event(str(uuid.uuid4()), api_key=None)
    event["headers"]["authorization"] = f"Bearer {keys['agent_key']}"
    event["headers"]["agentpay-timestamp"] = str(int(time.time()))
    response = invoke("transactions", event)
    assert response["statusCode"] == 401
    assert error_of(response)["code"] == "invalid_signature"


def test_poll_signed_for_another_path_is_401_invalid_signature(keys: dict[str, str]) -> None:
    event = transaction_event(str(uuid.uuid4()), api_key=keys["agent_key"])
    other = transaction_event(str(uuid.uuid4()), api_key=keys["agent_key"])
    event["headers"]["agentpay-signature"] = other["headers"]["agentpay-signature"]
    response = invoke("transactions", event)
    assert response["statusCode"] == 401
    assert error_of(response)["code"] == "invalid_signature"


def test_stale_timestamp_is_401_timestamp_out_of_range(keys: dict[str, str]) -> None:
    transaction_id = str(uuid.uuid4())
    path = f"/v1/transactions/{transaction_id}"
    headers = signed_headers(keys["agent_key"], "GET", path, timestamp=int(time.time()) - 3600)
    event = load_event(
        "transactions_get.json",
        TRANSACTION_ID=transaction_id,
        AUTHORIZATION=headers["Authorization"],
        AGENTPAY_TIMESTAMP=headers["AgentPay-Timestamp"],
        AGENTPAY_SIGNATURE=headers["AgentPay-Signature"],
    )
    response = invoke("transactions", event)
    assert response["statusCode"] == 401
    assert error_of(response)["code"] == "timestamp_out_of_range"


def test_unknown_route_is_404_in_the_error_shape(services: Any) -> None:
    response = invoke("dashboard", load_event("unknown_route.json"))
    assert response["statusCode"] == 404
    assert error_of(response)["code"] == "not_found"


def _json_string(value: str) -> str:
    """`value` as it must sit inside a JSON string of an event file."""
    return json.dumps(value)[1:-1]


def test_a_signed_payment_request_through_the_handler_is_approved(keys: dict[str, str]) -> None:
    body = json.dumps(
        {"amount": 250, "merchant": "api.example.com", "purpose": "lambda test", "idempotency_key": uuid.uuid4().hex},
        separators=(",", ":"),
    )
    headers = signed_headers(keys["agent_key"], "POST", "/v1/payment-request", body.encode())
    event = load_event(
        "payment_request_post.json",
        BODY=_json_string(body),
        CONTENT_LENGTH=str(len(body)),
        AUTHORIZATION=headers["Authorization"],
        AGENTPAY_TIMESTAMP=headers["AgentPay-Timestamp"],
        AGENTPAY_SIGNATURE=headers["AgentPay-Signature"],
    )
    response = invoke("payment_request", event)
    assert response["statusCode"] == 201, response["body"]
    assert json_body(response)["status"] == "approved"
    keys["approved_transaction"] = json_body(response)["id"]


def test_the_charge_worker_runs_a_job_delivered_to_its_function_url(keys: dict[str, str]) -> None:
    from shared.config import get_settings
    from shared.jobs import outbox as jobs

    if "approved_transaction" not in keys:
        test_a_signed_payment_request_through_the_handler_is_approved(keys)
    body = json.dumps({"transaction_id": keys["approved_transaction"]}, separators=(",", ":"))
    template = load_event("charge_job_function_url.json", BODY="", CONTENT_LENGTH="0", UPSTASH_SIGNATURE="")
    url = f"https://{template['headers']['host']}/v1/jobs/charge"
    signature = jobs.sign_like_qstash(
        url=url, body=body.encode(), signing_key=get_settings().require("qstash_current_signing_key")
    )
    event = load_event(
        "charge_job_function_url.json",
        BODY=_json_string(body),
        CONTENT_LENGTH=str(len(body)),
        UPSTASH_SIGNATURE=signature,
    )
    response = invoke("charge_worker", event)
    assert response["statusCode"] == 200, response["body"]
    assert json_body(response) == {"outcome": "completed"}
    signed_for_elsewhere = jobs.sign_like_qstash(
        url="https://elsewhere.example.com/v1/jobs/charge",
        body=body.encode(),
        signing_key=get_settings().require("qstash_current_signing_key"),
    )
    event["headers"]["upstash-signature"] = signed_for_elsewhere
    assert invoke("charge_worker", event)["statusCode"] == 401


def test_the_approve_link_through_the_handler_shows_a_page_and_changes_nothing(keys: dict[str, str]) -> None:
    from datetime import UTC, datetime, timedelta

    from shared.approvals import tokens
    from shared.config import get_settings

    body = json.dumps(
        {
            "amount": 1500,
            "merchant": "api.example.com",
            "purpose": "needs approval",
            "idempotency_key": uuid.uuid4().hex,
        },
        separators=(",", ":"),
    )
    headers = signed_headers(keys["agent_key"], "POST", "/v1/payment-request", body.encode())
    pending = invoke(
        "payment_request",
        load_event(
            "payment_request_post.json",
            BODY=_json_string(body),
            CONTENT_LENGTH=str(len(body)),
            AUTHORIZATION=headers["Authorization"],
            AGENTPAY_TIMESTAMP=headers["AgentPay-Timestamp"],
            AGENTPAY_SIGNATURE=headers["AgentPay-Signature"],
        ),
    )
    assert pending["statusCode"] == 202, pending["body"]
    tx_id = json_body(pending)["id"]
    token = tokens.issue_token(
        transaction_id=tx_id,
        action="approve",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        secret=get_settings().require("approval_jwt_secret"),
    )
    page = invoke("approve", load_event("approve_get.json", TOKEN=token))
    assert page["statusCode"] == 200
    assert page["headers"]["content-type"].startswith("text/html")
    assert "<form" in page["body"] and "$15.00" in page["body"]
    assert "default-src 'none'" in page["headers"]["content-security-policy"]
    from shared.platform import db

    with db.connection() as conn:
        row = conn.execute("SELECT status FROM transactions WHERE id = %s", (tx_id,)).fetchone()
    assert row is not None and row["status"] == "pending"


def test_the_scheduled_sweep_handler_reports_what_it_did(services: Any) -> None:
    from functions.expire_approvals.app import handler

    report = handler(load_event("schedule.json"), FakeLambdaContext(function_name="agentpay-expire_approvals"))
    assert set(report) >= {"timed_out", "charges_redriven", "jobs_republished", "holds_freed", "errors"}
    assert report["errors"] == []
