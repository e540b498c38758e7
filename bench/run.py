#!/usr/bin/env python3
"""AgentPay benchmark (`make bench`): floor, decision, request, throughput, overspend, dashboard, cost growth, jobs.

It starts its own embedded stack in a fresh temporary home, applies the migrations, serves the local app with
uvicorn on loopback, creates an organization and agents through the API, measures, prints a table and writes
`.agentpay/bench.json`. See bench/README.md for what each figure means. It is a benchmark, not a test: nothing
here asserts on speed. It exits non-zero only when something is wrong (an error answer, or an overspend).

    .venv/bin/python bench/run.py            # the full run, about 2 minutes (1,000,000-row history)
    .venv/bin/python bench/run.py --quick    # small counts: a smoke check, well under a minute
    .venv/bin/python bench/run.py --json-only
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PAYMENT_PATH = "/v1/payment-request"
CLIENTS = 32
NORMAL_LOAD_AGENTS = 8  # the normal load is spread so no agent nears max_requests_per_minute = 10000
OVERSPEND_EVERY = 4  # every 4th request of each load client goes to the overspend agent
OVERSPEND_AMOUNT = 100
MAX_RPM = 10_000
HUGE_DAILY = 100_000_000_000  # MAX_DAILY_LIMIT_CENTS
PER_TX = 100_000_000


# Counts ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    floor: int
    floor_warmup: int
    decision: int
    decision_warmup: int
    request: int
    request_warmup: int
    probe_seconds: float  # the short load that compares worker counts and calibrates the throughput phase
    throughput_seconds: float  # the target length of the throughput phase
    floor_throughput_seconds: float  # the drivers-only load the throughput phase is read against
    turns: int  # rounds in which the floor and the request take turns
    max_throughput_requests: int
    history_rows: int  # the dashboard organization's bulk-generated transactions (one agent)
    small_history_rows: int  # the other agent's, for cost growth
    dashboard: int  # GET /v1/dashboard/transactions per page kind (first, deep)
    dashboard_warmup: int
    growth: int  # payment requests per agent in the cost growth phase
    growth_warmup: int
    job_path: int  # payment requests followed until `completed`
    job_path_warmup: int


FULL = Plan(2000, 200, 2000, 200, 2000, 200, 4.0, 10.0, 5.0, 10, 30_000, 1_000_000, 1_000, 200, 20, 600, 60, 50, 5)
QUICK = Plan(200, 30, 200, 30, 200, 30, 1.0, 2.0, 1.0, 2, 2_000, 20_000, 1_000, 50, 10, 100, 20, 10, 2)
HISTORY_CHUNK = 100_000  # bulk rows per INSERT ... SELECT FROM generate_series (and per progress line)
DEEP_FRACTION = 0.9  # the deep page starts after the row at 90% of the history (row 900,000 of 1,000,000)
JOB_POLL_SECONDS = 0.005
TURN_WARMUP = 10  # each turn of the floor and the request opens new connections: these iterations are not counted


# Output ---------------------------------------------------------------------------------------------------------
_quiet = False


def say(message: str) -> None:
    if not _quiet:
        print(message, flush=True)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of samples (q in 0..100)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "p50": round(percentile(ms, 50), 3),
        "p90": round(percentile(ms, 90), 3),
        "p99": round(percentile(ms, 99), 3),
        "max": round(max(ms), 3),
        "mean": round(sum(ms) / len(ms), 3),
    }


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(v, 2) for v in load],
    }


# Signing (API.md; written here so the benchmark does not use AgentPay code on the client side) --------------------
def signed_headers(api_key: str, method: str, path: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    key = hashlib.sha256(api_key.encode()).hexdigest().encode()
    mac = hmac.new(key, f"{ts}.{method}.{path}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Authorization": f"Bearer {api_key}",
        "AgentPay-Timestamp": ts,
        "AgentPay-Signature": "v1=" + mac,
        "Content-Type": "application/json",
    }


def payment_body(amount: int, key: str) -> bytes:
    return json.dumps(
        {"amount": amount, "merchant": "bench.example.com", "purpose": "benchmark", "idempotency_key": key},
        separators=(",", ":"),
    ).encode()


# Processes ------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tooling_of(tree: Path, module: str) -> str | None:
    """The package a checkout keeps a local-tooling module in: devtools/, or shared/ in commits before it."""
    return next((package for package in ("devtools", "shared") if (tree / package / f"{module}.py").exists()), None)


def http_protocol_of(tree: Path) -> str:
    """The uvicorn protocol a checkout's server runs with: ours bounds request heads; older commits had none."""
    package = _tooling_of(tree, "local_http")
    return f"{package}.local_http:BoundedHttpToolsProtocol" if package else "httptools"


def app_factory_of(tree: Path) -> str:
    """The local app (routes only) of a checkout, wherever that commit keeps it."""
    return f"{_tooling_of(tree, 'local_app') or 'devtools'}.local_app:build_local_app"


class Server:
    """The local app under uvicorn in its own session, so a Ctrl-C reaches only us and we stop it in order."""

    def __init__(
        self,
        *,
        workers: int,
        env: dict[str, str],
        log_path: Path,
        factory: str = "devtools.local_app:build_local_app",
        http: str = "devtools.local_http:BoundedHttpToolsProtocol",
    ) -> None:
        self.workers = workers
        self.port = free_port()
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            factory,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--http",
            http,
        ]
        if workers > 1:
            command += ["--workers", str(workers)]
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env={**env, "AGENTPAY_PORT": str(self.port)},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}; see {self._log.name}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    # With several workers each one opens its pools on its first requests: warm them all.
                    return
                conn.close()
            time.sleep(0.1)
        raise RuntimeError(f"the server did not become ready in {timeout:.0f}s; see {self._log.name}")

    def pids(self) -> list[int]:
        """The uvicorn process and its workers."""
        import psutil

        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(self.process.pid)
            return [parent.pid, *(c.pid for c in parent.children(recursive=True))]
        return [self.process.pid]

    def cpu_seconds(self) -> float:
        import psutil

        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the group is ours
                self.process.wait(5)
        # Workers of a supervisor that died uncleanly share its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()


# The API, for setup ---------------------------------------------------------------------------------------------
@dataclass
class Agent:
    id: str
    api_key: str


@dataclass
class Org:
    id: str
    admin_key: str
    agents: list[Agent] = field(default_factory=list)


def api_json(port: int, method: str, path: str, payload: Any, headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps(payload).encode()
        conn.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        if response.status not in (200, 201):
            raise RuntimeError(f"{method} {path} answered {response.status}: {data[:500]!r}")
        return json.loads(data)
    finally:
        conn.close()


def create_org(port: int) -> Org:
    body = api_json(port, "POST", "/v1/orgs", {"name": "Bench org", "admin_email": "bench@example.com"})
    return Org(id=body["organization"]["id"], admin_key=body["admin_key"])


def create_agent(port: int, org: Org, name: str, *, daily: int, per_tx: int, threshold: int) -> Agent:
    body = api_json(
        port,
        "POST",
        "/v1/dashboard/agents",
        {
            "name": name,
            "limits": {
                "daily_limit": daily,
                "per_transaction_limit": per_tx,
                "approval_threshold": threshold,
                "max_requests_per_minute": MAX_RPM,
            },
        },
        {"Authorization": f"Bearer {org.admin_key}"},
    )
    return Agent(id=body["agent"]["id"], api_key=body["api_key"])


def fast_agent(port: int, org: Org, name: str) -> Agent:
    """Every request of 1 cent is auto-approved and the day never runs out."""
    return create_agent(port, org, name, daily=HUGE_DAILY, per_tx=PER_TX, threshold=PER_TX)


# Phase 1: the floor ---------------------------------------------------------------------------------------------
# The statement shared/payments/requests.py sends (migrations/0006_record_payment_request.sql), written out here so
# the floor needs no AgentPay Python code: the transaction row and its audit row, no job.
FLOOR_INSERT_SQL = """
SELECT job_id FROM record_payment_request(
    %(id)s, %(agent_id)s, %(organization_id)s, %(amount)s, %(currency)s, %(merchant)s, %(purpose)s, %(context)s,
    %(status)s, %(reason)s, %(key)s, %(hash)s, %(day)s, %(callback_url)s, %(expires_at)s, %(now)s, %(actor)s,
    %(entries)s, '[]'::jsonb
)
"""


class FloorWork:
    """The floor's unit of work, driver arguments only: reserve_budget.lua's keys and arguments for a throwaway
    agent id (the full approve path: rate window, claim, hold, counter) and FLOOR_INSERT_SQL's parameters."""

    def __init__(self, org: Org, agent: Agent) -> None:
        self.script = (REPO / "shared" / "budget" / "reserve_budget.lua").read_text(encoding="utf-8")
        self.org, self.agent = org, agent
        self.prefix = f"ap:{{{uuid.uuid4()}}}"
        self.today = datetime.now(UTC).date()
        self.expire_at = int(
            datetime.combine(self.today + timedelta(days=3), datetime.min.time(), tzinfo=UTC).timestamp()
        )

    def args(self, i: int) -> tuple[list[str], list[str], dict[str, Any]]:
        from psycopg.types.json import Jsonb

        key = f"floor-{i}-{uuid.uuid4().hex}"
        tx_id = uuid.uuid4()
        request_hash = hashlib.sha256(key.encode()).hexdigest()
        day = self.today.isoformat()
        # reserve_budget.lua's keys and arguments (see its header): versions, holds, claim, rate, blocked,
        # credential, then the seven windows, each limited only by the daily limit here and rebuilt from "0".
        windows = ["merchant", "day", "week", "month", "org-day", "org-month", "count"]
        keys = [
            f"{self.prefix}:pv",
            f"{self.prefix}:o:pv",
            f"{self.prefix}:d:{day}:holds",
            f"{self.prefix}:idem:{hashlib.sha256(key.encode()).hexdigest()[:32]}",
            f"{self.prefix}:rate",
            f"{self.prefix}:blocked",
            f"{self.prefix}:credential",
            *(f"{self.prefix}:w:{name}:{day}" for name in windows),
        ]
        argv = [
            key,
            str(tx_id),
            request_hash,
            "1",
            str(int(time.time() * 1000)),
            f"req_{uuid.uuid4().hex}",
            str(self.expire_at),
            "1",
            "1",
            "",
            "1",
            "1000000000",
            "",
            "approved",
            "bench.example.com",
            "7",
        ]  # fmt: skip (ARGV[10] "": no published credential to match; ARGV[11] "1": versions read just now)
        for name in windows:
            argv += [str(HUGE_DAILY) if name == "day" else "", "1", str(self.expire_at), "0"]
        argv.append("2")  # the day window's index
        details = {
            "request_id": argv[5], "amount": 1, "currency": "usd", "merchant": "bench.example.com",
            "decision_reason": "auto_approved", "spent_before": 0,
            "limits": {"daily_limit": HUGE_DAILY, "per_transaction_limit": PER_TX, "approval_threshold": PER_TX},
        }  # fmt: skip
        params = {
            "id": tx_id, "agent_id": self.agent.id, "organization_id": self.org.id, "amount": 1, "currency": "usd",
            "merchant": "bench.example.com", "purpose": "benchmark", "context": Jsonb({}), "status": "approved",
            "reason": "auto_approved", "key": key, "hash": request_hash, "day": self.today, "callback_url": None,
            "expires_at": None, "now": datetime.now(UTC), "actor": f"agent:{self.agent.id}",
            "entries": Jsonb([{"action": "payment.approved", "details": details}]),
        }  # fmt: skip
        return keys, argv, params


def measure_floor(
    redis_url: str,
    database_url: str,
    org: Org,
    agent: Agent,
    n: int,
    warmup: int,
    samples_out: dict[str, list[float]] | None = None,
) -> dict[str, Any]:
    """One EVALSHA of reserve_budget.lua plus one autocommit INSERT of a row and its audit entry, per iteration."""
    import psycopg
    import redis
    from psycopg.rows import dict_row

    work = FloorWork(org, agent)
    r = redis.Redis.from_url(redis_url, decode_responses=True, protocol=2)
    sha = r.script_load(work.script)
    pg = psycopg.connect(database_url, autocommit=True, prepare_threshold=None, row_factory=dict_row)

    def one(i: int) -> tuple[float, float]:
        keys, argv, params = work.args(i)
        t0 = time.perf_counter()
        reply = r.evalsha(sha, len(keys), *keys, *argv)
        t1 = time.perf_counter()
        row = pg.execute(FLOOR_INSERT_SQL, params).fetchone()
        t2 = time.perf_counter()
        if reply[0] != "approved" or row is None:
            raise RuntimeError(f"floor iteration {i}: script said {reply!r}, row {row is not None}")
        return t1 - t0, t2 - t1

    try:
        for i in range(warmup):
            one(-1 - i)
        redis_s, pg_s, total_s = [], [], []
        for i in range(n):
            a, b = one(i)
            redis_s.append(a)
            pg_s.append(b)
            total_s.append(a + b)
    finally:
        pg.close()
        r.close()
    if samples_out is not None:
        for name, got in (("total", total_s), ("redis_eval", redis_s), ("postgres_insert", pg_s)):
            samples_out.setdefault(name, []).extend(got)
    return {"total": summary_ms(total_s), "redis_eval": summary_ms(redis_s), "postgres_insert": summary_ms(pg_s)}


def measure_floor_throughput(
    redis_url: str, database_url: str, org: Org, agent: Agent, seconds: float, pg_connections: int
) -> dict[str, Any]:
    """The floor's unit of work from CLIENTS concurrent tasks (redis.asyncio and psycopg's async pool with as many
    connections as the server's workers have together, on uvloop, in this process): the most decisions per second
    the two services give on this machine right now, to read the throughput phase against."""
    import psutil
    import redis.asyncio
    import uvloop
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    work = FloorWork(org, agent)

    async def main() -> tuple[int, float]:
        r = redis.asyncio.Redis.from_url(redis_url, decode_responses=True, protocol=2)
        pool = AsyncConnectionPool(
            database_url,
            min_size=pg_connections,
            max_size=pg_connections,
            kwargs={"autocommit": True, "prepare_threshold": None, "row_factory": dict_row},
            open=False,
        )
        await pool.open(wait=True)
        sha = await r.script_load(work.script)
        done = 0
        counter = iter(range(10**9))

        async def client(deadline: float) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                keys, argv, params = work.args(next(counter))
                reply = await r.evalsha(sha, len(keys), *keys, *argv)
                async with pool.connection() as conn:
                    row = await (await conn.execute(FLOOR_INSERT_SQL, params)).fetchone()
                if reply[0] != "approved" or row is None:
                    raise RuntimeError(f"floor throughput: script said {reply!r}, row {row is not None}")
                done += 1

        try:
            await asyncio.gather(*(client(time.monotonic() + 1.0) for _ in range(CLIENTS)))  # warm-up
            done = 0
            t0 = time.perf_counter()
            await asyncio.gather(*(client(time.monotonic() + seconds) for _ in range(CLIENTS)))
            return done, time.perf_counter() - t0
        finally:
            await pool.close()
            await r.aclose()

    cpu0 = psutil.cpu_times()
    done, elapsed = uvloop.run(main())
    cpu1 = psutil.cpu_times()
    idle = (cpu1.idle - cpu0.idle) + (getattr(cpu1, "iowait", 0) - getattr(cpu0, "iowait", 0))
    all_time = sum(cpu1) - sum(cpu0)
    return {
        "clients": CLIENTS,
        "postgres_connections": pg_connections,
        "seconds": round(elapsed, 3),
        "decisions": done,
        "rps": round(done / elapsed, 1),
        "machine_busy_fraction": round((all_time - idle) / all_time, 3) if all_time > 0 else 0.0,
    }


# Phase 2: the decision ------------------------------------------------------------------------------------------
def measure_decision(redis_url: str, n: int, warmup: int) -> dict[str, Any]:
    """shared.budget.engine.BudgetEngine.reserve over an AsyncRedisPyStore, in-process on uvloop as the server runs it
    (limits and day given, no Postgres)."""
    import uvloop

    from shared.budget import engine as budget
    from shared.platform.redis_store import AsyncRedisPyStore, RedisPyStore
    from shared.policy.model import MAX_REQUESTS_PER_MINUTE, Ceiling, Limits, Policy
    from shared.policy.store import Effective

    organization_id, agent_id = uuid.uuid4(), uuid.uuid4()
    effective = Effective(
        organization_id,
        Policy(limits=Limits(daily_limit_cents=HUGE_DAILY, per_tx_limit_cents=PER_TX, approval_threshold_cents=PER_TX,
                             max_requests_per_minute=MAX_REQUESTS_PER_MINUTE)),
        None,
        Ceiling(),
        1,
        1,
    )  # fmt: skip
    store = RedisPyStore(redis_url)
    awaited = AsyncRedisPyStore(redis_url)

    async def async_store() -> AsyncRedisPyStore:
        return awaited

    engine = budget.BudgetEngine(
        store,
        async_store=async_store,
        load_policy=lambda _agent_id: effective,
        load_windows=lambda query: budget.WindowTotals(sums=dict.fromkeys(query.windows, 0)),
        has_paid_merchant=lambda _agent_id, _merchant: True,
    )
    day = budget.budget_day("UTC", datetime.now(UTC))

    async def one(i: int) -> float:
        key = f"decision-{i}-{uuid.uuid4().hex}"
        request = budget.ReserveRequest(
            organization_id=organization_id,
            agent_id=agent_id,
            timezone="UTC",
            day=day,
            merchant="bench.example.com",
            amount_cents=1,
            idempotency_key=key,
            transaction_id=uuid.uuid4(),
            request_hash=hashlib.sha256(key.encode()).hexdigest(),
            request_id=f"req_{uuid.uuid4().hex}",
            now_ms=int(time.time() * 1000),
        )
        t0 = time.perf_counter()
        verdict = await engine.reserve(request)
        elapsed = time.perf_counter() - t0
        if not isinstance(verdict, budget.Decision) or verdict.outcome != "approved":
            raise RuntimeError(f"decision iteration {i}: {verdict!r}")
        return elapsed

    async def main() -> list[float]:
        try:
            for i in range(warmup):
                await one(-1 - i)
            return [await one(i) for i in range(n)]
        finally:
            await awaited.close()

    try:
        samples = uvloop.run(main())
    finally:
        store.close()
    return summary_ms(samples)


# Phase 3: one request at a time ---------------------------------------------------------------------------------
def measure_requests(
    port: int, agent: Agent, n: int, warmup: int, samples_out: list[float] | None = None
) -> dict[str, Any]:
    """POST /v1/payment-request, signed, over one keep-alive connection, one at a time."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    statuses: dict[int, int] = {}

    def one(i: int) -> float:
        body = payment_body(1, f"req-{i}-{uuid.uuid4().hex}")
        headers = signed_headers(agent.api_key, "POST", PAYMENT_PATH, body)
        t0 = time.perf_counter()
        conn.request("POST", PAYMENT_PATH, body, headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - t0
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.status != 201:
            raise RuntimeError(f"request {i} answered {response.status}: {data[:300]!r}")
        return elapsed

    try:
        for i in range(warmup):
            one(-1 - i)
        samples = [one(i) for i in range(n)]
    finally:
        conn.close()
    if samples_out is not None:
        samples_out.extend(samples)
    return {**summary_ms(samples), "statuses": statuses}


# Phase 4: throughput and overspend ------------------------------------------------------------------------------
# A raw HTTP/1.1 client on asyncio streams: one thread, no GIL contention with itself, about the least Python
# work per request there is, so most of the 2 cores go to the server.
async def _client(
    port: int,
    targets: list[tuple[Agent, int]],
    count: int | None,
    deadline: float | None,
    tally: dict[str, dict[int, int]],
    latencies: list[float],
    tag: str,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while (count is None or i < count) and (deadline is None or time.monotonic() < deadline):
            agent, amount = targets[i % len(targets)]
            body = payment_body(amount, f"{tag}-{uuid.uuid4().hex}")
            head = [f"POST {PAYMENT_PATH} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in signed_headers(agent.api_key, "POST", PAYMENT_PATH, body).items()]
            t0 = time.perf_counter()
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            response_head = await reader.readuntil(b"\r\n\r\n")
            status = int(response_head[9:12])
            length = None
            for line in response_head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                    break
            if length is None:
                raise RuntimeError(f"an answer without Content-Length: {response_head!r}")
            data = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            per_agent = tally.setdefault(agent.id, {})
            per_agent[status] = per_agent.get(status, 0) + 1
            if status not in (201, 402):
                raise RuntimeError(f"load request answered {status}: {data[:300]!r}")
            i += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass
class LoadResult:
    seconds: float
    tally: dict[str, dict[int, int]]
    latencies: list[float]
    client_cpu_s: float
    server_cpu_s: float
    system_busy: float  # fraction of all cores busy during the run (everything on the machine)

    def count(self, status: int, agent_id: str | None = None) -> int:
        return sum(v.get(status, 0) for k, v in self.tally.items() if agent_id is None or k == agent_id)

    @property
    def total(self) -> int:
        return sum(sum(v.values()) for v in self.tally.values())


def run_load(
    server: Server, plans: list[list[tuple[Agent, int]]], *, per_client: int | None, seconds: float | None, tag: str
) -> LoadResult:
    import psutil

    tally: dict[str, dict[int, int]] = {}
    latencies: list[float] = []

    async def main() -> float:
        deadline = time.monotonic() + seconds if seconds is not None else None
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                _client(server.port, plan, per_client, deadline, tally, latencies, f"{tag}-{n}")
                for n, plan in enumerate(plans)
            )
        )
        return time.perf_counter() - t0

    cpu0 = psutil.cpu_times()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    server0 = server.cpu_seconds()
    elapsed = asyncio.run(main())
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    server1 = server.cpu_seconds()
    cpu1 = psutil.cpu_times()
    idle = (cpu1.idle - cpu0.idle) + (getattr(cpu1, "iowait", 0) - getattr(cpu0, "iowait", 0))
    busy = (sum(cpu1) - sum(cpu0)) - idle
    all_time = sum(cpu1) - sum(cpu0)
    return LoadResult(
        seconds=elapsed,
        tally=tally,
        latencies=latencies,
        client_cpu_s=(usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
        server_cpu_s=server1 - server0,
        system_busy=busy / all_time if all_time > 0 else 0.0,
    )


def load_agents(port: int, org: Org, label: str) -> list[Agent]:
    return [fast_agent(port, org, f"{label}-{i}") for i in range(NORMAL_LOAD_AGENTS)]


def normal_plans(agents: list[Agent]) -> list[list[tuple[Agent, int]]]:
    return [[(agents[c % len(agents)], 1)] for c in range(CLIENTS)]


def probe(server: Server, org: Org, seconds: float, label: str) -> LoadResult:
    """A short load of 32 clients on fresh agents: warms the server and tells its approved decisions per second."""
    agents = load_agents(server.port, org, label)
    return run_load(server, normal_plans(agents), per_client=None, seconds=seconds, tag=label)


def held_cents(database_url: str, agent_id: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(amount_cents), 0), count(*) FROM transactions"
            " WHERE agent_id = %s AND status IN ('pending', 'approved', 'completed')",
            (agent_id,),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# Phase 5: the dashboard over a long history ---------------------------------------------------------------------
# Rows of the same shape the service writes: mostly completed (with a charge id), every 10th declined over the daily
# limit, one every 30 s going back from a day ago (so none counts against today's budget), 50 merchants.
HISTORY_SQL = """
INSERT INTO transactions (agent_id, organization_id, amount_cents, currency, merchant, purpose, context, status,
                          decision_reason, idempotency_key, request_hash, budget_day, stripe_charge_id, created_at,
                          updated_at, completed_at)
SELECT %(agent_id)s::uuid, %(organization_id)s::uuid, 100 + g %% 4900, 'usd', 'merchant-' || g %% 50 || '.example.com',
       'bulk history row', '{}'::jsonb,
       CASE WHEN g %% 10 = 0 THEN 'declined' ELSE 'completed' END,
       CASE WHEN g %% 10 = 0 THEN 'daily_limit_exceeded' ELSE 'auto_approved' END,
       %(tag)s::text || '-' || g, md5(%(tag)s::text || g), (t.at AT TIME ZONE 'UTC')::date,
       CASE WHEN g %% 10 = 0 THEN NULL ELSE 'pi_' || %(tag)s::text || '_' || g END,
       t.at, t.at, CASE WHEN g %% 10 = 0 THEN NULL ELSE t.at END
FROM generate_series(%(first)s::int, %(last)s::int) AS g
CROSS JOIN LATERAL (SELECT %(newest)s::timestamptz - make_interval(secs => g * 30) AS at) AS t
"""


def generate_history(database_url: str, *, org_id: str, agent_id: str, rows: int, tag: str) -> float:
    """Bulk-insert `rows` past transactions for one agent, in chunks; no audit rows (not needed to read pages)."""
    import psycopg

    newest = datetime.now(UTC) - timedelta(days=1)
    t0 = time.monotonic()
    with psycopg.connect(database_url, autocommit=True, prepare_threshold=None) as conn:
        for first in range(1, rows + 1, HISTORY_CHUNK):
            last = min(rows, first + HISTORY_CHUNK - 1)
            conn.execute(
                HISTORY_SQL,
                {"agent_id": agent_id, "organization_id": org_id, "tag": tag, "first": first, "last": last,
                 "newest": newest},
            )  # fmt: skip
            if rows > HISTORY_CHUNK:
                say(f"    {last:>9,} / {rows:,} rows ({time.monotonic() - t0:.0f}s)")
    return time.monotonic() - t0


def vacuum_analyze(database_url: str) -> float:
    import psycopg

    t0 = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE transactions")
    return time.monotonic() - t0


def row_id_at(database_url: str, org_id: str, offset: int) -> str:
    """The id of the organization's row at `offset` in the dashboard's order (taken once, with OFFSET, here only)."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT id FROM transactions WHERE organization_id = %s"
            " ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
            (org_id, offset),
        ).fetchone()
    if row is None:
        raise RuntimeError(f"no row at offset {offset}")
    return str(row[0])


def measure_dashboard(port: int, admin_key: str, n: int, warmup: int, starting_after: str | None) -> dict[str, Any]:
    """GET /v1/dashboard/transactions (25 rows) over one keep-alive connection, one at a time."""
    path = "/v1/dashboard/transactions" + (f"?starting_after={starting_after}" if starting_after else "")
    headers = {"Authorization": f"Bearer {admin_key}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def one(i: int) -> float:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - t0
        if response.status != 200:
            raise RuntimeError(f"dashboard request {i} answered {response.status}: {data[:300]!r}")
        page = json.loads(data)
        if len(page["data"]) != 25 or not page["has_more"]:
            raise RuntimeError(f"dashboard request {i}: {len(page['data'])} rows, has_more {page['has_more']}")
        return elapsed

    try:
        for i in range(warmup):
            one(-1 - i)
        samples = [one(i) for i in range(n)]
    finally:
        conn.close()
    return summary_ms(samples)


# Phase 6: cost growth -------------------------------------------------------------------------------------------
def measure_growth(port: int, agents: dict[str, Agent], n: int, warmup: int, rounds: int = 4) -> dict[str, Any]:
    """POST /v1/payment-request p50 per agent, the agents taking turns (A B B A ...) so drift hits both alike."""
    samples: dict[str, list[float]] = {label: [] for label in agents}
    order = list(agents)
    for agent in agents.values():
        measure_requests(port, agent, warmup, 0)  # warm-up, not counted
    for r in range(rounds):
        for label in order if r % 2 == 0 else reversed(order):
            measure_requests(port, agents[label], n // rounds, 0, samples_out=samples[label])
    return {label: summary_ms(values) for label, values in samples.items()}


# Phase 7: the job path ------------------------------------------------------------------------------------------
def measure_job_path(port: int, agent: Agent, n: int, warmup: int) -> dict[str, Any]:
    """From POST /v1/payment-request (auto-approved) until GET /v1/transactions/{id} reads `completed`.

    The server runs its local job dispatcher: the charge job goes over HTTP to the charge worker, which calls
    localstripe. The client polls every 5 ms on its own keep-alive connection.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    polls: list[int] = []

    def one(i: int) -> float:
        body = payment_body(1, f"job-{i}-{uuid.uuid4().hex}")
        t0 = time.perf_counter()
        conn.request("POST", PAYMENT_PATH, body, signed_headers(agent.api_key, "POST", PAYMENT_PATH, body))
        response = conn.getresponse()
        data = response.read()
        if response.status != 201:
            raise RuntimeError(f"job path request {i} answered {response.status}: {data[:300]!r}")
        path = f"/v1/transactions/{json.loads(data)['id']}"
        count = 0
        while True:
            time.sleep(JOB_POLL_SECONDS)
            conn.request("GET", path, headers=signed_headers(agent.api_key, "GET", path, b""))
            response = conn.getresponse()
            data = response.read()
            count += 1
            status = json.loads(data).get("status") if response.status == 200 else None
            if status == "completed":
                elapsed = time.perf_counter() - t0
                polls.append(count)
                return elapsed
            if status != "approved" or time.perf_counter() - t0 > 30:
                raise RuntimeError(f"job path {i}: {response.status} {data[:300]!r} after {count} polls")

    try:
        for i in range(warmup):
            one(-1 - i)
        polls.clear()
        samples = [one(i) for i in range(n)]
    finally:
        conn.close()
    return {**summary_ms(samples), "polls_p50": percentile([float(p) for p in polls], 50)}


# The run --------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so the finally blocks stop the server and the stack either way."""

    def handle(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def server_env(services: Any, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "UPSTASH_REDIS_REST_URL",
            "UPSTASH_REDIS_REST_TOKEN",
            "STRIPE_SECRET_KEY",
            "SENTRY_DSN",
            "AGENTPAY_SECRETS_ARN",
            "AWS_LAMBDA_FUNCTION_NAME",
            "QSTASH_TOKEN",
            "RESEND_API_KEY",
        }
    }
    env.update(
        {
            "AGENTPAY_ENV": "local",
            "AGENTPAY_HOME": str(home),
            "DATABASE_URL": services.database_url,
            "REDIS_URL": services.redis_url,
            "STRIPE_API_BASE": services.stripe_api_base,
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
    )
    return env


def server_db_pool_size(env: dict[str, str]) -> int:
    """Postgres connections a server worker's payment requests use (shared.config's db_async_pool_max_size)."""
    from shared.config import Settings

    default = Settings.model_fields["db_async_pool_max_size"].default
    return int(env.get("DB_ASYNC_POOL_MAX_SIZE", default))


def timed(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.monotonic()
    result = fn()
    say(f"    done in {time.monotonic() - t0:.1f}s")
    return result


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="agentpay-bench-"))
    stack = None
    server: Server | None = None
    job_server: Server | None = None
    result: dict[str, Any] = {}
    machine = machine_info()
    say(f"AgentPay benchmark ({'quick' if args.quick else 'full'}), temporary home {tmp}")
    say(f"  machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; the load generator shares them")
    try:
        from devtools.localstack import LocalStack
        from devtools.migrate import apply_migrations

        say("[setup] starting PostgreSQL, Valkey and localstripe")
        stack = LocalStack(tmp / "stack")
        services = timed("setup", stack.start)
        apply_migrations(services.database_url)
        env = server_env(services, tmp / "app")
        (tmp / "app").mkdir()

        def start_server(workers: int) -> Server:
            s = Server(workers=workers, env=env, log_path=tmp / "server.log")
            s.wait_ready()
            return s

        # Which worker count serves more: a short probe with each, fresh agents every time.
        candidates = [args.workers] if args.workers else ([1] if args.quick else [1, 2])
        probes: dict[str, Any] = {}
        org: Org | None = None
        best_workers = candidates[0]
        if len(candidates) > 1:
            # Both servers run side by side (only the probed one gets load) and are probed in A B B A order,
            # so a burst from a neighbour on this shared machine does not decide alone.
            say(f"[workers] probing uvicorn --workers {' vs '.join(map(str, candidates))}: {CLIENTS} clients,"
                f" {len(candidates) * 2} rounds of {plan.probe_seconds / 2:.0f}s in A B B A order")  # fmt: skip
            servers = {w: start_server(w) for w in candidates}
            try:
                org = create_org(servers[candidates[0]].port)
                for w, s in servers.items():
                    probe(s, org, 1.0, f"warm-w{w}")
                runs: dict[int, list[LoadResult]] = {w: [] for w in candidates}
                for w in [*candidates, *reversed(candidates)]:
                    got = probe(servers[w], org, plan.probe_seconds / 2, f"probe-w{w}-{len(runs[w])}")
                    runs[w].append(got)
                    say(f"    --workers {w}: {got.count(201) / got.seconds:.0f} approved/s")
            finally:
                for s in servers.values():
                    s.stop()
            for w, got_runs in runs.items():
                seconds = sum(g.seconds for g in got_runs)
                probes[str(w)] = {
                    "approved_rps": round(sum(g.count(201) for g in got_runs) / seconds, 1),
                    "p50_ms": round(percentile([x for g in got_runs for x in g.latencies], 50) * 1000, 2),
                    "server_cpu_cores": round(sum(g.server_cpu_s for g in got_runs) / seconds, 2),
                }
            best_workers = max(candidates, key=lambda w: probes[str(w)]["approved_rps"])
            everyone = ", ".join(f"{w}: {v['approved_rps']:.0f}" for w, v in probes.items())
            say(f"    keeping --workers {best_workers} (approved/s {everyone})")

        say(f"[server] uvicorn --workers {best_workers}")
        server = start_server(best_workers)
        org = org or create_org(server.port)
        floor_agent = fast_agent(server.port, org, "floor")
        request_agent = fast_agent(server.port, org, "request")

        # The floor and the request take turns (A B B A rounds), so a drift of this shared machine's speed hits both
        # alike and ratio_p50 compares them under the same conditions.
        rounds = plan.turns
        say(f"[floor + request] {plan.floor} x (Redis EVALSHA reserve_budget.lua + Postgres INSERT row+audit) and"
            f" {plan.request} x POST {PAYMENT_PATH} (one keep-alive client), taking turns in {rounds} rounds,"
            f" {plan.floor_warmup} + {plan.request_warmup} warm-up")  # fmt: skip
        floor_raw: dict[str, list[float]] = {}
        request_raw: list[float] = []
        profiler = start_py_spy(args.py_spy, server) if args.py_spy and args.py_spy_phase == "request" else None
        started_turns = time.monotonic()
        try:
            for turn in range(rounds):
                first = turn == 0
                parts = [
                    lambda first=first: measure_floor(
                        services.redis_url, services.database_url, org, floor_agent, plan.floor // rounds,
                        plan.floor_warmup if first else TURN_WARMUP, floor_raw,
                    ),
                    lambda first=first: measure_requests(
                        server.port, request_agent, plan.request // rounds,
                        plan.request_warmup if first else TURN_WARMUP, request_raw,
                    ),
                ]  # fmt: skip
                for part in parts if turn % 4 in (0, 3) else reversed(parts):
                    part()
        finally:
            if profiler is not None:
                stop_py_spy(profiler)
        floor = {name: summary_ms(samples) for name, samples in floor_raw.items()}
        request = summary_ms(request_raw)
        say(f"    done in {time.monotonic() - started_turns:.1f}s")

        say(f"[decision] {plan.decision} x BudgetEngine.reserve in-process, {plan.decision_warmup} warm-up")
        decision = timed("decision", lambda: measure_decision(services.redis_url, plan.decision, plan.decision_warmup))

        # Throughput: calibrate the request count so the phase lasts about throughput_seconds, then size the
        # overspend agent's day so the load exhausts it halfway through its share.
        say(f"[throughput] calibrating with {CLIENTS} clients for {plan.probe_seconds:.0f}s")
        calib = probe(server, org, plan.probe_seconds, "calibrate")
        est_rps = max(50.0, calib.total / calib.seconds)
        per_client = int(est_rps * plan.throughput_seconds / CLIENTS)
        per_client = max(OVERSPEND_EVERY * 4, min(per_client, plan.max_throughput_requests // CLIENTS))
        per_client -= per_client % OVERSPEND_EVERY
        total = per_client * CLIENTS
        overspend_requests = total // OVERSPEND_EVERY
        overspend_limit = OVERSPEND_AMOUNT * (overspend_requests // 2)
        agents = load_agents(server.port, org, "load")
        overspend_agent = create_agent(
            server.port, org, "overspend", daily=overspend_limit, per_tx=OVERSPEND_AMOUNT, threshold=OVERSPEND_AMOUNT
        )
        plans = []
        for c in range(CLIENTS):
            normal = (agents[c % len(agents)], 1)
            plans.append([(overspend_agent, OVERSPEND_AMOUNT)] + [normal] * (OVERSPEND_EVERY - 1))
        say(f"[throughput] {total} requests from {CLIENTS} concurrent clients (asyncio, one keep-alive connection"
            f" each), 1 in {OVERSPEND_EVERY} to the overspend agent (daily limit {overspend_limit} cents ="
            f" {overspend_requests // 2} x {OVERSPEND_AMOUNT}, offered {overspend_requests})")  # fmt: skip
        # Warm-up, not counted: every client's first requests reach the new agents through both workers (their caches,
        # the agents' limits and day counters in Redis). The overspend agent's are over its per-transaction limit,
        # declined without a hold, so its day stays exactly as sized.
        warm_plans = [[(overspend_agent, OVERSPEND_AMOUNT + 1), plan[1]] for plan in plans]
        run_load(server, warm_plans, per_client=2, seconds=None, tag="load-warm")
        profiler = start_py_spy(args.py_spy, server) if args.py_spy and args.py_spy_phase == "throughput" else None
        try:
            load = timed("throughput", lambda: run_load(server, plans, per_client=per_client, seconds=None, tag="load"))
        finally:
            if profiler is not None:
                stop_py_spy(profiler)
        approved = load.count(201)
        throughput = approved / load.seconds
        say(f"    {approved} approved in {load.seconds:.2f}s = {throughput:.0f}/s; load generator used"
            f" {load.client_cpu_s / load.seconds:.2f} cores, server {load.server_cpu_s / load.seconds:.2f} cores,"
            f" machine {load.system_busy * 100:.0f}% busy")  # fmt: skip

        say("[overspend] summing the overspend agent's holds in Postgres")
        held, held_rows = held_cents(services.database_url, overspend_agent.id)
        overspend = max(0, held - overspend_limit)
        o201, o402 = load.count(201, overspend_agent.id), load.count(402, overspend_agent.id)
        say(f"    held {held} of {overspend_limit} cents: overspend {overspend}; answers 201: {o201}, 402: {o402}")

        pg_connections = best_workers * server_db_pool_size(env)
        say(f"[floor throughput] the floor's EVALSHA + INSERT from {CLIENTS} concurrent tasks, drivers only"
            f" ({pg_connections} Postgres connections, as the server's workers have),"
            f" {plan.floor_throughput_seconds:.0f}s")  # fmt: skip
        floor_load = measure_floor_throughput(
            services.redis_url, services.database_url, org, floor_agent, plan.floor_throughput_seconds, pg_connections
        )
        all_rps = load.total / load.seconds
        throughput_vs_floor = round(all_rps / floor_load["rps"], 2) if floor_load["rps"] else None
        say(f"    {floor_load['rps']:.0f} decisions/s (machine {floor_load['machine_busy_fraction'] * 100:.0f}% busy);"
            f" the service's {all_rps:.0f} decisions/s are {throughput_vs_floor} of it")  # fmt: skip

        # A long history: one organization whose agent has history_rows past transactions, and another agent
        # (of the first organization) with small_history_rows, generated in bulk straight into PostgreSQL.
        history_org = create_org(server.port)
        history_agent = fast_agent(server.port, history_org, "history")
        small_agent = fast_agent(server.port, org, "history-small")
        say(f"[history] {plan.history_rows:,} transactions for one agent of a new organization and"
            f" {plan.small_history_rows:,} for another agent (INSERT ... SELECT FROM generate_series,"
            f" {HISTORY_CHUNK:,} rows per statement)")  # fmt: skip
        history_s = generate_history(
            services.database_url, org_id=history_org.id, agent_id=history_agent.id, rows=plan.history_rows, tag="big"
        )
        generate_history(
            services.database_url, org_id=org.id, agent_id=small_agent.id, rows=plan.small_history_rows, tag="small"
        )
        say(f"    generated in {history_s:.1f}s; VACUUM ANALYZE transactions")
        vacuum_s = timed("vacuum", lambda: vacuum_analyze(services.database_url))
        deep_offset = int(plan.history_rows * DEEP_FRACTION)
        deep_id = row_id_at(services.database_url, history_org.id, deep_offset)

        say(f"[dashboard] {plan.dashboard} x GET /v1/dashboard/transactions (25 rows) for the first page and"
            f" {plan.dashboard} for the page after row {deep_offset:,} (starting_after), {plan.dashboard_warmup}"
            " warm-up each")  # fmt: skip
        dash_first = measure_dashboard(server.port, history_org.admin_key, plan.dashboard, plan.dashboard_warmup, None)
        dash_deep = measure_dashboard(
            server.port, history_org.admin_key, plan.dashboard, plan.dashboard_warmup, deep_id
        )
        say(f"    first page p50 {dash_first['p50']:.2f} p99 {dash_first['p99']:.2f} ms; deep page"
            f" p50 {dash_deep['p50']:.2f} p99 {dash_deep['p99']:.2f} ms")  # fmt: skip

        say(f"[cost growth] {plan.growth} x POST {PAYMENT_PATH} for each agent: {plan.small_history_rows:,} vs"
            f" {plan.history_rows:,} prior transactions, taking turns, {plan.growth_warmup} warm-up each")  # fmt: skip
        growth = timed("cost growth", lambda: measure_growth(
            server.port, {"small": small_agent, "large": history_agent}, plan.growth, plan.growth_warmup))  # fmt: skip
        growth_ratio = round(growth["large"]["p50"] / growth["small"]["p50"], 3) if growth["small"]["p50"] else None
        say(f"    p50 {growth['small']['p50']:.3f} ms at {plan.small_history_rows:,},"
            f" {growth['large']['p50']:.3f} ms at {plan.history_rows:,}: ratio {growth_ratio}")  # fmt: skip

        say(f"[job path] a second server with the local job dispatcher (build_server_app); {plan.job_path} x"
            f" POST {PAYMENT_PATH} then GET /v1/transactions/{{id}} every {JOB_POLL_SECONDS * 1000:.0f} ms until"
            f" completed, {plan.job_path_warmup} warm-up")  # fmt: skip
        job_server = Server(
            workers=1,
            # No sweep during the run: it would re-drive the thousands of approved, never charged rows above.
            env={**env, "SWEEP_INTERVAL_SECONDS": "3600"},
            log_path=tmp / "server.log",
            factory="devtools.local_app:build_server_app",
        )
        job_server.wait_ready()
        job_port = job_server.port
        job_agent = fast_agent(job_port, org, "job-path")
        job_path = timed("job path", lambda: measure_job_path(
            job_port, job_agent, plan.job_path, plan.job_path_warmup))  # fmt: skip
        job_server.stop()
        job_server = None
        say(
            f"    p50 {job_path['p50']:.2f} ms, p99 {job_path['p99']:.2f} ms ({job_path['polls_p50']:.0f} polls at p50)"
        )

        floor_p50 = floor["total"]["p50"]
        result = {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "quick" if args.quick else "full",
            "machine": machine,
            "workers": best_workers,
            "workers_probe": probes or None,
            "floor_p50_ms": floor_p50,
            "floor_p99_ms": floor["total"]["p99"],
            "decision_p50_ms": decision["p50"],
            "decision_p99_ms": decision["p99"],
            "request_p50_ms": request["p50"],
            "request_p99_ms": request["p99"],
            "ratio_p50": round(request["p50"] / floor_p50, 2) if floor_p50 > 0 else None,
            "throughput_rps": round(throughput, 1),
            "floor_throughput_rps": floor_load["rps"],
            "throughput_vs_floor": throughput_vs_floor,
            "overspend_cents": overspend,
            "dashboard_p50_ms": max(dash_first["p50"], dash_deep["p50"]),
            "dashboard_p99_ms": max(dash_first["p99"], dash_deep["p99"]),
            "cost_growth": {
                "p50_ms_at_1k": growth["small"]["p50"],
                "p50_ms_at_1m": growth["large"]["p50"],
                "ratio": growth_ratio,
            },
            "job_path_p50_ms": job_path["p50"],
            "job_path_p99_ms": job_path["p99"],
            "notes": {
                "throughput": "the load generator runs on the same cores as the server, PostgreSQL and Valkey",
                "throughput_vs_floor": (
                    "all decisions per second (201 and 402) of the throughput phase over floor_throughput_rps, the"
                    " drivers-only EVALSHA + INSERT at the same concurrency in the same run: the share of what the"
                    " services allow on this machine right now that the service reaches (noise hits both)"
                ),
                "dashboard": "the worse of the first page and the deep page; both in details.dashboard_ms",
                "cost_growth": (
                    f"history sizes {plan.small_history_rows:,} and {plan.history_rows:,} rows"
                    + (" (--quick scales the 1m case down)" if args.quick else "")
                ),
            },
            "details": {
                "dashboard_ms": {
                    "history_rows": plan.history_rows,
                    "deep_page_after_row": deep_offset,
                    "first_page": dash_first,
                    "deep_page": dash_deep,
                    "generate_s": round(history_s, 1),
                    "vacuum_analyze_s": round(vacuum_s, 1),
                },
                "cost_growth_ms": {
                    f"at_{plan.small_history_rows}": growth["small"],
                    f"at_{plan.history_rows}": growth["large"],
                },
                "job_path_ms": job_path,
                "floor_ms": floor,
                "floor_throughput": floor_load,
                "decision_ms": decision,
                "request_ms": request,
                "throughput": {
                    "clients": CLIENTS,
                    "seconds": round(load.seconds, 3),
                    "requests": load.total,
                    "answered_201": approved,
                    "answered_402": load.count(402),
                    "all_decisions_rps": round(load.total / load.seconds, 1),
                    "latency_ms": summary_ms(load.latencies),
                    "load_generator_cpu_cores": round(load.client_cpu_s / load.seconds, 2),
                    "server_cpu_cores": round(load.server_cpu_s / load.seconds, 2),
                    "machine_busy_fraction": round(load.system_busy, 3),
                },
                "overspend": {
                    "daily_limit_cents": overspend_limit,
                    "amount_cents": OVERSPEND_AMOUNT,
                    "offered": overspend_requests,
                    "answered_201": o201,
                    "answered_402": o402,
                    "held_cents": held,
                    "held_rows": held_rows,
                },
            },
            "counts": {
                "floor": plan.floor,
                "floor_warmup": plan.floor_warmup,
                "decision": plan.decision,
                "decision_warmup": plan.decision_warmup,
                "request": plan.request,
                "request_warmup": plan.request_warmup,
                "throughput_requests": load.total,
                "throughput_201": approved,
                "throughput_402": load.count(402),
                "overspend_201": o201,
                "overspend_402": o402,
                "history_rows": plan.history_rows,
                "small_history_rows": plan.small_history_rows,
                "dashboard_per_page": plan.dashboard,
                "dashboard_warmup": plan.dashboard_warmup,
                "growth_per_agent": plan.growth,
                "growth_warmup": plan.growth_warmup,
                "job_path": plan.job_path,
                "job_path_warmup": plan.job_path_warmup,
            },
            "elapsed_s": None,
        }
    finally:
        if job_server is not None:
            job_server.stop()
        if server is not None:
            say("[shutdown] stopping the server")
            server.stop()
        if stack is not None:
            say("[shutdown] stopping the local stack")
            stack.stop()
        if args.keep:
            say(f"  kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    result["elapsed_s"] = round(time.monotonic() - started, 1)
    out = Path(args.out) if args.out else REPO / ".agentpay" / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json_only:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, out)
    problems = []
    if result["overspend_cents"] != 0:
        problems.append(f"OVERSPEND: {result['overspend_cents']} cents held beyond the daily limit (invariant I1)")
    if result["details"]["overspend"]["held_rows"] != result["counts"]["overspend_201"]:
        problems.append("the overspend agent's approved rows differ from its 201 answers")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2 if problems else 0


def print_table(r: dict[str, Any], out: Path) -> None:
    d = r["details"]
    t = d["throughput"]
    dm = d["dashboard_ms"]
    cg = r["cost_growth"]
    rows = [
        ("floor (Redis EVAL + PG insert)", f"{r['floor_p50_ms']:.3f}", f"{r['floor_p99_ms']:.3f}", ""),
        ("  of which Redis EVALSHA", f"{d['floor_ms']['redis_eval']['p50']:.3f}",
         f"{d['floor_ms']['redis_eval']['p99']:.3f}", ""),
        ("  of which Postgres INSERT", f"{d['floor_ms']['postgres_insert']['p50']:.3f}",
         f"{d['floor_ms']['postgres_insert']['p99']:.3f}", ""),
        ("decision (BudgetEngine.reserve)", f"{r['decision_p50_ms']:.3f}", f"{r['decision_p99_ms']:.3f}", ""),
        ("request (POST /v1/payment-request)", f"{r['request_p50_ms']:.3f}", f"{r['request_p99_ms']:.3f}",
         f"ratio_p50 = {r['ratio_p50']}"),
        (f"throughput ({t['clients']} clients)", f"{t['latency_ms']['p50']:.3f}", f"{t['latency_ms']['p99']:.3f}",
         f"{r['throughput_rps']:.0f} approved/s"),
        (f"floor throughput ({t['clients']} tasks)", "", "",
         f"{r['floor_throughput_rps']:.0f}/s; service/floor = {r['throughput_vs_floor']}"),
        (f"dashboard first page ({dm['history_rows']:,} rows)", f"{dm['first_page']['p50']:.3f}",
         f"{dm['first_page']['p99']:.3f}", ""),
        (f"dashboard page after row {dm['deep_page_after_row']:,}", f"{dm['deep_page']['p50']:.3f}",
         f"{dm['deep_page']['p99']:.3f}", ""),
        (f"request, agent with {r['counts']['small_history_rows']:,} rows", f"{cg['p50_ms_at_1k']:.3f}", "", ""),
        (f"request, agent with {dm['history_rows']:,} rows", f"{cg['p50_ms_at_1m']:.3f}", "",
         f"cost growth ratio {cg['ratio']}"),
        ("job path (POST -> completed)", f"{r['job_path_p50_ms']:.3f}", f"{r['job_path_p99_ms']:.3f}",
         f"polled every {JOB_POLL_SECONDS * 1000:.0f} ms"),
    ]  # fmt: skip
    print()
    print(f"{'figure':<40}{'p50 ms':>10}{'p99 ms':>10}  note")
    print("-" * 80)
    for name, p50, p99, note in rows:
        print(f"{name:<40}{p50:>10}{p99:>10}  {note}")
    print("-" * 80)
    o = d["overspend"]
    print(f"overspend_cents = {r['overspend_cents']}  (agent limit {o['daily_limit_cents']}, held {o['held_cents']};"
          f" 201: {o['answered_201']}, 402: {o['answered_402']})")  # fmt: skip
    print(
        f"workers = {r['workers']}"
        + (
            f"  (probe approved/s: {json.dumps({k: v['approved_rps'] for k, v in r['workers_probe'].items()})})"
            if r["workers_probe"]
            else ""
        )
    )  # noqa: E501
    print(f"throughput context: load generator {t['load_generator_cpu_cores']} cores, server {t['server_cpu_cores']}"
          f" cores, machine {t['machine_busy_fraction'] * 100:.0f}% busy, of {r['machine']['cpu_count']} cores"
          " shared by the load generator, the server, PostgreSQL and Valkey")  # fmt: skip
    print(f"dashboard_p50_ms = {r['dashboard_p50_ms']}, dashboard_p99_ms = {r['dashboard_p99_ms']} (the worse page);"
          f" history generated in {dm['generate_s']}s, VACUUM ANALYZE {dm['vacuum_analyze_s']}s")  # fmt: skip
    print(f"written to {out} ({r['elapsed_s']}s)")


# py-spy on the server during the request phase (optional) -------------------------------------------------------
# Extra py-spy flags, e.g. AGENTPAY_BENCH_PY_SPY_FLAGS="--idle" to see time spent waiting on Redis and Postgres.
PY_SPY_EXTRA = os.environ.get("AGENTPAY_BENCH_PY_SPY_FLAGS", "").split()


def start_py_spy(path: str, server: Server) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    pids = server.pids()
    pid = pids[-1] if server.workers > 1 else pids[0]
    fmt = "speedscope" if path.endswith(".json") else ("flamegraph" if path.endswith(".svg") else "raw")
    say(f"    py-spy record -p {pid} -> {path} ({fmt})")
    proc = subprocess.Popen(
        [exe, "record", "-p", str(pid), "-o", path, "-f", fmt, "-r", "500", "--nonblocking", *PY_SPY_EXTRA],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let it attach
    return proc


def stop_py_spy(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    global _quiet
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke check (< 60 s)")
    parser.add_argument("--json-only", action="store_true", help="no progress lines; print only the JSON result")
    parser.add_argument("--workers", type=int, choices=(1, 2, 3, 4), help="skip the 1-vs-2 probe and use this many")
    parser.add_argument("--out", help="where to write the JSON (default .agentpay/bench.json in the repo)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs) afterwards")
    parser.add_argument("--py-spy", metavar="FILE", help="profile the server with py-spy during one phase"
                        " (.svg flamegraph, .json speedscope, else raw collapsed stacks); the figures of that phase"
                        " then include the sampler's overhead")  # fmt: skip
    parser.add_argument("--py-spy-phase", choices=("request", "throughput"), default="request")
    args = parser.parse_args(argv)
    _quiet = args.json_only
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with interrupts_raise():
        try:
            return run(args)
        except KeyboardInterrupt:
            print("interrupted: server and local stack stopped", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
