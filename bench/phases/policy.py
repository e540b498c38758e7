"""Spend policies under load: what a full policy costs one request (policy_cost_ratio), what an organization's
ceiling costs 32 clients on 32 agents of one organization (org_ceiling_throughput_ratio), whether the ceiling and the
agents' limits hold under that load (org_overspend_cents), and how long a simulation over 10,000 past requests takes
(simulation_10k_s)."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.client import (
    CLIENTS,
    HUGE_DAILY,
    MAX_RPM,
    PER_TX,
    Agent,
    Org,
    api_json,
    create_agent,
    create_org,
    fast_agent,
    measure_requests,
    run_load,
)
from bench.context import TURN_WARMUP, Context
from bench.report import say, stopwatch, summary_ms

# 20 merchant patterns; the bench's merchant (bench.example.com) matches only the last, so every request tries all.
PATTERNS = [f"shop{i}.example.net" for i in range(19)] + ["*.example.com"]
OVERSPEND_AMOUNT = 100
SIMULATED_REQUESTS = 10_000


def full_policy(daily: int = HUGE_DAILY) -> dict[str, Any]:
    """Every window limited (none binding), 20 allow patterns, a block list, a cap on the bench's merchant."""
    return {
        "limits": {
            "per_transaction_limit": PER_TX,
            "daily_limit": daily,
            "weekly_limit": HUGE_DAILY,
            "monthly_limit": HUGE_DAILY,
            "approval_threshold": PER_TX,
            "max_requests_per_minute": MAX_RPM,
            "max_payments_per_day": 1_000_000,
        },
        "merchants": {
            "allow": PATTERNS,
            "block": ["blocked.example.org"],
            "limits": [{"merchant": "bench.example.com", "daily_limit": daily}],
        },
        "approval": {"new_merchant": False, "dual_approval_above": None},
    }


def put_policy(port: int, org: Org, agent: Agent, document: dict[str, Any]) -> None:
    api_json(port, "PUT", f"/v1/dashboard/agents/{agent.id}/policy", document, _admin(org))


def put_ceiling(port: int, org: Org, *, daily: int | None, monthly: int | None) -> None:
    body = {"limits": {"daily_limit": daily, "monthly_limit": monthly}}
    api_json(port, "PUT", "/v1/dashboard/organization/policy", body, _admin(org))


def _admin(org: Org) -> dict[str, str]:
    return {"Authorization": f"Bearer {org.admin_key}"}


def run(ctx: Context) -> dict[str, Any]:
    plan, server = ctx.plan, ctx.server()
    port = server.port

    # One request at a time: today's limits only, and a full policy with an organization ceiling, taking turns.
    simple = ctx.agent("request")
    ceiling_org = create_org(port)
    put_ceiling(port, ceiling_org, daily=HUGE_DAILY, monthly=HUGE_DAILY)
    full = fast_agent(port, ceiling_org, "full-policy")
    put_policy(port, ceiling_org, full, full_policy())
    say(f"[policy cost] {plan.request} x POST /v1/payment-request with today's limits only and with a full policy"
        f" (every window, {len(PATTERNS)} patterns, a cap, an organization ceiling), taking turns")  # fmt: skip
    raw: dict[str, list[float]] = {"limits": [], "policy": []}
    with stopwatch():
        for turn in range(plan.turns):
            warmup = plan.request_warmup if turn == 0 else TURN_WARMUP
            parts = [("limits", simple), ("policy", full)]
            for name, agent in parts if turn % 2 == 0 else reversed(parts):
                measure_requests(port, agent, plan.request // plan.turns, warmup, raw[name])
    limits_ms, policy_ms = summary_ms(raw["limits"]), summary_ms(raw["policy"])
    cost = round(policy_ms["p50"] / limits_ms["p50"], 2)
    say(f"    p50 {limits_ms['p50']:.3f} ms with limits, {policy_ms['p50']:.3f} ms with the full policy: x{cost}")

    # 32 clients on 32 agents of one organization, with and without a ceiling (A B B A), then the ceiling held.
    plain_org = create_org(port)
    plain_agents = [fast_agent(port, plain_org, f"plain-{i}") for i in range(CLIENTS)]
    ceiling_agents = [fast_agent(port, ceiling_org, f"ceiling-{i}") for i in range(CLIENTS)]
    per_client = max(8, int(plan.max_throughput_requests / CLIENTS / 8))
    say(f"[organization ceiling] {CLIENTS} clients x {per_client} requests on {CLIENTS} agents of one organization,"
        f" without and with a ceiling, A B B A")  # fmt: skip
    rates: dict[str, list[float]] = {"plain": [], "ceiling": []}
    for name, agents in [("plain", plain_agents), ("ceiling", ceiling_agents)]:  # warm-up, not counted
        run_load(server, [[(a, 1)] for a in agents], per_client=2, seconds=None, tag=f"{name}-warm")
    with stopwatch():
        for name in ("plain", "ceiling", "ceiling", "plain"):
            agents = plain_agents if name == "plain" else ceiling_agents
            load = run_load(server, [[(a, 1)] for a in agents], per_client=per_client, seconds=None, tag=name)
            rates[name].append(load.count(201) / load.seconds)
    plain_rps, ceiling_rps = statistics.mean(rates["plain"]), statistics.mean(rates["ceiling"])
    throughput_ratio = round(ceiling_rps / plain_rps, 2)
    say(f"    {plain_rps:.0f} approved/s without, {ceiling_rps:.0f}/s with the ceiling: x{throughput_ratio}")

    overspend = _overspend(ctx, port, per_client)
    simulation_s = _simulation(ctx, port)
    return {
        "policy_cost_ratio": cost,
        "org_ceiling_throughput_ratio": throughput_ratio,
        "org_overspend_cents": overspend["overspend_cents"],
        "simulation_10k_s": simulation_s,
        "notes": {
            "policy_cost_ratio": (
                "request p50 with a full policy (every window, 20 merchant patterns, a cap, an organization ceiling)"
                " over the p50 with today's limits only, one request at a time, taking turns in one run"
            ),
            "org_ceiling_throughput_ratio": (
                "approved/s of 32 clients on 32 agents of one organization with a ceiling (checked and held on every"
                " request) over the same load without one, A B B A in one run"
            ),
            "org_overspend_cents": "cents held beyond the ceiling and beyond each agent's daily limit: must be 0",
            "simulation_10k_s": "POST .../policy/simulate over 10,000 past requests, median of 3",
        },
        "details": {
            "policy_cost": {"limits_ms": limits_ms, "policy_ms": policy_ms},
            "org_ceiling": {
                "plain_approved_rps": [round(r, 1) for r in rates["plain"]],
                "ceiling_approved_rps": [round(r, 1) for r in rates["ceiling"]],
            },
            "org_overspend": overspend,
        },
    }


def _overspend(ctx: Context, port: int, per_client: int) -> dict[str, Any]:
    """The same load against a ceiling half of what is offered and agents' days three quarters of their share."""
    offered = CLIENTS * per_client * OVERSPEND_AMOUNT
    ceiling = offered // 2
    agent_daily = per_client * OVERSPEND_AMOUNT * 3 // 4
    org = create_org(port)
    put_ceiling(port, org, daily=ceiling, monthly=None)
    agents = [
        create_agent(port, org, f"held-{i}", daily=agent_daily, per_tx=OVERSPEND_AMOUNT, threshold=OVERSPEND_AMOUNT)
        for i in range(CLIENTS)
    ]
    say(f"[organization overspend] {CLIENTS * per_client} x {OVERSPEND_AMOUNT} cents against a ceiling of {ceiling}"
        f" cents and {CLIENTS} agents' days of {agent_daily}")  # fmt: skip
    load = run_load(ctx.server(), [[(a, OVERSPEND_AMOUNT)] for a in agents], per_client=per_client, seconds=None,
                    tag="org-overspend")  # fmt: skip
    held = _held(ctx.services.database_url, org.id)
    over_org = max(0, sum(held.values()) - ceiling)
    over_agents = sum(max(0, cents - agent_daily) for cents in held.values())
    say(f"    held {sum(held.values())} of {ceiling}: overspend {over_org} (organization), {over_agents} (agents);"
        f" answers 201: {load.count(201)}, 402: {load.count(402)}")  # fmt: skip
    return {
        "overspend_cents": over_org + over_agents,
        "organization_overspend_cents": over_org,
        "agents_overspend_cents": over_agents,
        "ceiling_cents": ceiling,
        "agent_daily_cents": agent_daily,
        "held_cents": sum(held.values()),
        "answered_201": load.count(201),
        "answered_402": load.count(402),
    }


def _held(database_url: str, organization_id: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT agent_id::text, sum(amount_cents) FROM transactions"
            " WHERE organization_id = %s AND status IN ('pending', 'approved', 'completed') GROUP BY agent_id",
            (organization_id,),
        ).fetchall()
    return {agent: int(cents) for agent, cents in rows}


def _simulation(ctx: Context, port: int) -> float:
    """10,000 past requests of one agent over 30 days (written straight to Postgres), replayed against a draft."""
    import psycopg

    org = create_org(port)
    agent = fast_agent(port, org, "simulated")
    with psycopg.connect(ctx.services.database_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO transactions (id, agent_id, organization_id, amount_cents, merchant, purpose, status,
                                      decision_reason, idempotency_key, request_hash, budget_day, created_at,
                                      updated_at, stripe_charge_id, approval_expires_at)
            SELECT gen_random_uuid(), %(agent)s::uuid, %(org)s::uuid, 100 + (i %% 900),
                   'm' || (i %% 37) || '.example.com', 'bench',
                   CASE WHEN i %% 10 = 0 THEN 'declined' WHEN i %% 7 = 0 THEN 'pending' ELSE 'completed' END,
                   CASE WHEN i %% 10 = 0 THEN 'daily_limit_exceeded' WHEN i %% 7 = 0 THEN 'approval_required'
                        ELSE 'auto_approved' END,
                   'sim-' || i, 'h', (now() - interval '30 days' + i * interval '259 seconds')::date,
                   now() - interval '30 days' + i * interval '259 seconds',
                   now() - interval '30 days' + i * interval '259 seconds',
                   CASE WHEN i %% 10 <> 0 AND i %% 7 <> 0 THEN 'pi_sim_' || i || '_' || %(agent)s::text END,
                   CASE WHEN i %% 7 = 0 AND i %% 10 <> 0 THEN now() + interval '1 day' END
            FROM generate_series(1, %(n)s) AS i
            """,
            {"agent": agent.id, "org": org.id, "n": SIMULATED_REQUESTS},
        )
    draft = full_policy(daily=50_000)
    draft["merchants"]["block"] = ["m3.example.com"]
    draft["limits"]["per_transaction_limit"] = 800
    draft["limits"]["approval_threshold"] = 500
    body = {"policy": draft, "from": _iso(time.time() - 31 * 86400), "to": _iso(time.time() + 60)}
    say(f"[simulation] POST .../policy/simulate over {SIMULATED_REQUESTS} past requests, 3 times")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        answer = api_json(port, "POST", f"/v1/dashboard/agents/{agent.id}/policy/simulate", body, _admin(org))
        times.append(time.perf_counter() - t0)
        if answer["requests"] != SIMULATED_REQUESTS:
            raise RuntimeError(f"the simulation replayed {answer['requests']} requests")
    median = round(statistics.median(times), 3)
    say(f"    {median:.3f} s (changed {answer['changed']} of {answer['requests']})")
    return median


def _iso(moment: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(moment, tz=UTC).isoformat()
