"""A long history: the dashboard's transactions list over 1,000,000 rows, and whether a payment request costs more
for an agent with a long history (cost growth)."""

from __future__ import annotations

import http.client
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.client import PAYMENT_PATH, Agent, create_org, fast_agent, measure_requests
from bench.context import Context
from bench.report import say, stopwatch, summary_ms

HISTORY_CHUNK = 100_000  # bulk rows per INSERT ... SELECT FROM generate_series (and per progress line)
DEEP_FRACTION = 0.9  # the deep page starts after the row at 90% of the history (row 900,000 of 1,000,000)


def run(ctx: Context) -> dict[str, Any]:
    plan, server, org = ctx.plan, ctx.server(), ctx.org()
    database_url = ctx.services.database_url
    # One organization whose agent has history_rows past transactions, and another agent (of the run's organization)
    # with small_history_rows, generated in bulk straight into PostgreSQL.
    history_org = create_org(server.port)
    history_agent = fast_agent(server.port, history_org, "history")
    small_agent = ctx.agent("history-small")
    say(f"[history] {plan.history_rows:,} transactions for one agent of a new organization and"
        f" {plan.small_history_rows:,} for another agent (INSERT ... SELECT FROM generate_series,"
        f" {HISTORY_CHUNK:,} rows per statement)")  # fmt: skip
    history_s = generate_history(
        database_url, org_id=history_org.id, agent_id=history_agent.id, rows=plan.history_rows, tag="big"
    )
    generate_history(database_url, org_id=org.id, agent_id=small_agent.id, rows=plan.small_history_rows, tag="small")
    say(f"    generated in {history_s:.1f}s; VACUUM ANALYZE transactions")
    with stopwatch():
        vacuum_s = vacuum_analyze(database_url)
    deep_offset = int(plan.history_rows * DEEP_FRACTION)
    deep_id = row_id_at(database_url, history_org.id, deep_offset)

    say(f"[dashboard] {plan.dashboard} x GET /v1/dashboard/transactions (25 rows) for the first page and"
        f" {plan.dashboard} for the page after row {deep_offset:,} (starting_after), {plan.dashboard_warmup}"
        " warm-up each")  # fmt: skip
    dash_first = measure_dashboard(server.port, history_org.admin_key, plan.dashboard, plan.dashboard_warmup, None)
    dash_deep = measure_dashboard(server.port, history_org.admin_key, plan.dashboard, plan.dashboard_warmup, deep_id)
    say(f"    first page p50 {dash_first['p50']:.2f} p99 {dash_first['p99']:.2f} ms; deep page"
        f" p50 {dash_deep['p50']:.2f} p99 {dash_deep['p99']:.2f} ms")  # fmt: skip

    say(f"[cost growth] {plan.growth} x POST {PAYMENT_PATH} for each agent: {plan.small_history_rows:,} vs"
        f" {plan.history_rows:,} prior transactions, taking turns, {plan.growth_warmup} warm-up each")  # fmt: skip
    with stopwatch():
        growth = measure_growth(
            server.port, {"small": small_agent, "large": history_agent}, plan.growth, plan.growth_warmup
        )
    growth_ratio = round(growth["large"]["p50"] / growth["small"]["p50"], 3) if growth["small"]["p50"] else None
    say(f"    p50 {growth['small']['p50']:.3f} ms at {plan.small_history_rows:,},"
        f" {growth['large']['p50']:.3f} ms at {plan.history_rows:,}: ratio {growth_ratio}")  # fmt: skip
    return {
        "dashboard_p50_ms": max(dash_first["p50"], dash_deep["p50"]),
        "dashboard_p99_ms": max(dash_first["p99"], dash_deep["p99"]),
        "cost_growth": {
            "p50_ms_at_1k": growth["small"]["p50"],
            "p50_ms_at_1m": growth["large"]["p50"],
            "ratio": growth_ratio,
        },
        "notes": {
            "dashboard": "the worse of the first page and the deep page; both in details.dashboard_ms",
            "cost_growth": (
                f"history sizes {plan.small_history_rows:,} and {plan.history_rows:,} rows"
                + (" (--quick scales the 1m case down)" if ctx.args.quick else "")
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
        },
        "counts": {
            "history_rows": plan.history_rows,
            "small_history_rows": plan.small_history_rows,
            "dashboard_per_page": plan.dashboard,
            "dashboard_warmup": plan.dashboard_warmup,
            "growth_per_agent": plan.growth,
            "growth_warmup": plan.growth_warmup,
        },
    }


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
