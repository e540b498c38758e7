"""Agent authentication as API.md describes it: bearer key, HMAC signature, timestamp window, disabled agents."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.conftest import Agent, make_agent, make_org, signed_get
from tests.support.signing import signed_headers


def _error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


def test_signed_request_for_unknown_transaction_is_404(client: Any, agent: Agent) -> None:
    response = signed_get(client, agent.api_key, f"/v1/transactions/{uuid.uuid4()}")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_malformed_transaction_id_is_404_not_422(client: Any, agent: Agent) -> None:
    response = signed_get(client, agent.api_key, "/v1/transactions/not-a-uuid")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_missing_key_is_401_missing_api_key(client: Any) -> None:
    response = client.get(f"/v1/transactions/{uuid.uuid4()}")
    assert response.status_code == 401
    assert _error(response)["code"] == "missing_api_key"


def test_unsigned_request_is_401_invalid_signature(client: Any, agent: Agent) -> None:
    headers = {"Authorization": f"Bearer {agent.api_key}", "AgentPay-Timestamp": str(int(time.time()))}
    response = client.get(f"/v1/transactions/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_signature"


def test_signature_for_another_path_is_rejected(client: Any, agent: Agent) -> None:
    signed_for = f"/v1/transactions/{uuid.uuid4()}"
    headers = signed_headers(agent.api_key, "GET", signed_for)
    response = client.get(f"/v1/transactions/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_signature"


def test_tampered_body_is_rejected(client: Any, agent: Agent) -> None:
    path = f"/v1/transactions/{uuid.uuid4()}"
    headers = signed_headers(agent.api_key, "GET", path, b"")
    response = client.request("GET", path, headers=headers, content=b'{"amount": 1}')
    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_signature"


def test_query_string_is_covered_by_the_signature(client: Any, agent: Agent) -> None:
    path = f"/v1/transactions/{uuid.uuid4()}"
    headers = signed_headers(agent.api_key, "GET", path + "?expand=a")
    assert client.get(path + "?expand=a", headers=headers).status_code == 404
    assert client.get(path + "?expand=b", headers=headers).status_code == 401


def test_hour_old_timestamp_is_401_timestamp_out_of_range(client: Any, agent: Agent) -> None:
    path = f"/v1/transactions/{uuid.uuid4()}"
    stale = int(time.time()) - 3600
    response = client.get(path, headers=signed_headers(agent.api_key, "GET", path, timestamp=stale))
    assert response.status_code == 401
    assert _error(response)["code"] == "timestamp_out_of_range"


def test_future_timestamp_is_rejected_too(client: Any, agent: Agent) -> None:
    path = f"/v1/transactions/{uuid.uuid4()}"
    future = int(time.time()) + 301 + 5
    response = client.get(path, headers=signed_headers(agent.api_key, "GET", path, timestamp=future))
    assert _error(response)["code"] == "timestamp_out_of_range"


def test_unknown_key_is_401_invalid_api_key(client: Any) -> None:
    unknown = "apk_test_" + "ab" * 32
    response = signed_get(client, unknown, f"/v1/transactions/{uuid.uuid4()}")
    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_api_key"


def test_admin_key_is_not_an_agent_key(client: Any, agent: Agent) -> None:
    response = signed_get(client, agent.org.admin_key, f"/v1/transactions/{uuid.uuid4()}")
    assert response.status_code == 401
    assert _error(response)["code"] == "invalid_api_key"


def test_agent_key_is_not_an_admin_key(client: Any, agent: Agent) -> None:
    response = client.post(
        "/v1/dashboard/agents",
        json={"name": "x", "limits": {"daily_limit": 1, "per_transaction_limit": 1, "approval_threshold": 0}},
        headers={"Authorization": f"Bearer {agent.api_key}"},
    )
    assert response.status_code == 401


def test_disabled_agent_is_403_agent_disabled(client: Any, agent: Agent) -> None:
    from shared.http import auth
    from shared.platform import db

    with db.connection() as conn:
        conn.execute("UPDATE agents SET is_active = false WHERE id = %s", (agent.id,))
    auth.agent_cache.clear()
    response = signed_get(client, agent.api_key, f"/v1/transactions/{uuid.uuid4()}")
    assert response.status_code == 403
    assert _error(response)["code"] == "agent_disabled"


@pytest.mark.parametrize("kind", ["apk", "apa"])
def test_keys_have_the_documented_format_and_only_hashes_are_stored(client: Any, kind: str) -> None:
    from shared.platform import db

    org = make_org(client)
    agent = make_agent(client, org)
    key = agent.api_key if kind == "apk" else org.admin_key
    prefix = f"{kind}_test_"
    assert key.startswith(prefix) and len(key) == len(prefix) + 64
    int(key[len(prefix) :], 16)
    with db.connection() as conn:
        dump = conn.execute(
            "SELECT (SELECT string_agg(o::text, '') FROM organizations o)"
            " || (SELECT string_agg(a::text, '') FROM agents a) AS everything"
        ).fetchone()
    assert dump is not None
    assert key not in dump["everything"]
    assert key[len(prefix) :] not in dump["everything"]


def test_one_organizations_agent_cannot_read_anothers_transaction(client: Any) -> None:
    from shared.platform import db

    first = make_agent(client, make_org(client))
    second = make_agent(client, make_org(client))
    tx_id = uuid.uuid4()
    with db.connection() as conn:
        conn.execute(
            """
            INSERT INTO transactions (id, agent_id, organization_id, amount_cents, currency, merchant, purpose,
                                      status, decision_reason, idempotency_key, request_hash, budget_day)
            VALUES (%s, %s, %s, 100, 'usd', 'm', 'p', 'declined', 'daily_limit_exceeded', 'k', 'h', CURRENT_DATE)
            """,
            (tx_id, first.id, first.org.id),
        )
    own = signed_get(client, first.api_key, f"/v1/transactions/{tx_id}")
    assert own.status_code == 200
    assert own.json()["id"] == str(tx_id) and own.json()["amount"] == 100
    other = signed_get(client, second.api_key, f"/v1/transactions/{tx_id}")
    assert other.status_code == 404


def test_an_organization_key_used_as_an_agent_key_says_which_key_agents_use(client: Any, agent: Agent) -> None:
    """A newcomer who pastes the admin key into an agent got "The API key is not valid." and no idea why."""
    path = f"/v1/transactions/{uuid.uuid4()}"
    response = client.get(path, headers=signed_headers(agent.org.admin_key, "GET", path))
    error = _error(response)
    assert (response.status_code, error["code"]) == (401, "invalid_api_key")
    assert "organization" in error["message"] and "apk_" in error["message"]
    assert agent.org.admin_key not in response.text


def test_an_agent_key_used_on_the_dashboard_api_says_which_key_it_takes(client: Any, agent: Agent) -> None:
    response = client.get("/v1/dashboard/agents", headers={"Authorization": f"Bearer {agent.api_key}"})
    error = _error(response)
    assert (response.status_code, error["code"]) == (401, "invalid_api_key")
    assert "agent key" in error["message"] and "apa_" in error["message"]
