"""Approved decisions per second under 32 clients, the overspend they leave (invariant I1), and the drivers-only
throughput of the same machine in the same minutes."""

from __future__ import annotations

from typing import Any

from bench.client import CLIENTS, create_agent, load_agents, probe, run_load
from bench.context import Context, server_db_pool_size
from bench.floor import measure_floor_throughput
from bench.report import say, stopwatch, summary_ms

OVERSPEND_EVERY = 4  # every 4th request of each load client goes to the overspend agent
OVERSPEND_AMOUNT = 100


def run(ctx: Context) -> dict[str, Any]:
    plan, server, org = ctx.plan, ctx.server(), ctx.org()
    # Calibrate the request count so the phase lasts about throughput_seconds, then size the overspend agent's day so
    # the load exhausts it halfway through its share.
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
    with stopwatch(), ctx.profiled("throughput", ctx.server_pid):
        load = run_load(server, plans, per_client=per_client, seconds=None, tag="load")
    approved = load.count(201)
    throughput = approved / load.seconds
    say(f"    {approved} approved in {load.seconds:.2f}s = {throughput:.0f}/s; load generator used"
        f" {load.client_cpu_s / load.seconds:.2f} cores, server {load.server_cpu_s / load.seconds:.2f} cores,"
        f" machine {load.system_busy * 100:.0f}% busy")  # fmt: skip

    say("[overspend] summing the overspend agent's holds in Postgres")
    held, held_rows = held_cents(ctx.services.database_url, overspend_agent.id)
    overspend = max(0, held - overspend_limit)
    o201, o402 = load.count(201, overspend_agent.id), load.count(402, overspend_agent.id)
    say(f"    held {held} of {overspend_limit} cents: overspend {overspend}; answers 201: {o201}, 402: {o402}")

    pg_connections = ctx.workers * server_db_pool_size(ctx.env)
    say(f"[floor throughput] the floor's EVALSHA + INSERT from {CLIENTS} concurrent tasks, drivers only"
        f" ({pg_connections} Postgres connections, as the server's workers have),"
        f" {plan.floor_throughput_seconds:.0f}s")  # fmt: skip
    floor_load = measure_floor_throughput(
        ctx.services.redis_url,
        ctx.services.database_url,
        org,
        ctx.agent("floor"),
        plan.floor_throughput_seconds,
        pg_connections,
    )
    all_rps = load.total / load.seconds
    throughput_vs_floor = round(all_rps / floor_load["rps"], 2) if floor_load["rps"] else None
    say(f"    {floor_load['rps']:.0f} decisions/s (machine {floor_load['machine_busy_fraction'] * 100:.0f}% busy);"
        f" the service's {all_rps:.0f} decisions/s are {throughput_vs_floor} of it")  # fmt: skip
    return {
        "throughput_rps": round(throughput, 1),
        "floor_throughput_rps": floor_load["rps"],
        "throughput_vs_floor": throughput_vs_floor,
        "overspend_cents": overspend,
        "notes": {
            "throughput": "the load generator runs on the same cores as the server, PostgreSQL and Valkey",
            "throughput_vs_floor": (
                "all decisions per second (201 and 402) of the throughput phase over floor_throughput_rps, the"
                " drivers-only EVALSHA + INSERT at the same concurrency in the same run: the share of what the"
                " services allow on this machine right now that the service reaches (noise hits both)"
            ),
        },
        "details": {
            "floor_throughput": floor_load,
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
            "throughput_requests": load.total,
            "throughput_201": approved,
            "throughput_402": load.count(402),
            "overspend_201": o201,
            "overspend_402": o402,
        },
    }


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
