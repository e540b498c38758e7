"""`make run` as a newcomer meets it: `agentpay dev` started as `make run` starts it, and one client paying one request
at a time while every approved payment is charged through localstripe behind it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.client import HUGE_DAILY, Agent, Org, create_agent, measure_gets, measure_requests
from bench.context import Context, Plan
from bench.report import say, summary_ms
from devtools.server_process import REPO, DevServer, local_env

# The phase's agent: 1 cent is approved at once (and charged), 20.00 waits for an admin, 60.00 is over its
# per-payment limit and declined (402).
APPROVED, THRESHOLD, PENDING, PER_TX, DECLINED = 1, 1_000, 2_000, 5_000, 6_000
READY_TIMEOUT_S = 120.0  # a fresh home: initdb, the migrations, the demo organization, the job process


class MakeRun:
    """`agentpay dev` of checkout `tree` with its home in `home`, and what one client measures against it: turns of
    auto-approved requests (each turn followed by the wait until its charges are made), then the other kinds."""

    def __init__(self, home: Path, *, log_path: Path, tree: Path = REPO) -> None:
        self.home, self.log_path, self.tree = home, log_path, tree
        self.server: DevServer | None = None
        self.agent: Agent | None = None
        self.database_url = ""
        self.startup_s = 0.0
        self.approved: list[float] = []
        self.drained_s: list[float | None] = []
        self.charges: dict[str, Any] = {}

    def start(self) -> MakeRun:
        started = time.monotonic()
        env = local_env(self.home, tree=self.tree)
        self.server = DevServer(self.home, env=env, log_path=self.log_path, tree=self.tree)
        self.server.wait_ready(READY_TIMEOUT_S)
        self.startup_s = time.monotonic() - started
        dev = self.server.dev
        self.database_url = dev["database_url"]
        org = Org(id=dev["organization_id"], admin_key=dev["admin_key"])
        self.agent = create_agent(
            self.server.port, org, "makerun", daily=HUGE_DAILY, per_tx=PER_TX, threshold=THRESHOLD
        )
        return self

    def turn(self, n: int, warmup: int, *, drain_timeout: float) -> None:
        """`n` approved requests after `warmup`, one at a time on a new keep-alive connection; then until the job
        process has charged every one (or `drain_timeout`), so the turns that follow run on a machine it left."""
        assert self.server is not None and self.agent is not None
        measure_requests(self.server.port, self.agent, n, warmup, self.approved, amount=APPROVED)
        self.charges = _wait_for_charges(self.database_url, self.agent.id, timeout=drain_timeout)
        self.drained_s.append(self.charges["drained_s"])

    def others(self, n: int) -> dict[str, Any]:
        """GET /healthz, declined and pending requests, `n` each after a tenth as many warm-up."""
        assert self.server is not None and self.agent is not None
        port, warmup = self.server.port, n // 10
        healthz = measure_gets(port, "/healthz", n, warmup)
        declined: list[float] = []
        measure_requests(port, self.agent, n, warmup, declined, amount=DECLINED, expect=402)
        pending: list[float] = []
        measure_requests(port, self.agent, n, warmup, pending, amount=PENDING, expect=202)
        return {
            "healthz_ms": summary_ms(healthz),
            "declined_ms": summary_ms(declined),
            "pending_ms": summary_ms(pending),
        }

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def pid(self) -> int:
        assert self.server is not None
        return self.server.process.pid


def fields(ctx: Context, makerun: MakeRun, others: dict[str, Any], baseline_p50: float) -> dict[str, Any]:
    """The make run figures for bench.json; `baseline_p50`: the request phase's p50 of the same turns."""
    approved = summary_ms(makerun.approved)
    ratio = round(approved["p50"] / baseline_p50, 2) if baseline_p50 else None
    drains = [d for d in makerun.drained_s if d is not None]
    charges = {**makerun.charges, "drained_s": max(drains) if len(drains) == len(makerun.drained_s) else None}
    say(f"    make run: approved p50 {approved['p50']:.3f} ms = x{ratio} the request's {baseline_p50:.3f} ms;"
        f" pending {others['pending_ms']['p50']:.3f}, declined {others['declined_ms']['p50']:.3f}, /healthz"
        f" {others['healthz_ms']['p50']:.3f} ms; {charges['completed']} of {charges['approved']} charged")  # fmt: skip
    return {
        "makerun_request_p50_ms": approved["p50"],
        "makerun_ratio": ratio,
        "notes": {
            "makerun": (
                "agentpay dev as make run starts it (its own embedded services in a fresh home), one keep-alive"
                " client sending one auto-approved payment request at a time while the dev server's job process"
                " charges each through localstripe, in turns with the floor and the request phase (each make run"
                " turn followed by the wait until its charges are made); makerun_ratio is its p50 over"
                " request_p50_ms, the same request to the benchmark's server, which runs no jobs"
            )
        },
        "details": {
            "makerun": {
                "approved_ms": approved,
                **others,
                "charges": charges,
                "drained_s_per_turn": makerun.drained_s,
                "startup_s": round(makerun.startup_s, 1),
            }
        },
        "counts": {
            "makerun": ctx.plan.request,
            "makerun_warmup": ctx.plan.request_warmup,
            "makerun_others": ctx.plan.makerun_others,
        },
    }


def drain_timeout(plan: Plan) -> float:
    """How long a turn waits for its charges: generous, since they run only on what the rest leaves of the cores."""
    return 30 + plan.request / plan.turns / 5


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
            time.sleep(0.05)
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
