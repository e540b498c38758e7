"""Chaos: a steady payment load on real server processes while Valkey, PostgreSQL, Stripe and workers fail.

`run_chaos` drives the load, injects the faults one after another, lets the system settle, then checks the
invariants of ARCHITECTURE.md from the database, Redis and localstripe. The short run is in `make test`
(tests/chaos/test_chaos_short.py); the long one is `python -m tests.chaos.scenario --long` (`make chaos`).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import redis

from tests.conftest import REPO, ServerProcess, _free_port
from tests.support.signing import encode, signed_headers

FAULTS = ("valkey_restart", "postgres_restart", "stripe_outage", "worker_kill", "duplicate_deliveries")
PAY = "/v1/payment-request"
STRIPE_KEY = "sk_test_agentpay_local"
# Short re-drive and lease so the sweep finishes a killed worker's charge within the run (Settings fields).
SERVER_ENV = {
    "CHARGE_REDRIVE_SECONDS": "2",
    # A killed worker's charge resumes after 10 s; every Stripe call gives up after 2.4 s, within the lease.
    "CHARGE_LEASE_SECONDS": "10",
    "STRIPE_TIMEOUT_SECONDS": "2.4",
    "SWEEP_INTERVAL_SECONDS": "1",
    # A killed server's dispatcher queue is lost with it: its jobs are published again after 5 s, not 60.
    "JOB_REPUBLISH_SECONDS": "5",
}
HELD = ("pending", "approved", "completed")
PER_TX_LIMIT = 5000
APPROVAL_THRESHOLD = 1000
# How long one call of the settling and checking phases may wait for a service before the run fails; a phase as a
# whole may wait DEPENDENCY_TIMEOUT_S * PHASE_TIMEOUT_FACTOR beyond its own length (a query that hangs, not fails).
DEPENDENCY_TIMEOUT_S = 30.0
PHASE_TIMEOUT_FACTOR = 4
EXIT_CODES = {"passed": 0, "violations": 1, "failed": 2}


# What happened ------------------------------------------------------------------------------------------------
@dataclass
class RequestRecord:
    """One HTTP attempt of a payment request: what was sent, when, and what came back (None: no answer)."""

    agent_id: str
    idempotency_key: str
    amount: int
    attempt: int
    server: str
    sent: float
    answered: float = 0.0
    status: int | None = None
    code: str | None = None
    transaction_id: str | None = None
    transaction_status: str | None = None


@dataclass
class FaultWindow:
    """A fault, from the moment it took effect to the moment it was lifted (monotonic seconds)."""

    name: str
    started: float
    ended: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


class ServiceStopped(Exception):
    """A service the run depends on stopped answering (or answered with an error) during the run."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service}: {detail}")
        self.service = service
        self.detail = detail


class PhaseHung(Exception):
    """A phase of the run got no answer from some service for longer than it may wait, and no error either."""


@dataclass
class ChaosReport:
    duration_s: float
    rate_per_s: float
    requests: list[RequestRecord] = field(default_factory=list)
    faults: list[FaultWindow] = field(default_factory=list)
    decisions: Counter[str] = field(default_factory=Counter)
    checks: Counter[str] = field(default_factory=Counter)
    checked: list[str] = field(default_factory=list)  # the invariants checked to the end, in order
    final_states: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    reason: str | None = None  # why the run reached no verdict
    settled: bool | None = None  # whether settling ended with no transaction left approved (not on its timeout)
    wall_s: float = 0.0
    phases_s: dict[str, float] = field(default_factory=dict)
    localstripe_cpu_s: dict[str, float] = field(default_factory=dict)  # by phase, from psutil on its pid

    @property
    def verdict(self) -> str:
        """passed or violations; failed when the run could not check everything (see `reason`)."""
        if self.reason is not None:
            return "failed"
        return "violations" if self.violations else "passed"

    def localstripe_cpu(self) -> tuple[float, float] | None:
        """localstripe's CPU seconds over the run, and as a percentage of one core over the run's wall time."""
        if not self.localstripe_cpu_s or not self.wall_s:
            return None
        seconds = sum(self.localstripe_cpu_s.values())
        return round(seconds, 1), round(100 * seconds / self.wall_s, 1)

    def by_status(self) -> Counter[str]:
        return Counter(str(r.status) if r.status is not None else "no_answer" for r in self.requests)

    def by_code(self) -> Counter[str]:
        return Counter(f"{r.status} {r.code}" for r in self.requests if r.code)

    def faults_injected(self) -> Counter[str]:
        return Counter(f.name for f in self.faults)

    def table(self) -> str:
        cpu = self.localstripe_cpu()
        lines = [
            f"chaos: {len(self.requests)} request attempts in {self.duration_s:.0f} s of load "
            f"(target {self.rate_per_s:g}/s), {self.wall_s:.0f} s in all",
            "phases: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.phases_s.items()),
            f"localstripe CPU: {cpu[0]:.1f} s, {cpu[1]:.0f}% of one core over the run; by phase "
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.localstripe_cpu_s.items())
            if cpu
            else "localstripe CPU: not measured",
            "",
            f"{'answer':<40}{'count':>8}",
        ]
        lines += [f"{status:<40}{n:>8}" for status, n in sorted(self.by_status().items())]
        lines += ["", f"{'error code':<40}{'count':>8}"]
        lines += [f"{code:<40}{n:>8}" for code, n in sorted(self.by_code().items())]
        lines += ["", f"{'fault':<24}{'window s':>10}  details"]
        for fault in self.faults:
            shown = ", ".join(f"{k}={v}" for k, v in fault.details.items())
            lines.append(f"{fault.name:<24}{fault.ended - fault.started:>10.1f}  {shown}")
        lines += ["", f"{'admin decision':<40}{'count':>8}"]
        lines += [f"{k:<40}{n:>8}" for k, n in sorted(self.decisions.items())]
        lines += ["", f"{'final transaction state':<40}{'count':>8}"]
        lines += [f"{k:<40}{n:>8}" for k, n in sorted(self.final_states.items())]
        lines += ["", f"{'check':<40}{'items':>8}"]
        lines += [f"{k:<40}{n:>8}" for k, n in sorted(self.checks.items())]
        lines += ["", f"violations: {len(self.violations)}"]
        lines += [f"  - {v}" for v in self.violations[:50]]
        lines += ["", f"verdict: {self.verdict}" + (f" (no verdict: {self.reason})" if self.reason else "")]
        if self.reason:
            lines += ["checked before it stopped: " + (", ".join(self.checked) or "nothing")]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        cpu = self.localstripe_cpu()
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "checked_so_far": self.checked,
            "duration_s": self.duration_s,
            "rate_per_s": self.rate_per_s,
            "wall_s": round(self.wall_s, 1),
            "settle_s": self.phases_s.get("settling"),
            "settled": self.settled,
            "phases_s": self.phases_s,
            "localstripe_cpu_s": cpu[0] if cpu else None,
            "localstripe_cpu_percent": cpu[1] if cpu else None,
            "localstripe_cpu_s_by_phase": self.localstripe_cpu_s,
            "requests": len(self.requests),
            "requests_by_status": dict(self.by_status()),
            "requests_by_error_code": dict(self.by_code()),
            "faults_injected": dict(self.faults_injected()),
            "fault_windows": [
                {"name": f.name, "seconds": round(f.ended - f.started, 2), **f.details} for f in self.faults
            ],
            "admin_decisions": dict(self.decisions),
            "final_transaction_states": dict(self.final_states),
            "checks": dict(self.checks),
            "violations": self.violations,
        }


# Server processes ---------------------------------------------------------------------------------------------
class ChaosServer(ServerProcess):
    """A `build_server_app` process whose log goes to a file, and which can be killed outright."""

    def __init__(self, port: int, extra_env: dict[str, str], log_path: Path) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.extra_env = extra_env
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "AGENTPAY_PORT": str(port), **extra_env}
        with log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "uvicorn", "devtools.local_app:build_server_app", "--factory"),
                    *("--host", "127.0.0.1", "--port", str(port)),
                    *("--log-level", "warning", "--no-access-log"),
                    *("--http", "devtools.local_http:BoundedHttpToolsProtocol"),
                ],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: the process dies wherever it is, jobs in memory and charges in flight included."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def replacement(self) -> ChaosServer:
        """A new process on the same port, as a fresh container would take over."""
        return ChaosServer(self.port, self.extra_env, self.log_path)


# The run ------------------------------------------------------------------------------------------------------
@dataclass
class _Agent:
    id: str
    api_key: str
    admin_key: str
    daily_limit: int


class _Run:
    """State shared by the load, approver and fault threads of one run."""

    def __init__(
        self,
        stack: Any,
        services: Any,
        *,
        duration_s: float,
        rate_per_s: float,
        seed: int,
        dependency_timeout_s: float,
        say: Callable[[str], None],
    ) -> None:
        self.stack = stack
        self.services = services
        self.duration_s = duration_s
        self.rate_per_s = rate_per_s
        self.random = random.Random(seed)
        self.dependency_timeout_s = dependency_timeout_s
        self.say = say
        self.report = ChaosReport(duration_s=duration_s, rate_per_s=rate_per_s)
        self.lock = threading.Lock()
        self.stop_load = threading.Event()
        self.stop_approver = threading.Event()
        self.servers: dict[str, ChaosServer] = {}
        self.agents: list[_Agent] = []
        self.pending: queue.Queue[tuple[str, _Agent, int]] = queue.Queue()
        self.home = Path(os.environ.get("AGENTPAY_HOME", tempfile.gettempdir()))
        self.logs = self.home / "chaos-logs"
        self.stripe_pid: int | None = stack.stripe_pid
        self.phase = ""
        self.step = "starting"  # what the run waits for now, named in the reason when it gets no answer
        self._phase_began = 0.0
        self._phase_cpu: float | None = None

    # -- phases --
    def enter(self, phase: str) -> None:
        """Close the current phase (its length and localstripe's CPU in it) and open the next ("" closes only)."""
        now, cpu = time.monotonic(), _cpu_seconds(self.stripe_pid)
        if self.phase:
            self.report.phases_s[self.phase] = round(now - self._phase_began, 1)
            if cpu is not None and self._phase_cpu is not None:
                self.report.localstripe_cpu_s[self.phase] = round(cpu - self._phase_cpu, 2)
        self.phase, self.step, self._phase_began, self._phase_cpu = phase, phase, now, cpu

    # -- servers --
    def live_bases(self) -> list[str]:
        with self.lock:
            return [s.base_url for s in self.servers.values()]

    def start_server(self, name: str, extra_env: dict[str, str]) -> ChaosServer:
        server = ChaosServer(_free_port(), {**SERVER_ENV, **extra_env}, self.logs / f"{name}.log")
        server.wait_ready(30)
        with self.lock:
            self.servers[name] = server
        return server

    def stop_servers(self) -> None:
        for server in list(self.servers.values()):
            with suppress(Exception):
                server.stop()

    # -- setup --
    def create_agents(self, count: int) -> None:
        # Demand is about 1.5x what the limits allow, so daily_limit_exceeded happens too.
        held_per_request = 0.70 * 525 + 0.25 * 3000
        daily = max(20_000, int(self.rate_per_s * self.duration_s * held_per_request / count / 1.5))
        base = next(iter(self.servers.values())).base_url
        with httpx.Client(base_url=base, timeout=30) as http:
            for i in range(count):
                org = http.post(
                    "/v1/orgs", json={"name": f"Chaos org {i}", "admin_email": "chaos@example.com", "timezone": "UTC"}
                )
                org.raise_for_status()
                admin_key = org.json()["admin_key"]
                created = http.post(
                    "/v1/dashboard/agents",
                    headers={"Authorization": f"Bearer {admin_key}"},
                    json={
                        "name": f"chaos-agent-{i}",
                        "limits": {
                            "daily_limit": daily,
                            "per_transaction_limit": PER_TX_LIMIT,
                            "approval_threshold": APPROVAL_THRESHOLD,
                            "max_requests_per_minute": 10_000,
                        },
                    },
                )
                created.raise_for_status()
                body = created.json()
                self.agents.append(_Agent(body["agent"]["id"], body["api_key"], admin_key, daily))

    # -- load --
    def amount(self, rng: random.Random) -> int:
        roll = rng.random()
        if roll < 0.70:
            return rng.randint(50, APPROVAL_THRESHOLD)  # auto-approved and charged
        if roll < 0.95:
            return rng.randint(APPROVAL_THRESHOLD + 1, PER_TX_LIMIT)  # pending an admin
        return rng.randint(PER_TX_LIMIT + 1, 3 * PER_TX_LIMIT)  # over the per-transaction limit

    def load_worker(self, index: int, workers: int) -> None:
        rng = random.Random(self.random.random() + index)
        interval = workers / self.rate_per_s
        next_at = time.monotonic() + rng.uniform(0, interval)
        clients: dict[str, httpx.Client] = {}
        try:
            while not self.stop_load.is_set():
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stop_load.wait(delay)
                next_at = max(next_at + interval, time.monotonic())
                agent = rng.choice(self.agents)
                self.request_with_retries(
                    rng,
                    clients,
                    agent,
                    {
                        "amount": self.amount(rng),
                        "merchant": rng.choice(["api.openai.example", "gpu.example.com", "données.example.fr"]),
                        "purpose": f"chaos load {uuid.uuid4().hex[:8]} " + "x" * rng.randint(0, 300),
                        "context": {"run": "chaos", "worker": index, "n": rng.randint(0, 10**6)},
                        "idempotency_key": f"chaos-{uuid.uuid4().hex}",
                    },
                )
        finally:
            for client in clients.values():
                client.close()

    def request_with_retries(
        self, rng: random.Random, clients: dict[str, httpx.Client], agent: _Agent, payload: dict[str, Any]
    ) -> None:
        """Send like an SDK: a 503 or no answer is retried with the same idempotency key, maybe on another server."""
        body = encode(payload)
        for attempt in range(1, 4):
            base = rng.choice(self.live_bases())
            client = clients.setdefault(base, httpx.Client(base_url=base, timeout=20))
            record = RequestRecord(
                agent_id=agent.id,
                idempotency_key=payload["idempotency_key"],
                amount=payload["amount"],
                attempt=attempt,
                server=base,
                sent=time.monotonic(),
            )
            try:
                response = client.post(PAY, content=body, headers=signed_headers(agent.api_key, "POST", PAY, body))
                record.answered = time.monotonic()
                record.status = response.status_code
                answer = _json(response)
                record.code = (answer.get("error") or {}).get("code")
                record.transaction_id = answer.get("id")
                record.transaction_status = answer.get("status")
            except httpx.HTTPError:
                record.answered = time.monotonic()
            with self.lock:
                self.report.requests.append(record)
            if record.status == 202 and record.transaction_id:
                self.pending.put((record.transaction_id, agent, 0))
            if record.status is not None and record.status != 503:
                return
            if self.stop_load.wait(rng.uniform(0.2, 0.6)):
                return

    # -- the admin --
    def approver(self) -> None:
        """Approves (mostly) or declines pending payments, through the email link or the dashboard API."""
        rng = random.Random(self.random.random())
        with httpx.Client(timeout=20) as http:
            while True:
                try:
                    tx_id, agent, tries = self.pending.get(timeout=0.2)
                except queue.Empty:
                    if self.stop_approver.is_set():
                        return
                    continue
                if self.stop_approver.is_set() and tries > 0:
                    continue  # settling: give up on what keeps failing
                action = "decline" if rng.random() < 0.2 else "approve"
                status, via = self.decide(http, rng, tx_id, agent, action)
                with self.lock:
                    self.report.decisions[f"{action} via {via}: {status}"] += 1
                if (status is None or status >= 500) and tries < 40:
                    time.sleep(0.25)
                    self.pending.put((tx_id, agent, tries + 1))

    def decide(
        self, http: httpx.Client, rng: random.Random, tx_id: str, agent: _Agent, action: str
    ) -> tuple[int | None, str]:
        link = _email_link(tx_id, action) if rng.random() < 0.5 else None
        try:
            if link:
                return http.post(link, headers={"Accept": "application/json"}).status_code, "email link"
            base = rng.choice(self.live_bases())
            response = http.post(
                f"{base}/v1/dashboard/transactions/{tx_id}/{action}",
                headers={"Authorization": f"Bearer {agent.admin_key}"},
            )
            return response.status_code, "dashboard"
        except httpx.HTTPError:
            return None, "email link" if link else "dashboard"

    # -- faults --
    def fault(self, name: str, **details: Any) -> FaultWindow:
        window = FaultWindow(name=name, started=time.monotonic(), details=details)
        with self.lock:
            self.report.faults.append(window)
        return window

    def valkey_restart(self, down_s: float) -> None:
        self.stack.stop_redis()
        window = self.fault("valkey_restart")
        time.sleep(down_s)
        window.ended = time.monotonic()
        self.stack.start_redis()
        window.details["answers_in_window"] = self._answers_within(window)

    def postgres_restart(self, down_s: float) -> None:
        self.stack.stop_postgres()
        window = self.fault("postgres_restart")
        time.sleep(down_s)
        window.ended = time.monotonic()
        self.stack.start_postgres()
        window.details["answers_in_window"] = self._answers_within(window)

    def stripe_outage(self, seconds: float) -> None:
        httpx.post(f"{self.services.stripe_api_base}/_agentpay/outage", params={"seconds": seconds}).raise_for_status()
        window = self.fault("stripe_outage")
        time.sleep(seconds)
        window.ended = time.monotonic()

    def worker_kill(self) -> None:
        """SIGKILL the first server once charges are in flight, then start a new one on the same port."""
        deadline = time.monotonic() + 10
        in_flight = self._charges_in_flight()
        while in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
            in_flight = self._charges_in_flight()
        with self.lock:
            victim = self.servers.pop("a")
        victim.kill()
        window = self.fault("worker_kill", charges_in_flight=in_flight)
        time.sleep(0.5)
        replacement = victim.replacement()
        replacement.wait_ready(30)
        with self.lock:
            self.servers["a"] = replacement
        window.ended = time.monotonic()

    def _charges_in_flight(self) -> int:
        """Approved transactions of the run with a charge lease taken (a worker is between lease and verdict)."""
        from shared.platform import db

        try:
            with db.connection() as conn:
                row = conn.execute(
                    "SELECT count(*) AS n FROM transactions WHERE agent_id = ANY(%s) AND status = 'approved'"
                    " AND charge_attempt_at IS NOT NULL",
                    ([uuid.UUID(a.id) for a in self.agents],),
                ).fetchone()
        except Exception:
            return 0
        return int(row["n"]) if row else 0

    def _answers_within(self, window: FaultWindow) -> dict[str, int]:
        with self.lock:
            inside = [r for r in self.report.requests if r.sent >= window.started and r.answered <= window.ended]
        return dict(Counter(str(r.status) for r in inside))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _email_link(tx_id: str, action: str) -> str | None:
    from shared.config import get_settings
    from shared.notify.email import outbox_file_name

    path = Path(get_settings().outbox_dir) / outbox_file_name(f"approval-{tx_id}")
    try:
        text = json.loads(path.read_text())["text"]
    except (FileNotFoundError, ValueError, KeyError):
        return None
    return next((line.strip() for line in text.splitlines() if f"/v1/{action}/" in line), None)


# Settling and checking ----------------------------------------------------------------------------------------
def _retrying(action: Callable[[], Any], *, seconds: float = 30) -> Any:
    """The test process's own pools meet the restarted services too: retry until they answer."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return action()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _rows(agent_ids: list[str]) -> list[dict[str, Any]]:
    from shared.platform import db

    with db.connection() as conn:
        return conn.execute(
            "SELECT id::text, agent_id::text, organization_id::text, amount_cents, status, decision_reason, budget_day,"
            " stripe_charge_id, idempotency_key FROM transactions WHERE agent_id = ANY(%s)",
            ([uuid.UUID(a) for a in agent_ids],),
        ).fetchall()


def _settle(run: _Run, timeout_s: float) -> None:
    """Wait until no transaction of the run is left `approved` (the servers' sweep re-drives charges), then sweep."""
    from shared.config import get_settings
    from shared.payments.sweep import ORPHAN_HOLD_SECONDS, run_sweep
    from shared.platform.clock import clock

    agent_ids = [a.id for a in run.agents]
    deadline = time.monotonic() + timeout_s
    run.step = "waiting in PostgreSQL for no transaction of the run to be left approved"
    run.report.settled = False
    while time.monotonic() < deadline:
        rows = _retrying(lambda: _rows(agent_ids))
        if not any(r["status"] == "approved" for r in rows) and run.pending.empty():
            run.report.settled = True
            break
        time.sleep(0.5)
    run.stop_approver.set()
    run.step = "sweeping (PostgreSQL and Valkey)"
    settings = get_settings()
    for _ in range(2):
        _retrying(lambda: run_sweep(settings))
    # Holds whose request died before its row (a 503 whose undo could not reach Valkey) are freed by the sweep
    # once they are older than ORPHAN_HOLD_SECONDS: travel past that instead of waiting for it.
    clock.offset_seconds = ORPHAN_HOLD_SECONDS + 30
    try:
        _retrying(lambda: run_sweep(settings))
    finally:
        clock.offset_seconds = 0
    _retrying(lambda: run_sweep(settings))


def _charge_state(transaction_id: str) -> str:
    """Where a charge stopped: the row's charge columns, its jobs in the outbox and the dead letters."""
    from shared.platform import db

    with db.connection() as conn:
        row = conn.execute(
            "SELECT created_at, updated_at, charge_attempts, charge_attempt_at, payment_intent_id,"
            " now() - created_at AS age FROM transactions WHERE id = %s",
            (transaction_id,),
        ).fetchone()
        jobs = conn.execute(
            "SELECT job_type, published_at IS NOT NULL AS published, publish_attempts, last_error FROM job_outbox"
            " WHERE payload->>'transaction_id' = %s",
            (transaction_id,),
        ).fetchall()
        dead = conn.execute(
            "SELECT count(*) AS n FROM job_dead_letters WHERE transaction_id = %s", (transaction_id,)
        ).fetchone()
    return (
        f"row {dict(row) if row else None}, outbox {[dict(j) for j in jobs]}, dead letters {dead['n'] if dead else 0}"
    )


def _stripe_intents(run: _Run) -> dict[str, list[dict[str, Any]]]:
    """Every PaymentIntent in localstripe by its transaction id, 100 a page."""
    by_transaction: dict[str, list[dict[str, Any]]] = defaultdict(list)
    starting_after = None
    timeout = run.dependency_timeout_s
    with httpx.Client(base_url=run.services.stripe_api_base, timeout=timeout) as http:
        for number in range(1, 10**6):
            params: dict[str, Any] = {"limit": 100}
            if starting_after:
                params["starting_after"] = starting_after
            run.step = f"reading every PaymentIntent from localstripe (page {number}, 100 a page)"
            try:
                response = http.get(
                    "/v1/payment_intents", params=params, headers={"Authorization": f"Bearer {STRIPE_KEY}"}
                )
                response.raise_for_status()
                page = response.json()
            except httpx.TimeoutException as exc:
                raise ServiceStopped(
                    "localstripe", f"no answer within {timeout:g} s to page {number} of GET /v1/payment_intents"
                ) from exc
            except (httpx.HTTPError, ValueError) as exc:
                raise ServiceStopped(
                    "localstripe", f"page {number} of GET /v1/payment_intents failed: {type(exc).__name__}: {exc}"
                ) from exc
            for intent in page["data"]:
                tx_id = (intent.get("metadata") or {}).get("transaction_id")
                if tx_id:
                    by_transaction[tx_id].append(intent)
            if not page.get("has_more") or not page["data"]:
                break
            starting_after = page["data"][-1]["id"]
    return by_transaction


def _faults_near(report: ChaosReport, transaction_id: str) -> str:
    """The faults active from the request until 10 s after it, to tell which one a violation followed."""
    sent = min((r.sent for r in report.requests if r.transaction_id == transaction_id), default=None)
    if sent is None:
        return "request not seen"
    near = [f.name for f in report.faults if f.started <= sent + 10 and (f.ended or sent) >= sent]
    return "faults around it: " + (", ".join(near) or "none")


def _check(run: _Run) -> None:
    from shared.budget import engine as budget
    from shared.platform import db

    report = run.report
    violations = report.violations
    agent_ids = [a.id for a in run.agents]
    limit_of = {a.id: a.daily_limit for a in run.agents}
    run.step = "reading the run's transactions and audit entries from PostgreSQL"
    rows = _retrying(lambda: _rows(agent_ids))
    by_id = {r["id"]: r for r in rows}
    report.final_states.update(f"{r['status']} ({r['decision_reason']})" for r in rows)

    with db.connection() as conn:
        audited = {
            str(r["transaction_id"])
            for r in conn.execute(
                "SELECT DISTINCT transaction_id FROM audit_logs"
                " WHERE agent_id = ANY(%s) AND transaction_id IS NOT NULL",
                ([uuid.UUID(a) for a in agent_ids],),
            ).fetchall()
        }

    # Every answered decision has its row and its audit entry, and the row says what the answer said.
    for record in report.requests:
        if record.status not in (200, 201, 202, 402):
            continue
        report.checks["answered requests with row and audit"] += 1
        row = by_id.get(record.transaction_id or "")
        if row is None:
            violations.append(f"{record.status} for key {record.idempotency_key} but no transaction row")
            continue
        if record.transaction_id not in audited:
            violations.append(f"transaction {record.transaction_id} ({record.status}) has no audit entry")
        if row["idempotency_key"] != record.idempotency_key or row["amount_cents"] != record.amount:
            violations.append(f"transaction {record.transaction_id} does not match the request that got it")
        if record.status == 402 and row["status"] != "declined":
            violations.append(f"402 for {record.transaction_id} but the row is {row['status']}")
    report.checked.append("answered requests with row and audit")

    # I1: no agent-day holds more than its daily limit.
    held: Counter[tuple[str, Any]] = Counter()
    for row in rows:
        if row["status"] in HELD:
            held[(row["agent_id"], row["budget_day"])] += row["amount_cents"]
    for (agent_id, day), cents in held.items():
        report.checks["agent-days within the daily limit"] += 1
        if cents > limit_of[agent_id]:
            violations.append(f"agent {agent_id} holds {cents} on {day}, over its daily limit {limit_of[agent_id]}")
    report.checked.append("agent-days within the daily limit")

    # Every approved transaction was charged or declined.
    run.step = "reading the charge state of transactions left approved from PostgreSQL"
    for row in rows:
        report.checks["transactions charged or declined"] += 1
        if row["status"] == "approved":
            violations.append(
                f"transaction {row['id']} is still approved after settling (never charged): {_charge_state(row['id'])};"
                f" {_faults_near(report, row['id'])}"
            )
    report.checked.append("transactions charged or declined")

    # I4: one PaymentIntent per transaction; a succeeded one exactly when the row is completed.
    intents = _stripe_intents(run)
    for row in rows:
        mine = intents.get(row["id"], [])
        succeeded = [i for i in mine if i.get("status") == "succeeded"]
        report.checks["transactions checked in localstripe"] += 1
        if len(mine) > 1:
            shown = ", ".join(f"{i['id']}:{i.get('status')}" for i in mine)
            violations.append(
                f"transaction {row['id']} has {len(mine)} PaymentIntents ({shown}); {_faults_near(report, row['id'])}"
            )
        if row["status"] == "completed":
            if len(succeeded) != 1 or succeeded[0]["id"] != row["stripe_charge_id"]:
                violations.append(f"completed transaction {row['id']} does not match one succeeded PaymentIntent")
        elif succeeded:
            violations.append(f"transaction {row['id']} is {row['status']} but Stripe charged {succeeded[0]['id']}")
    report.checked.append("transactions checked in localstripe")

    # I6: nothing decided while Valkey was down (requests straddling the window's edges do not count).
    for window in (f for f in report.faults if f.name == "valkey_restart"):
        report.checks["Valkey outages with no decision inside"] += 1
        for record in report.requests:
            if record.status in (201, 202) and record.sent >= window.started and record.answered <= window.ended:
                violations.append(
                    f"{record.status} for key {record.idempotency_key} sent and answered while Valkey was down"
                )
    report.checked.append("Valkey outages with no decision inside")

    # I5: Redis's day counters agree with Postgres.
    run.step = "reading the day counters from Valkey"
    engine = budget.get_engine()
    days = {row["budget_day"] for row in rows}
    organization_of = {row["agent_id"]: row["organization_id"] for row in rows}
    for agent_id in [a for a in agent_ids if a in organization_of]:
        for day in days:
            report.checks["agent-days with Redis == Postgres"] += 1
            organization_id = uuid.UUID(organization_of[agent_id])
            in_redis = _retrying(lambda a=agent_id, d=day, o=organization_id: engine.spent(o, uuid.UUID(a), d))
            in_postgres = held.get((agent_id, day), 0)
            if in_redis != in_postgres:
                violations.append(f"agent {agent_id} on {day}: Redis counts {in_redis}, Postgres holds {in_postgres}")
    report.checked.append("agent-days with Redis == Postgres")

    run.step = "counting dead letters in PostgreSQL"
    with db.connection() as conn:
        dead = conn.execute(
            "SELECT count(*) AS n FROM job_dead_letters WHERE transaction_id = ANY(%s)",
            ([uuid.UUID(r["id"]) for r in rows],),
        ).fetchone()
    report.checks["jobs dead-lettered then re-driven"] = int(dead["n"]) if dead else 0
    report.checked.append("jobs dead-lettered then re-driven")


# The driver ---------------------------------------------------------------------------------------------------
def run_chaos(
    stack: Any,
    services: Any,
    *,
    duration_s: float,
    rate_per_s: float,
    faults: list[str],
    cycles: int = 1,
    valkey_down_s: float = 3.0,
    postgres_down_s: float = 3.0,
    stripe_outage_s: float = 5.0,
    settle_s: float = 30.0,
    agents: int = 4,
    workers: int = 4,
    seed: int = 7,
    dependency_timeout_s: float = DEPENDENCY_TIMEOUT_S,
    say: Callable[[str], None] = lambda line: None,
) -> ChaosReport:
    """Run the load for `duration_s`, inject `faults` (`cycles` times each) during it, settle, then check.

    A run that cannot reach a verdict (a service stopped answering, or the harness failed) returns its report with
    `reason` set and what it checked so far, instead of raising; the traceback goes to chaos-logs/harness.log.
    """
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; choose from {FAULTS}")
    began = time.monotonic()
    run = _Run(
        stack,
        services,
        duration_s=duration_s,
        rate_per_s=rate_per_s,
        seed=seed,
        dependency_timeout_s=dependency_timeout_s,
        say=say,
    )
    timed = [f for f in faults if f != "duplicate_deliveries"] * cycles
    grace_s = PHASE_TIMEOUT_FACTOR * dependency_timeout_s
    threads: list[threading.Thread] = []
    try:
        run.enter("setup")
        run.start_server("a", {})
        if "duplicate_deliveries" in faults:
            run.start_server("b", {"AGENTPAY_DUPLICATE_DELIVERIES": "2"})
        run.create_agents(agents)
        say(f"load: {rate_per_s:g}/s for {duration_s:g} s on {len(run.servers)} servers, faults {timed}")
        run.enter("load")
        threads = [threading.Thread(target=run.load_worker, args=(i, workers), daemon=True) for i in range(workers)]
        threads.append(threading.Thread(target=run.approver, daemon=True))
        load_started = time.monotonic()
        duplicates = run.fault("duplicate_deliveries", copies=2) if "duplicate_deliveries" in faults else None
        for thread in threads:
            thread.start()
        _inject(run, timed, load_started, valkey_down_s, postgres_down_s, stripe_outage_s)
        remaining = load_started + duration_s - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        run.stop_load.set()
        for thread in threads[:-1]:
            thread.join(30)
        if duplicates is not None:
            duplicates.ended = time.monotonic()
        say(f"load stopped after {len(run.report.requests)} attempts; settling")
        run.enter("settling")
        settling_began = time.monotonic()
        _within(settle_s + grace_s, run, lambda: _settle(run, settle_s))
        threads[-1].join(30)
        run.stop_servers()
        say(f"settled in {time.monotonic() - settling_began:.0f} s; checking")
        run.enter("checks")
        _within(grace_s, run, lambda: _check(run))
    except Exception as exc:
        run.report.reason = _failure_reason(run, exc)
        _keep_traceback(run, exc)
        say(f"no verdict: {run.report.reason}")
    finally:
        run.enter("")
        _clean_up(run, threads)
    run.report.wall_s = time.monotonic() - began
    return run.report


def _within(seconds: float, run: _Run, phase: Callable[[], None]) -> None:
    """Run a phase in a thread of its own, so that a service that hangs (rather than fails) cannot hang the run."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            phase()
        except BaseException as exc:  # handed to the caller, not printed by the thread
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True, name=f"chaos-{run.phase}")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise PhaseHung(f"no answer within {seconds:g} s while {run.step}")
    if outcome[0] is not None:
        raise outcome[0]


def _failure_reason(run: _Run, exc: BaseException) -> str:
    """One line saying which service stopped answering, in which phase, doing what."""
    if isinstance(exc, ServiceStopped):
        return f"{exc.service} stopped answering during {run.phase}: {exc.detail}"
    if isinstance(exc, PhaseHung):
        return f"{run.phase} got {exc}"
    message = str(exc).strip()
    detail = f"{type(exc).__name__}: {message.splitlines()[0]}" if message else type(exc).__name__
    service = None
    if isinstance(exc, psycopg.Error):
        service = "PostgreSQL"
    elif isinstance(exc, redis.RedisError):
        service = "Valkey"
    elif isinstance(exc, httpx.HTTPError):
        try:
            url = str(exc.request.url)
        except RuntimeError:  # raised without a request
            url = ""
        service = "localstripe" if url.startswith(run.services.stripe_api_base) else "an AgentPay server"
    if service is not None:
        return f"{service} stopped answering during {run.phase} ({run.step}): {detail}"
    return f"the harness failed during {run.phase} ({run.step}): {detail}; traceback in chaos-logs/harness.log"


def _keep_traceback(run: _Run, exc: BaseException) -> None:
    with suppress(OSError):
        run.logs.mkdir(parents=True, exist_ok=True)
        with (run.logs / "harness.log").open("a") as out:
            out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} run failed during {run.phase} ({run.step})\n")
            out.write("".join(traceback.format_exception(exc)))


def _clean_up(run: _Run, threads: list[threading.Thread]) -> None:
    """Stop the load and the servers, bring back what a fault stopped; whatever fails here fails the run."""
    run.stop_load.set()
    run.stop_approver.set()
    for step in (run.stop_servers, run.stack.start_redis, run.stack.start_postgres, _fresh_clients):
        try:
            step()
        except Exception as exc:
            _keep_traceback(run, exc)
            if run.report.reason is None:
                run.report.reason = f"cleaning up ({step.__name__}) failed: {type(exc).__name__}: {exc}"


def _cpu_seconds(pid: int | None) -> float | None:
    """A process's CPU time so far (user + system), or None when it is gone or unknown."""
    if pid is None:
        return None
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return float(times.user + times.system)


def _fresh_clients() -> None:
    """This process's pooled connections saw the restarts: the tests that run next start with new ones."""
    from shared.budget import engine as budget
    from shared.platform import aio, db, redis_store

    db.close_pool()
    aio.forget_loop_clients()
    redis_store.get_store.cache_clear()
    budget.get_engine.cache_clear()


def _inject(
    run: _Run, timed: list[str], load_started: float, valkey_down_s: float, postgres_down_s: float, outage_s: float
) -> None:
    """One fault after another, each in its own slot of the middle 80% of the load."""
    if not timed:
        return
    slot = 0.8 * run.duration_s / len(timed)
    for index, name in enumerate(timed):
        start_at = load_started + 0.1 * run.duration_s + index * slot
        time.sleep(max(0.0, start_at - time.monotonic()))
        run.say(f"fault: {name}")
        if name == "valkey_restart":
            run.valkey_restart(valkey_down_s)
        elif name == "postgres_restart":
            run.postgres_restart(postgres_down_s)
        elif name == "stripe_outage":
            run.stripe_outage(outage_s)
        elif name == "worker_kill":
            run.worker_kill()


# `python -m tests.chaos.scenario --long` ----------------------------------------------------------------------
@contextmanager
def standalone_services(home: Path) -> Iterator[tuple[Any, Any]]:
    """A stack of its own (as tests/conftest.py's `stack` and `services` fixtures make), for runs outside pytest."""
    from devtools.localstack import LocalStack
    from shared.platform import db
    from tests.support.stack import use_services

    stack = LocalStack(home / "stack")
    found = stack.start()
    try:
        use_services(found, home / "settings")
        yield stack, found
    finally:
        db.close_pool()
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    """Exit 0: passed; 1: violations; 2: no verdict (a service stopped answering, or the harness failed)."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.scenario", description=__doc__)
    parser.add_argument("--long", action="store_true", help="minutes of load, every fault twice, 30 s Stripe outage")
    parser.add_argument("--duration", type=float, help="seconds of load")
    parser.add_argument("--rate", type=float, help="payment requests per second")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated, from " + ", ".join(FAULTS))
    parser.add_argument(
        "--json", type=Path, help="write the report here (--long: .agentpay/chaos.json); kept logs go beside it"
    )
    parser.add_argument(
        "--dependency-timeout",
        type=float,
        default=DEPENDENCY_TIMEOUT_S,
        help=f"seconds one call may wait for a service while settling or checking (default {DEPENDENCY_TIMEOUT_S:g})",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    options: dict[str, Any] = {"duration_s": 25.0, "rate_per_s": 8.0}
    if args.long:
        options = {
            "duration_s": 300.0,
            "rate_per_s": 8.0,
            "cycles": 2,
            "valkey_down_s": 10.0,
            "postgres_down_s": 8.0,
            "stripe_outage_s": 30.0,
            "settle_s": 300.0,
            "agents": 6,
            "workers": 6,
        }
    if args.duration:
        options["duration_s"] = args.duration
    if args.rate:
        options["rate_per_s"] = args.rate
    out: Path | None = args.json or (REPO / ".agentpay" / "chaos.json" if args.long else None)
    kept = (out.parent if out else REPO / ".agentpay") / "chaos-logs"
    faults = [f for f in args.faults.split(",") if f]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"unknown faults {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
    report: ChaosReport | None = None
    with tempfile.TemporaryDirectory(prefix="agentpay-chaos-") as tmp:
        home = Path(tmp)
        try:
            with standalone_services(home) as (stack, found):
                report = run_chaos(
                    stack,
                    found,
                    faults=faults,
                    dependency_timeout_s=args.dependency_timeout,
                    say=lambda line: print(line, flush=True),
                    **options,
                )
        except Exception as exc:
            if report is not None:  # the run is over and its verdict stands
                print(f"stopping the embedded services failed: {type(exc).__name__}: {exc}")
            else:
                report = ChaosReport(duration_s=options["duration_s"], rate_per_s=options["rate_per_s"])
                report.reason = f"the embedded services did not start: {type(exc).__name__}: {exc}"
        assert report is not None  # run_chaos returned one, or the services did not start
        if report.verdict != "passed":
            _keep_logs(home, kept)
            print(f"the servers' logs are in {kept}")
    total_s = time.monotonic() - started
    print(report.table())
    print(f"{total_s:.0f} s in all, starting and stopping the embedded services included")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = {**report.as_dict(), "total_s": round(total_s, 1), "faults_requested": faults}
        out.write_text(json.dumps(summary, indent=2, default=str))
        print(f"wrote {out}")
    return EXIT_CODES[report.verdict]


def _keep_logs(home: Path, kept: Path) -> None:
    """The AgentPay servers' logs (chaos-logs) and the embedded services' (stack/logs), replacing an earlier run's."""
    shutil.rmtree(kept, ignore_errors=True)
    for source, name in ((home / "settings" / "chaos-logs", ""), (home / "stack" / "logs", "services")):
        if source.is_dir():
            shutil.copytree(source, kept / name, dirs_exist_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
