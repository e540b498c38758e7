"""The floor and one payment request at a time, taking turns (A B B A rounds): floor, request and their ratio."""

from __future__ import annotations

from typing import Any

from bench.client import PAYMENT_PATH, measure_requests
from bench.context import TURN_WARMUP, Context
from bench.floor import measure_floor
from bench.report import say, stopwatch, summary_ms


def run(ctx: Context) -> dict[str, Any]:
    plan, server = ctx.plan, ctx.server()
    org, floor_agent, request_agent = ctx.org(), ctx.agent("floor"), ctx.agent("request")
    # The floor and the request take turns (A B B A rounds), so a drift of this shared machine's speed hits both
    # alike and ratio_p50 compares them under the same conditions.
    rounds = plan.turns
    say(f"[floor + request] {plan.floor} x (Redis EVALSHA reserve_budget.lua + Postgres INSERT row+audit) and"
        f" {plan.request} x POST {PAYMENT_PATH} (one keep-alive client), taking turns in {rounds} rounds,"
        f" {plan.floor_warmup} + {plan.request_warmup} warm-up")  # fmt: skip
    floor_raw: dict[str, list[float]] = {}
    request_raw: list[float] = []
    with stopwatch(), ctx.profiled("request", ctx.server_pid):
        for turn in range(rounds):
            first = turn == 0
            parts = [
                lambda first=first: measure_floor(
                    ctx.services.redis_url, ctx.services.database_url, org, floor_agent, plan.floor // rounds,
                    plan.floor_warmup if first else TURN_WARMUP, floor_raw,
                ),
                lambda first=first: measure_requests(
                    server.port, request_agent, plan.request // rounds,
                    plan.request_warmup if first else TURN_WARMUP, request_raw,
                ),
            ]  # fmt: skip
            for part in parts if turn % 4 in (0, 3) else reversed(parts):
                part()
    floor = {name: summary_ms(samples) for name, samples in floor_raw.items()}
    request = summary_ms(request_raw)
    floor_p50 = floor["total"]["p50"]
    return {
        "floor_p50_ms": floor_p50,
        "floor_p99_ms": floor["total"]["p99"],
        "request_p50_ms": request["p50"],
        "request_p99_ms": request["p99"],
        "ratio_p50": round(request["p50"] / floor_p50, 2) if floor_p50 > 0 else None,
        "details": {"floor_ms": floor, "request_ms": request},
        "counts": {
            "floor": plan.floor,
            "floor_warmup": plan.floor_warmup,
            "request": plan.request,
            "request_warmup": plan.request_warmup,
        },
    }
