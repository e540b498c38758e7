"""The floor: the least a payment decision can cost with these services, measured with the drivers alone (redis-py,
psycopg; no HTTP, no AgentPay code), one at a time and from many tasks at once."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.client import CLIENTS, HUGE_DAILY, PER_TX, Agent, Org
from bench.report import summary_ms
from devtools.server_process import REPO

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
