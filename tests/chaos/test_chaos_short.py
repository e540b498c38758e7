"""The short chaos run of `make test`: every fault once under a steady load, then every invariant checked."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.chaos.scenario import FAULTS, run_chaos
from tests.conftest import REPO, Agent, signed_post
from tests.integration.test_money_movement import stripe_intents_for, transaction
from tests.support.jobs import post_job


def test_payments_survive_every_fault_under_load(stack: Any, services: Any) -> None:
    report = run_chaos(stack, services, duration_s=25, rate_per_s=8, faults=list(FAULTS), settle_s=20)
    print(report.table())
    assert report.verdict == "passed", report.reason or report.violations[:5]
    assert report.settled and set(report.phases_s) == {"setup", "load", "settling", "checks"}
    assert report.checked[-1] == "jobs dead-lettered then re-driven"
    statuses = report.by_status()
    assert statuses["201"] and statuses["202"] and statuses["402"], statuses
    assert statuses["503"], "Valkey and PostgreSQL going away must show as 503s, never as approvals"
    assert report.faults_injected() == dict.fromkeys(FAULTS, 1)
    (kill,) = [f for f in report.faults if f.name == "worker_kill"]
    assert kill.details["charges_in_flight"] >= 1, "the worker was killed with charges in flight"
    assert report.violations == []


def test_a_charge_whose_row_update_failed_after_stripe_answered_makes_no_second_payment_intent(
    client: Any, agent: Agent, services: Any, monkeypatch: Any
) -> None:
    """Found by the chaos run (PostgreSQL restarted while charges were in flight). ARCHITECTURE.md I4: a worker
    dying between Stripe and the database must not lead to a second PaymentIntent for the transaction."""
    import psycopg

    from shared.config import get_settings
    from shared.payments import charges
    from shared.platform import db
    from shared.vendors.stripe import get_client

    body = {"amount": 600, "merchant": "api.example.com", "purpose": "tokens", "idempotency_key": uuid.uuid4().hex}
    tx = signed_post(client, agent.api_key, "/v1/payment-request", body).json()
    assert tx["status"] == "approved"

    real_connection = db.connection
    calls = 0

    def connection_lost_after_stripe(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # 1: the lease; 2: recording the PaymentIntent Stripe just created
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return real_connection(*args, **kwargs)

    monkeypatch.setattr(charges.db, "connection", connection_lost_after_stripe)
    with pytest.raises(psycopg.OperationalError):
        charges.charge_transaction(get_client(), uuid.UUID(tx["id"]), settings=get_settings(), request_id="chaos")
    monkeypatch.setattr(charges.db, "connection", real_connection)
    assert len(stripe_intents_for(services, tx["id"])) == 1, "Stripe created the PaymentIntent before the failure"

    # The job is delivered again once the lease has run out.
    with db.connection() as conn:
        conn.execute(
            "UPDATE transactions SET charge_attempt_at = now() - interval '10 minutes' WHERE id = %s", (tx["id"],)
        )
    assert post_job(client, "charge", {"transaction_id": tx["id"]}).status_code == 200
    assert transaction(client, agent, tx["id"])["status"] == "completed"
    intents = stripe_intents_for(services, tx["id"])
    assert [i["status"] for i in intents] == ["succeeded"], [(i["id"], i["status"]) for i in intents]


def test_a_service_that_stops_answering_during_the_checks_fails_the_run_with_its_reason(tmp_path: Path) -> None:
    """Issue 14: localstripe stopped answering while `make chaos` read its PaymentIntents, and the run ended in a
    traceback with no report. It must end as a failed run (exit 2) that says which service stopped answering and
    what it was doing, keeps the servers' logs, and writes its JSON with what was checked so far."""
    out = tmp_path / "chaos.json"
    command = [sys.executable, "-m", "tests.chaos.scenario", "--duration", "4", "--rate", "4", "--faults", ""]
    command += ["--json", str(out), "--dependency-timeout", "3"]
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as stderr_file:
        harness = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr_file, text=True)
    stopped: list[psutil.Process] = []
    try:
        assert harness.stdout is not None
        lines = []
        for line in harness.stdout:
            lines.append(line)
            if "checking" in line:
                # localstripe freezes (as it did, busy for minutes): still accepting connections, answering nothing
                (localstripe,) = [
                    p
                    for p in psutil.Process(harness.pid).children(recursive=True)
                    if "serve_localstripe" in " ".join(p.cmdline())
                ]
                localstripe.send_signal(signal.SIGSTOP)
                stopped.append(localstripe)
                break
        assert stopped, "".join(lines)
        stdout = "".join(lines) + harness.communicate(timeout=240)[0]
    finally:
        for process in stopped:
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGCONT)
        if harness.poll() is None:  # the test failed before the harness ended: leave none of its servers behind
            for process in [*psutil.Process(harness.pid).children(recursive=True), harness]:
                with suppress(psutil.NoSuchProcess, ProcessLookupError):
                    process.kill()
            harness.wait()

    stderr = errors.read_text()
    assert harness.returncode == 2, stdout + stderr
    assert "Traceback" not in stderr + stdout, stderr
    report = json.loads(out.read_text())
    assert report["verdict"] == "failed"
    assert report["reason"].startswith("localstripe stopped answering during checks"), report["reason"]
    assert "GET /v1/payment_intents" in report["reason"]
    assert report["checked_so_far"] == [
        "answered requests with row and audit",
        "agent-days within the daily limit",
        "transactions charged or declined",
    ]
    assert report["reason"] in stdout
    assert report["settle_s"] is not None and report["localstripe_cpu_s"] is not None and report["total_s"] > 0
    kept = tmp_path / "chaos-logs"
    assert (kept / "a.log").exists() and (kept / "services" / "localstripe.log").exists()
    assert f"the servers' logs are in {kept}" in stdout
