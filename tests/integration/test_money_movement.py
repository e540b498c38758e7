"""Approvals and charges against real PostgreSQL, Valkey and localstripe, with real signed JWTs and job signatures."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Agent, make_agent, make_org, signed_get, signed_post
from tests.support.jobs import deliver_pending, post_job, signed_job_headers
from tests.support.loops import run_in_own_loop

PATH = "/v1/payment-request"


def pay(client: Any, agent: Agent, amount: int, **fields: Any) -> Any:
    payload = {"amount": amount, "merchant": "api.example.com", "purpose": "tokens", **fields}
    payload.setdefault("idempotency_key", uuid.uuid4().hex)
    return signed_post(client, agent.api_key, PATH, payload)


def transaction(client: Any, agent: Agent, tx_id: str) -> dict[str, Any]:
    response = signed_get(client, agent.api_key, f"/v1/transactions/{tx_id}")
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def stripe_intents_for(services: Any, tx_id: str) -> list[dict[str, Any]]:
    """Every PaymentIntent localstripe holds for the transaction (by our metadata)."""
    found, starting_after = [], None
    while True:
        params = {"limit": 100, **({"starting_after": starting_after} if starting_after else {})}
        page = httpx.get(
            services.stripe_api_base + "/v1/payment_intents",
            params=params,
            headers={"Authorization": "Bearer sk_test_agentpay_local"},
        ).json()
        found += [pi for pi in page["data"] if (pi.get("metadata") or {}).get("transaction_id") == tx_id]
        if not page.get("has_more"):
            return found
        starting_after = page["data"][-1]["id"]


def spent(agent: Agent) -> int:
    from shared.budget import engine as budget
    from shared.platform.clock import clock

    return budget.get_engine().spent(
        uuid.UUID(agent.org.body["organization"]["id"]), uuid.UUID(agent.id), budget.budget_day("UTC", clock.now())
    )


def outbox_email(tx_id: str) -> dict[str, Any]:
    from shared.config import get_settings
    from shared.notify.email import outbox_file_name

    path = Path(get_settings().outbox_dir) / outbox_file_name(f"approval-{tx_id}")
    result: dict[str, Any] = json.loads(path.read_text())
    return result


def links(tx_id: str) -> tuple[str, str]:
    text = outbox_email(tx_id)["text"]
    approve = next(line for line in text.splitlines() if "/v1/approve/" in line)
    decline = next(line for line in text.splitlines() if "/v1/decline/" in line)
    assert approve == approve.strip() and approve.startswith("http"), "each URL stands alone on its line"
    return approve, decline


def local_path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def audit_actions(tx_id: str) -> list[str]:
    from shared.platform import db

    with db.connection() as conn:
        rows = conn.execute(
            "SELECT action FROM audit_logs WHERE transaction_id = %s ORDER BY created_at", (tx_id,)
        ).fetchall()
    return [r["action"] for r in rows]


# The full loop, in-process ------------------------------------------------------------------------------------
def test_small_amount_is_charged_and_completed(client: Any, agent: Agent, services: Any) -> None:
    tx = pay(client, agent, 500).json()
    assert tx["status"] == "approved"
    assert [r.status_code for r in deliver_pending(client, tx["id"])] == [200]
    done = transaction(client, agent, tx["id"])
    assert done["status"] == "completed" and done["stripe_charge_id"].startswith("pi_")
    assert done["completed_at"] is not None
    (intent,) = stripe_intents_for(services, tx["id"])
    assert intent["id"] == done["stripe_charge_id"] and intent["status"] == "succeeded"
    assert intent["amount"] == 500 and intent["metadata"]["agent_id"] == agent.id
    assert audit_actions(tx["id"]) == ["payment.approved", "payment.completed"]
    assert spent(agent) == 500, "a completed charge keeps its cents spent"


def test_large_amount_goes_through_email_page_and_approval(client: Any, agent: Agent, services: Any) -> None:
    tx = pay(client, agent, 1500, context={"invoice": "INV-7", "seats": 3}).json()
    assert tx["status"] == "pending"
    deliver_pending(client, tx["id"])
    mail = outbox_email(tx["id"])
    assert set(mail) == {"to", "subject", "text", "html"} and mail["to"] == "admin@example.com"
    assert "$15.00" in mail["subject"] and "INV-7" in mail["text"]
    approve_url, _ = links(tx["id"])

    page = client.get(local_path(approve_url))
    assert page.status_code == 200 and "<form" in page.text and "$15.00" in page.text
    assert transaction(client, agent, tx["id"])["status"] == "pending", "a GET (a mail scanner) changes nothing"

    result = client.post(local_path(approve_url))
    assert result.status_code == 200 and "approved" in result.text.lower()
    assert transaction(client, agent, tx["id"])["status"] == "approved"
    deliver_pending(client, tx["id"])
    done = transaction(client, agent, tx["id"])
    assert done["status"] == "completed" and done["decision_reason"] == "approved_by_admin"
    assert len(stripe_intents_for(services, tx["id"])) == 1
    assert audit_actions(tx["id"]) == ["payment.pending_approval", "payment.approved", "payment.completed"]


def test_decline_link_frees_the_hold_once_and_records_the_reason(client: Any, agent: Agent) -> None:
    from shared.platform import db

    tx = pay(client, agent, 1500).json()
    deliver_pending(client, tx["id"])
    _, decline_url = links(tx["id"])
    assert spent(agent) == 1500
    first = client.post(local_path(decline_url), data={"reason": "Not in this quarter's budget"})
    again = client.post(local_path(decline_url), data={"reason": "twice"})
    assert first.status_code == 200 and again.status_code == 200 and "Already declined" in again.text
    assert spent(agent) == 0
    done = transaction(client, agent, tx["id"])
    assert done["status"] == "declined" and done["decision_reason"] == "declined_by_admin"
    with db.connection() as conn:
        row = conn.execute(
            "SELECT details FROM audit_logs WHERE transaction_id = %s AND action = 'payment.declined'", (tx["id"],)
        ).fetchone()
    assert row is not None and row["details"]["reason"] == "Not in this quarter's budget"


def test_json_answers_and_the_opposite_decision_is_409(client: Any, agent: Agent) -> None:
    tx = pay(client, agent, 1500).json()
    deliver_pending(client, tx["id"])
    approve_url, decline_url = links(tx["id"])
    accept = {"Accept": "application/json"}
    approved = client.post(local_path(approve_url), headers=accept)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    repeated = client.post(local_path(approve_url), headers=accept)
    assert repeated.status_code == 200 and repeated.json()["id"] == tx["id"]
    opposite = client.post(local_path(decline_url), headers=accept)
    assert opposite.status_code == 409 and opposite.json()["error"]["code"] == "already_decided"


# Tokens -------------------------------------------------------------------------------------------------------
def _token_for(tx_id: str, action: str, *, secret: str | None = None, **overrides: Any) -> str:
    import time

    import jwt

    from shared.config import get_settings

    claims = {
        "iss": "agentpay",
        "aud": "agentpay-approval",
        "sub": tx_id,
        "act": action,
        "exp": int(time.time()) + 3600,
        "jti": uuid.uuid4().hex,
        **overrides,
    }
    return jwt.encode(claims, secret or get_settings().require("approval_jwt_secret"), algorithm="HS256")


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        ("forged", 401),
        ("tampered", 401),
        ("expired", 410),
        ("wrong_action", 400),
        ("alg_none", 400),
        ("other_audience", 400),
        ("garbage", 400),
    ],
)
def test_bad_tokens_change_nothing(client: Any, agent: Agent, kind: str, status: int) -> None:
    import base64

    tx = pay(client, agent, 1500).json()
    if kind == "forged":
        token = _token_for(tx["id"], "approve", secret="x" * 48)
    elif kind == "tampered":
        good = _token_for(tx["id"], "decline").split(".")
        claims = json.loads(base64.urlsafe_b64decode(good[1] + "=="))
        claims["act"] = "approve"
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        token = ".".join([good[0], body, good[2]])
    elif kind == "expired":
        token = _token_for(tx["id"], "approve", exp=1_700_000_000)
    elif kind == "wrong_action":
        token = _token_for(tx["id"], "decline")
    elif kind == "alg_none":
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
        payload = (
            base64.urlsafe_b64encode(
                json.dumps(
                    {
                        "iss": "agentpay",
                        "aud": "agentpay-approval",
                        "sub": tx["id"],
                        "act": "approve",
                        "exp": 4_000_000_000,
                        "jti": "x",
                    }
                ).encode()
            )
            .decode()
            .rstrip("=")
        )
        token = f"{header}.{payload}."
    elif kind == "other_audience":
        token = _token_for(tx["id"], "approve", aud="someone-else")
    else:
        token = "not-a-jwt"
    for method in ("GET", "POST"):
        response = client.request(method, f"/v1/approve/{token}", headers={"Accept": "application/json"})
        assert response.status_code == status, (method, response.text)
        html = client.request(method, f"/v1/approve/{token}")
        assert html.status_code == status and "<script" not in html.text
    assert transaction(client, agent, tx["id"])["status"] == "pending"
    assert audit_actions(tx["id"]) == ["payment.pending_approval"]


# I4: exactly one charge ---------------------------------------------------------------------------------------
def test_same_charge_job_three_times_concurrently_makes_one_payment_intent(live_servers: Any, services: Any) -> None:
    from shared.jobs import outbox as jobs

    with httpx.Client(base_url=live_servers[0].base_url) as http:
        agent = make_agent(http, make_org(http))
        tx = pay(http, agent, 700).json()
    body = json.dumps({"transaction_id": tx["id"]}).encode()

    def deliver(i: int) -> int:
        base = live_servers[i % 2].base_url
        url = base + jobs.JOB_PATHS["charge"]
        return httpx.post(url, content=body, headers=signed_job_headers(url, body), timeout=30).status_code

    with ThreadPoolExecutor(max_workers=3) as pool:
        statuses = list(pool.map(deliver, range(3)))
    # The dispatcher of the server delivers the job too: four deliveries in all, one charge.
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        current = signed_get(
            httpx.Client(base_url=live_servers[0].base_url), agent.api_key, f"/v1/transactions/{tx['id']}"
        ).json()
        if current["status"] == "completed":
            break
        time.sleep(0.2)
    assert current["status"] == "completed", statuses
    assert all(s in (200, 409) for s in statuses), statuses
    assert len(stripe_intents_for(services, tx["id"])) == 1


def test_twenty_concurrent_approve_clicks_make_one_decision_and_one_charge(live_servers: Any, services: Any) -> None:
    import time

    with httpx.Client(base_url=live_servers[0].base_url) as http:
        agent = make_agent(http, make_org(http))
        tx = pay(http, agent, 1500).json()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                approve_url, _ = links(tx["id"])
                break
            except FileNotFoundError:
                time.sleep(0.1)
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(lambda _i: httpx.post(approve_url, headers={"Accept": "application/json"}, timeout=30), range(20))
        )
    assert [r.status_code for r in responses] == [200] * 20
    assert audit_actions(tx["id"]).count("payment.approved") == 1
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=live_servers[0].base_url) as http:
        while signed_get(http, agent.api_key, f"/v1/transactions/{tx['id']}").json()["status"] != "completed":
            assert time.monotonic() < deadline, "the approved payment was never charged"
            time.sleep(0.2)
    assert len(stripe_intents_for(services, tx["id"])) == 1


def test_a_worker_killed_after_stripe_answered_is_retried_without_a_second_charge(
    client: Any, agent: Agent, services: Any
) -> None:
    import subprocess
    import sys

    from shared.platform import db
    from tests.conftest import REPO

    tx = pay(client, agent, 900).json()
    script = f"""
import os, uuid
from shared.payments import charges
from shared.vendors import stripe as stripe_api
from shared.config import get_settings
def die(*args, **kwargs):
    os._exit(9)  # the process dies between Stripe's answer and the database update
charges._settle = die
charges.charge_transaction(stripe_api.get_client(), uuid.UUID("{tx["id"]}"), settings=get_settings(), request_id="kill")
"""
    killed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert killed.returncode == 9, killed.stderr
    (intent,) = stripe_intents_for(services, tx["id"])
    assert intent["status"] == "succeeded", "Stripe charged before the worker died"
    assert transaction(client, agent, tx["id"])["status"] == "approved"

    # The retry comes while the dead worker's lease still runs: it waits (409, retried later) ...
    assert post_job(client, "charge", {"transaction_id": tx["id"]}).status_code == 409
    # ... and after the lease it reads the recorded PaymentIntent instead of creating another.
    with db.connection() as conn:
        conn.execute(
            "UPDATE transactions SET charge_attempt_at = now() - interval '10 minutes' WHERE id = %s", (tx["id"],)
        )
    assert post_job(client, "charge", {"transaction_id": tx["id"]}).status_code == 200
    done = transaction(client, agent, tx["id"])
    assert done["status"] == "completed" and done["stripe_charge_id"] == intent["id"]
    assert len(stripe_intents_for(services, tx["id"])) == 1


def test_the_stripe_call_carries_our_idempotency_key(client: Any, agent: Agent, services: Any) -> None:
    import stripe

    from shared.config import get_settings
    from shared.payments import charges

    seen: list[tuple[str, str, str | None]] = []

    class Recording(stripe.RequestsClient):
        def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:  # type: ignore[override]
            seen.append((method, url, (headers or {}).get("Idempotency-Key")))
            return super().request(method, url, headers, post_data)

    recording = stripe.StripeClient(
        "sk_test_agentpay_local",
        base_addresses={"api": services.stripe_api_base},
        http_client=Recording(),
        max_network_retries=0,
    )
    tx = pay(client, agent, 300).json()
    result = charges.charge_transaction(recording, uuid.UUID(tx["id"]), settings=get_settings(), request_id="t")
    assert result.outcome == "completed"
    creates = [key for method, url, key in seen if method == "post" and url.endswith("/v1/payment_intents")]
    assert creates == [f"agentpay-charge-{tx['id']}"]
    confirms = [key for method, url, key in seen if url.endswith("/confirm")]
    assert confirms == [f"agentpay-charge-{tx['id']}-confirm"]


def test_an_already_completed_transaction_is_acknowledged_without_charging(
    client: Any, agent: Agent, services: Any
) -> None:
    tx = pay(client, agent, 300).json()
    deliver_pending(client, tx["id"])
    again = post_job(client, "charge", {"transaction_id": tx["id"]})
    assert again.status_code == 200 and again.json()["outcome"] == "nothing_to_do"
    assert len(stripe_intents_for(services, tx["id"])) == 1


# I7: a hold is freed exactly once -----------------------------------------------------------------------------
def _declining_org(client: Any) -> Any:
    from shared.platform import db
    from shared.vendors import stripe as stripe_api

    org = make_org(client)
    stripe = stripe_api.get_client()
    with db.connection() as conn:
        row = conn.execute("SELECT stripe_customer_id FROM organizations WHERE id = %s", (org.id,)).fetchone()
    assert row is not None
    method = stripe.v1.payment_methods.attach(
        "pm_card_chargeCustomerFail", params={"customer": row["stripe_customer_id"]}
    )
    with db.connection() as conn:
        conn.execute("UPDATE organizations SET stripe_payment_method_id = %s WHERE id = %s", (method.id, org.id))
    return org


def test_a_card_decline_declines_with_charge_failed_and_frees_the_hold_once(client: Any, services: Any) -> None:
    agent = make_agent(client, _declining_org(client))
    tx = pay(client, agent, 800).json()
    assert spent(agent) == 800
    first = post_job(client, "charge", {"transaction_id": tx["id"]})
    second = post_job(client, "charge", {"transaction_id": tx["id"]})
    assert first.status_code == 200 and first.json()["outcome"] == "charge_failed"
    assert second.status_code == 200 and second.json()["outcome"] == "nothing_to_do"
    done = transaction(client, agent, tx["id"])
    assert done["status"] == "declined" and done["decision_reason"] == "charge_failed"
    assert spent(agent) == 0
    assert "payment.charge_failed" in audit_actions(tx["id"])


def test_no_saved_payment_method_declines_with_a_clear_message(client: Any) -> None:
    from shared.platform import db

    org = make_org(client)
    with db.connection() as conn:
        conn.execute("UPDATE organizations SET stripe_payment_method_id = NULL WHERE id = %s", (org.id,))
    agent = make_agent(client, org)
    tx = pay(client, agent, 100).json()
    deliver_pending(client, tx["id"])
    assert transaction(client, agent, tx["id"])["decision_reason"] == "charge_failed"
    with db.connection() as conn:
        row = conn.execute(
            "SELECT details FROM audit_logs WHERE transaction_id = %s AND action = 'payment.charge_failed'", (tx["id"],)
        ).fetchone()
    assert row is not None and "no saved payment method" in row["details"]["message"]


def test_timeout_frees_the_hold_once_even_when_the_sweep_runs_twice(client: Any, agent: Agent) -> None:
    from shared.config import get_settings
    from shared.payments.sweep import run_sweep
    from shared.platform.clock import clock

    tx = pay(client, agent, 1500).json()
    other = pay(client, agent, 100).json()
    assert spent(agent) == 1600
    clock.offset_seconds = timedelta(hours=25).total_seconds()
    try:
        first = run_sweep(get_settings())
        second = run_sweep(get_settings())
    finally:
        clock.offset_seconds = 0
    assert first.timed_out >= 1 and second.errors == []
    done = transaction(client, agent, tx["id"])
    assert done["status"] == "timed_out" and done["decision_reason"] == "approval_timed_out"
    assert spent(agent) == 100
    assert transaction(client, agent, other["id"])["status"] in ("approved", "completed")
    _, decline_url = links_or_none(client, tx["id"])
    if decline_url:
        assert client.post(local_path(decline_url), headers={"Accept": "application/json"}).status_code == 410


def links_or_none(client: Any, tx_id: str) -> tuple[str | None, str | None]:
    deliver_pending(client, tx_id)
    try:
        return links(tx_id)
    except FileNotFoundError:
        return None, None


def test_the_sweep_redrives_an_approved_transaction_whose_job_was_lost(client: Any, agent: Agent) -> None:
    from shared.config import get_settings
    from shared.payments.sweep import run_sweep
    from shared.platform import db
    from shared.platform.clock import clock

    tx = pay(client, agent, 400).json()
    with db.connection() as conn:  # the job vanished: QStash never got it
        conn.execute("UPDATE job_outbox SET published_at = now() WHERE payload->>'transaction_id' = %s", (tx["id"],))
    clock.offset_seconds = 600
    try:
        report = run_sweep(get_settings())
    finally:
        clock.offset_seconds = 0
    assert report.charges_redriven >= 1
    deliver_pending(client, tx["id"])
    assert transaction(client, agent, tx["id"])["status"] == "completed"


def test_the_sweep_does_not_redrive_a_charge_whose_job_still_waits_in_the_outbox(client: Any, agent: Agent) -> None:
    """A backlog (a Stripe outage, a slow dispatcher) is not a lost job: re-driving it every pass would add a new
    job per transaction per pass, and the dispatcher would fall further behind with each one."""
    from shared.config import get_settings
    from shared.payments.sweep import run_sweep
    from shared.platform import db
    from shared.platform.clock import clock

    tx = pay(client, agent, 400).json()
    clock.offset_seconds = 600
    try:
        run_sweep(get_settings())
        run_sweep(get_settings())
    finally:
        clock.offset_seconds = 0
    with db.connection() as conn:
        charge_jobs = conn.execute(
            "SELECT count(*) AS n FROM job_outbox WHERE job_type = 'charge' AND payload->>'transaction_id' = %s",
            (tx["id"],),
        ).fetchone()["n"]
    assert charge_jobs == 1
    deliver_pending(client, tx["id"])
    assert transaction(client, agent, tx["id"])["status"] == "completed"


def test_the_sweep_publishes_again_a_job_unpublished_for_longer_than_job_republish_seconds(
    client: Any, agent: Agent
) -> None:
    """A dispatcher's queue dies with its process (a killed local server): the sweep publishes those jobs again once
    they have waited JOB_REPUBLISH_SECONDS, and leaves younger ones to the publisher still at work."""
    from shared.config import get_settings
    from shared.jobs import outbox as jobs
    from shared.payments.sweep import run_sweep
    from shared.platform import db

    tx = pay(client, agent, 400).json()
    published: list[str] = []

    class Recorder:
        def send(self, job: Any) -> None:
            published.append(job.payload.get("transaction_id"))

    def sweep_with_job_aged(age: str, republish_seconds: float) -> bool:
        published.clear()
        with db.connection() as conn:
            conn.execute(
                "UPDATE job_outbox SET created_at = now() - %s::interval WHERE payload->>'transaction_id' = %s",
                (age, tx["id"]),
            )
        run_sweep(get_settings().model_copy(update={"job_republish_seconds": republish_seconds}))
        return tx["id"] in published

    jobs.install_local_dispatcher(Recorder())  # type: ignore[arg-type]
    try:
        year = 365 * 86400
        assert not sweep_with_job_aged("30 seconds", 60)
        # 30 years old: the oldest waiting job, so first in the sweep's batch whatever else waits
        assert not sweep_with_job_aged("30 years", 40 * year)
        assert sweep_with_job_aged("30 years", 20 * year)
    finally:
        jobs.install_local_dispatcher(None)
    deliver_pending(client, tx["id"])
    assert transaction(client, agent, tx["id"])["status"] == "completed"


def test_the_sweep_frees_a_hold_whose_request_died_before_its_row(client: Any, agent: Agent) -> None:
    from shared.budget import engine as budget
    from shared.config import get_settings
    from shared.payments.sweep import run_sweep
    from shared.platform.aio import close_loop_clients
    from shared.platform.clock import clock

    assert pay(client, agent, 100).status_code == 201
    day = budget.budget_day("UTC", clock.now())

    async def reserve_without_a_row() -> None:
        try:
            await budget.get_engine().reserve(
                budget.ReserveRequest(
                    organization_id=uuid.UUID(agent.org.body["organization"]["id"]),
                    agent_id=uuid.UUID(agent.id),
                    timezone="UTC",
                    day=day,
                    merchant="api.example.com",
                    amount_cents=700,
                    idempotency_key="died",
                    transaction_id=uuid.uuid4(),
                    request_hash="h",
                    request_id="r",
                    now_ms=int(clock.time() * 1000),
                )
            )
        finally:
            await close_loop_clients()

    run_in_own_loop(reserve_without_a_row())
    assert spent(agent) == 800
    assert run_sweep(get_settings()).holds_freed == 0, "a young hold may still get its row"
    clock.offset_seconds = 300
    try:
        freed = run_sweep(get_settings()).holds_freed
    finally:
        clock.offset_seconds = 0
    assert freed >= 1 and spent(agent) == 100


# Job endpoints accept only signed deliveries ------------------------------------------------------------------
@pytest.mark.parametrize("attack", ["unsigned", "wrong_key", "tampered_body", "other_url", "garbage"])
def test_job_endpoints_reject_anything_not_signed_for_them(client: Any, agent: Agent, attack: str) -> None:
    tx = pay(client, agent, 300).json()
    body = json.dumps({"transaction_id": tx["id"]}).encode()
    url = "http://testserver/v1/jobs/charge"
    if attack == "unsigned":
        headers = {"Content-Type": "application/json"}
    elif attack == "wrong_key":
        headers = signed_job_headers(url, body, key="sig_" + "k" * 30)
    elif attack == "tampered_body":
        headers = signed_job_headers(url, body)
        body = json.dumps({"transaction_id": str(uuid.uuid4())}).encode()
    elif attack == "other_url":
        headers = signed_job_headers("http://testserver/v1/jobs/email", body)
    else:
        headers = {"Upstash-Signature": "not.a.jwt"}
    response = client.post("/v1/jobs/charge", content=body, headers=headers)
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication"
    assert transaction(client, agent, tx["id"])["status"] == "approved"


def test_the_next_signing_key_is_accepted_during_rotation(client: Any, agent: Agent) -> None:
    from shared.config import get_settings

    tx = pay(client, agent, 300).json()
    body = json.dumps({"transaction_id": tx["id"]}).encode()
    headers = signed_job_headers(
        "http://testserver/v1/jobs/charge", body, key=get_settings().require("qstash_next_signing_key")
    )
    assert client.post("/v1/jobs/charge", content=body, headers=headers).status_code == 200


# Decision webhooks --------------------------------------------------------------------------------------------
class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_decision_webhooks_are_signed_with_the_agents_key(client: Any, agent: Agent) -> None:
    import hashlib
    import hmac

    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        callback = f"http://127.0.0.1:{server.server_address[1]}/hooks"
        tx = pay(client, agent, 1500, callback_url=callback).json()
        deliver_pending(client, tx["id"])
        approve_url, _ = links(tx["id"])
        client.post(local_path(approve_url))
        deliver_pending(client, tx["id"])
    finally:
        server.shutdown()
    events = [json.loads(body) for _, body in _Receiver.received]
    assert [e["type"] for e in events] == ["transaction.approved", "transaction.completed"] or sorted(
        e["type"] for e in events
    ) == ["transaction.approved", "transaction.completed"]
    assert {e["data"]["id"] for e in events} == {tx["id"]} and len({e["id"] for e in events}) == 2
    key = hashlib.sha256(agent.api_key.encode()).hexdigest().encode()
    for headers, body in _Receiver.received:
        parts = dict(p.split("=", 1) for p in headers["agentpay-signature"].split(","))
        expected = hmac.new(key, f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(parts["v1"], expected)


def test_an_auto_approved_payment_sends_completed_without_approved(client: Any, agent: Agent) -> None:
    """The READMEs say so: the 201 already said `approved`, so the first event is the charge's outcome."""
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        tx = pay(client, agent, 500, callback_url=f"http://127.0.0.1:{server.server_address[1]}/hooks").json()
        assert tx["status"] == "approved"
        deliver_pending(client, tx["id"])
    finally:
        server.shutdown()
    assert [json.loads(body)["type"] for _, body in _Receiver.received] == ["transaction.completed"]


def test_circuit_breaker_block_emails_the_admin(client: Any) -> None:
    from shared.config import get_settings
    from shared.notify.email import outbox_file_name
    from shared.platform import db

    agent = make_agent(client, make_org(client), max_requests_per_minute=1)
    assert pay(client, agent, 10).status_code == 201
    assert pay(client, agent, 10).status_code == 429
    with db.connection() as conn:
        job = conn.execute(
            "SELECT payload FROM job_outbox WHERE payload->>'agent_id' = %s AND payload->>'kind' = 'block_alert'",
            (agent.id,),
        ).fetchone()
    assert job is not None
    assert post_job(client, "email", job["payload"]).status_code == 200
    name = outbox_file_name(f"block-{agent.id}-{job['payload']['blocked_at']}")
    mail = json.loads((Path(get_settings().outbox_dir) / name).read_text())
    assert "blocked" in mail["subject"].lower() and "/dashboard" in mail["text"]


def test_outside_local_mode_a_callback_into_a_private_network_is_refused(client: Any, agent: Agent) -> None:
    from shared.notify import webhooks

    tx = pay(client, agent, 1500, callback_url="http://127.0.0.1:9/hooks").json()
    deliver_pending(client, tx["id"])
    approve_url, _ = links(tx["id"])
    client.post(local_path(approve_url))
    from shared.platform import db

    with db.connection() as conn:
        event = conn.execute("SELECT id FROM webhook_events WHERE transaction_id = %s LIMIT 1", (tx["id"],)).fetchone()
    assert event is not None
    with pytest.raises(webhooks.WebhookRefused):
        webhooks.deliver(event["id"])  # production's default: private destinations refused


def test_the_sweep_publishing_again_a_job_the_dispatcher_still_holds_does_not_queue_it_twice(services: Any) -> None:
    """Behind a backlog (a Stripe outage holds the dispatcher's threads in retries) a job stays unpublished until it
    is delivered, and the sweep publishes the oldest unpublished jobs again on every pass. Queueing every copy made
    the queue grow faster than it drained, so after the long chaos run 46 approved transactions were never charged."""
    from shared.config import get_settings
    from shared.jobs import outbox as jobs
    from shared.payments.sweep import run_sweep
    from shared.platform import db

    with db.connection() as conn:
        stuck = jobs.enqueue(conn, jobs.approval_email_job(uuid.uuid4()))
        assert stuck is not None
        conn.execute("UPDATE job_outbox SET created_at = now() - interval '10 minutes' WHERE id = %s", (stuck.id,))
    from devtools.dispatcher import LocalDispatcher

    dispatcher = LocalDispatcher(get_settings(), threads=1)  # never started: what it takes stays queued
    jobs.install_local_dispatcher(dispatcher)
    try:
        run_sweep(get_settings())
        assert dispatcher.queued_copies(stuck.id) == 1, "the old unpublished job was published"
        run_sweep(get_settings())
        run_sweep(get_settings())
        assert dispatcher.queued_copies(stuck.id) == 1
    finally:
        jobs.install_local_dispatcher(None)
        dispatcher.stop()


def test_the_local_sweep_schedule_survives_a_pass_that_fails_unexpectedly(
    services: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that raises what no part expected (a bug, a driver error) must not end the server's sweeps: approved
    transactions would then never be re-driven."""
    from shared.config import get_settings
    from shared.payments import sweep

    passes: list[int] = []
    stop = threading.Event()
    real = sweep.run_sweep

    def flaky(settings: Any) -> Any:
        passes.append(1)
        if len(passes) == 1:
            raise RuntimeError("an error no part expected")
        if len(passes) >= 3:
            stop.set()
        return real(settings)

    monkeypatch.setattr(sweep, "run_sweep", flaky)
    settings = get_settings().model_copy(update={"sweep_interval_seconds": 0.01})
    schedule = threading.Thread(target=sweep.run_forever, args=(settings, stop), daemon=True)
    schedule.start()
    schedule.join(timeout=30)
    assert len(passes) >= 3 and not schedule.is_alive()
