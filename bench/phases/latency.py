"""The floor, one payment request at a time, and the same request against `make run`, taking turns (A B C C B A
rounds): floor, request, their ratio, and make run's ratio to the request."""

from __future__ import annotations

from typing import Any

from bench.client import PAYMENT_PATH, measure_requests
from bench.context import TURN_WARMUP, Context
from bench.floor import measure_floor
from bench.phases import makerun
from bench.report import say, stopwatch, summary_ms


def run(ctx: Context) -> dict[str, Any]:
    plan, server = ctx.plan, ctx.server()
    org, floor_agent, request_agent = ctx.org(), ctx.agent("floor"), ctx.agent("request")
    rounds = plan.turns
    say("[make run] starting agentpay dev (python -m devtools.cli dev) with a fresh home, its own embedded services")
    dev = makerun.MakeRun(ctx.tmp / "makerun", log_path=ctx.tmp / "makerun.log").start()
    # The three take turns (A B C C B A rounds), so a drift of this shared machine's speed hits them alike and the
    # ratios compare them under the same conditions. Each make run turn ends when its charges are made: the charges
    # flow while its requests are timed, and are over before the floor's and the request's turns.
    say(f"[floor + request + make run] {plan.floor} x (Redis EVALSHA reserve_budget.lua + Postgres INSERT"
        f" row+audit), {plan.request} x POST {PAYMENT_PATH} (one keep-alive client) and {plan.request} x the same"
        f" against agentpay dev, each charged behind it, taking turns in {rounds} rounds, {plan.floor_warmup} +"
        f" {plan.request_warmup} + {plan.request_warmup} warm-up")  # fmt: skip
    floor_raw: dict[str, list[float]] = {}
    request_raw: list[float] = []
    try:
        with stopwatch(), ctx.profiled("request", ctx.server_pid), ctx.profiled("makerun", dev.pid):
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
                    lambda first=first: dev.turn(
                        plan.request // rounds, plan.request_warmup if first else TURN_WARMUP,
                        drain_timeout=makerun.drain_timeout(plan),
                    ),
                ]  # fmt: skip
                for part in parts if turn % 4 in (0, 3) else reversed(parts):
                    part()
        others = dev.others(plan.makerun_others)
    finally:
        dev.stop()
    floor = {name: summary_ms(samples) for name, samples in floor_raw.items()}
    request = summary_ms(request_raw)
    floor_p50 = floor["total"]["p50"]
    fields: dict[str, Any] = {
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
    for key, value in makerun.fields(ctx, dev, others, request["p50"]).items():
        fields[key] = {**fields[key], **value} if isinstance(value, dict) and key in fields else value
    return fields
