"""openapi.json is the contract the SDKs and outside clients use: complete, and never stale."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devtools import openapi
from shared.policy.outcomes import DecisionReason
from tests.conftest import REPO

SPEC: dict[str, Any] = json.loads((REPO / "openapi.json").read_text())

API_MD_OPERATIONS = [
    ("post", "/v1/payment-request"),
    ("get", "/v1/transactions/{transaction_id}"),
    ("get", "/v1/approve/{token}"),
    ("post", "/v1/approve/{token}"),
    ("get", "/v1/decline/{token}"),
    ("post", "/v1/decline/{token}"),
    ("post", "/v1/orgs"),
    ("get", "/v1/dashboard/transactions"),
    ("get", "/v1/dashboard/agents"),
    ("post", "/v1/dashboard/agents"),
    ("put", "/v1/dashboard/agents/{agent_id}/limits"),
    ("post", "/v1/dashboard/agents/{agent_id}/unblock"),
    ("post", "/v1/dashboard/agents/{agent_id}/disable"),
    ("post", "/v1/dashboard/agents/{agent_id}/enable"),
    ("post", "/v1/dashboard/agents/{agent_id}/rotate-key"),
    ("post", "/v1/dashboard/transactions/{transaction_id}/approve"),
    ("post", "/v1/dashboard/transactions/{transaction_id}/decline"),
    ("get", "/v1/dashboard/audit-logs"),
    ("get", "/healthz"),
]


def test_committed_openapi_json_matches_the_app() -> None:
    assert openapi.main(["--check"]) == 0, "openapi.json is stale: run `make openapi` and commit it"


@pytest.mark.parametrize(("method", "path"), API_MD_OPERATIONS)
def test_every_operation_of_api_md_is_documented(method: str, path: str) -> None:
    operation = SPEC["paths"][path][method]
    for status, answer in operation["responses"].items():
        assert "X-Request-Id" in answer.get("headers", {}), (path, status)
        if status.startswith(("4", "5")) and path != "/healthz" and status != "402":
            assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody"), (path, status)


def test_payment_request_documents_every_answer_and_header() -> None:
    operation = SPEC["paths"]["/v1/payment-request"]["post"]
    assert set(operation["responses"]) >= {"200", "201", "202", "402", "401", "403", "409", "413", "422", "429", "503"}
    assert "Idempotent-Replayed" in operation["responses"]["200"]["headers"]
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers >= {"AgentPay-Timestamp", "AgentPay-Signature", "idempotency-key"}
    assert operation["security"] == [{"agentKey": []}]
    body = SPEC["components"]["schemas"]["PaymentRequestIn"]["properties"]
    assert body["amount"]["minimum"] == 1 and body["amount"]["maximum"] == 100_000_000


def test_transaction_schema_lists_every_status_and_reason() -> None:
    transaction = SPEC["components"]["schemas"]["Transaction"]["properties"]
    assert set(transaction["status"]["enum"]) == {"pending", "approved", "declined", "completed", "timed_out"}
    assert set(transaction["decision_reason"]["enum"]) == {reason.value for reason in DecisionReason}


def test_dashboard_operations_require_the_admin_key() -> None:
    for path, item in SPEC["paths"].items():
        if path.startswith("/v1/dashboard/"):
            for operation in item.values():
                assert operation["security"] == [{"adminKey": []}], path
