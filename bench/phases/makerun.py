"""`make run` as a newcomer meets it: `agentpay dev` started as `make run` starts it, and one client paying one request
at a time while every approved payment is charged through localstripe behind it."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from bench.client import HUGE_DAILY, PAYMENT_PATH, Org, create_agent, measure_gets, measure_requests
from bench.context import TURN_WARMUP, Context, Plan
from bench.report import say, stopwatch, summary_ms
from devtools.server_process import REPO, DevServer, local_env

# The phase's agent: 1 cent is approved at once (and charged), 20.00 waits for an admin, 60.00 is over its
# per-payment limit and declined (402).
APPROVED, THRESHOLD, PENDING, PER_TX, DECLINED = 1, 1_000, 2_000, 5_000, 6_000
READY_TIMEOUT_S = 120.0  # a fresh home: initdb, the migrations, the demo organization, the job process


def run(ctx: Context) -> dict[str, Any]:
    baseline = ctx.result["request_p50_ms"]
    got = measure_makerun(ctx.tmp / "makerun", ctx.plan, log_path=ctx.tmp / "makerun.log", ctx=ctx)
    p50 = got["approved_ms"]["p50"]
    ratio = round(p50 / baseline, 2) if baseline else None
    say(f"    approved p50 {p50:.3f} ms = x{ratio} the request phase's {baseline:.3f} ms; pending"
        f" {got['pending_ms']['p50']:.3f}, declined {got['declined_ms']['p50']:.3f}, /healthz"
        f" {got['healthz_ms']['p50']:.3f} ms; {got['charges']['completed']} of {got['charges']['approved']}"
        f" charged")  # fmt: skip
    return {
        "makerun_request_p50_ms": p50,
        "makerun_ratio": ratio,
        "notes": {
            "makerun": (
                "agentpay dev as make run starts it (its own embedded services in a fresh home), one keep-alive"
                " client sending one auto-approved payment request at a time while the dev server's job process"
                " charges each through localstripe; makerun_ratio is its p50 over request_p50_ms, the same request"
                " to the benchmark's server, which runs no jobs"
            )
        },
        "details": {"makerun": got},
        "counts": {
            "makerun": ctx.plan.request,
            "makerun_warmup": ctx.plan.request_warmup,
            "makerun_others": ctx.plan.makerun_others,
        },
    }


def measure_makerun(
    home: Path, plan: Plan, *, log_path: Path, tree: Path = REPO, ctx: Context | None = None
) -> dict[str, Any]:
    """`agentpay dev` of checkout `tree` in `home`: approved requests in `plan.turns` turns (each on a new connection,
    as in the request phase), until their charges drain, then /healthz, declined and pending requests."""
    say(f"[make run] agentpay dev (python -m devtools.cli dev) with a fresh home; {plan.request} x POST {PAYMENT_PATH}"
        f" auto-approved and charged, one keep-alive client, {plan.request_warmup} warm-up; then"
        f" {plan.makerun_others} each of GET /healthz, declined and pending")  # fmt: skip
    started = time.monotonic()
    server = DevServer(home, env=local_env(home, tree=tree), log_path=log_path, tree=tree)
    try:
        server.wait_ready(READY_TIMEOUT_S)
        startup_s = time.monotonic() - started
        dev = server.dev
        org = Org(id=dev["organization_id"], admin_key=dev["admin_key"])
        agent = create_agent(server.port, org, "makerun", daily=HUGE_DAILY, per_tx=PER_TX, threshold=THRESHOLD)
        approved: list[float] = []
        profiling = ctx.profiled("makerun", lambda: server.process.pid) if ctx else contextlib.nullcontext()
        with stopwatch(), profiling:
            for turn in range(plan.turns):
                warmup = plan.request_warmup if turn == 0 else TURN_WARMUP
                measure_requests(server.port, agent, plan.request // plan.turns, warmup, approved, amount=APPROVED)
        charges = _wait_for_charges(dev["database_url"], agent.id, timeout=30 + plan.request / 25)
        n, warmup = plan.makerun_others, plan.makerun_others // 10
        healthz = measure_gets(server.port, "/healthz", n, warmup)
        declined: list[float] = []
        measure_requests(server.port, agent, n, warmup, declined, amount=DECLINED, expect=402)
        pending: list[float] = []
        measure_requests(server.port, agent, n, warmup, pending, amount=PENDING, expect=202)
    finally:
        server.stop()
    return {
        "approved_ms": summary_ms(approved),
        "pending_ms": summary_ms(pending),
        "declined_ms": summary_ms(declined),
        "healthz_ms": summary_ms(healthz),
        "charges": charges,
        "startup_s": round(startup_s, 1),
    }


def _wait_for_charges(database_url: str, agent_id: str, *, timeout: float) -> dict[str, Any]:
    """Until none of the agent's approved payments waits for its charge (or `timeout`): how many the job process
    charged, and how long after the last request the last one took."""
    import psycopg

    started = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT status, count(*) FROM transactions WHERE agent_id = %s GROUP BY status", (agent_id,)
            ).fetchall()
            counts = {status: int(count) for status, count in rows}
            waiting = counts.get("approved", 0)
            if waiting == 0 or time.monotonic() - started > timeout:
                break
            time.sleep(0.1)
    completed = counts.get("completed", 0)
    if completed == 0:
        raise RuntimeError(f"make run charged none of its approved payments in {timeout:.0f}s: {counts}")
    return {
        "approved": sum(counts.values()),
        "completed": completed,
        "declined": counts.get("declined", 0),
        "still_approved": waiting,
        "drained_s": round(time.monotonic() - started, 1) if waiting == 0 else None,
    }
