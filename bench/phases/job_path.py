"""The job path: from a payment request until its transaction reads `completed`, through the local job dispatcher,
the charge worker and localstripe."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from typing import Any

from bench.client import PAYMENT_PATH, Agent, fast_agent, payment_body, signed_headers
from bench.context import Context
from bench.report import JOB_POLL_SECONDS, percentile, say, stopwatch, summary_ms


def run(ctx: Context) -> dict[str, Any]:
    plan = ctx.plan
    say(f"[job path] a second server with the local job dispatcher (build_server_app); {plan.job_path} x"
        f" POST {PAYMENT_PATH} then GET /v1/transactions/{{id}} every {JOB_POLL_SECONDS * 1000:.0f} ms until"
        f" completed, {plan.job_path_warmup} warm-up")  # fmt: skip
    # No sweep during the run: it would re-drive the thousands of approved, never charged rows of the phases before.
    server = ctx.start_app("devtools.local_app:build_server_app", env={**ctx.env, "SWEEP_INTERVAL_SECONDS": "3600"})
    try:
        agent = fast_agent(server.port, ctx.org(), "job-path")
        with stopwatch():
            job_path = measure_job_path(server.port, agent, plan.job_path, plan.job_path_warmup)
    finally:
        ctx.stop_app(server)
    say(f"    p50 {job_path['p50']:.2f} ms, p99 {job_path['p99']:.2f} ms ({job_path['polls_p50']:.0f} polls at p50)")
    return {
        "job_path_p50_ms": job_path["p50"],
        "job_path_p99_ms": job_path["p99"],
        "details": {"job_path_ms": job_path},
        "counts": {"job_path": plan.job_path, "job_path_warmup": plan.job_path_warmup},
    }


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
