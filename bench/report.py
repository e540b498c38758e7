"""The benchmark's figures as numbers and words: percentiles, the machine, progress lines and the final table."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

JOB_POLL_SECONDS = 0.005  # the job path's polling interval, said in its row of the table

_quiet = False


def be_quiet(quiet: bool) -> None:
    """--json-only: no progress lines."""
    global _quiet
    _quiet = quiet


def say(message: str) -> None:
    if not _quiet:
        print(message, flush=True)


@contextlib.contextmanager
def stopwatch() -> Iterator[None]:
    """Says how long the block took."""
    t0 = time.monotonic()
    yield
    say(f"    done in {time.monotonic() - t0:.1f}s")


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


def print_table(r: dict[str, Any], out: Path) -> None:
    d = r["details"]
    t = d["throughput"]
    dm = d["dashboard_ms"]
    cg = r["cost_growth"]
    mr = d["makerun"]
    rows = [
        ("floor (Redis EVAL + PG insert)", f"{r['floor_p50_ms']:.3f}", f"{r['floor_p99_ms']:.3f}", ""),
        ("  of which Redis EVALSHA", f"{d['floor_ms']['redis_eval']['p50']:.3f}",
         f"{d['floor_ms']['redis_eval']['p99']:.3f}", ""),
        ("  of which Postgres INSERT", f"{d['floor_ms']['postgres_insert']['p50']:.3f}",
         f"{d['floor_ms']['postgres_insert']['p99']:.3f}", ""),
        ("decision (BudgetEngine.reserve)", f"{r['decision_p50_ms']:.3f}", f"{r['decision_p99_ms']:.3f}", ""),
        ("request (POST /v1/payment-request)", f"{r['request_p50_ms']:.3f}", f"{r['request_p99_ms']:.3f}",
         f"ratio_p50 = {r['ratio_p50']}"),
        ("make run: the same request, charged", f"{r['makerun_request_p50_ms']:.3f}",
         f"{mr['approved_ms']['p99']:.3f}", f"makerun_ratio = {r['makerun_ratio']}"),
        ("make run: a request pending approval", f"{mr['pending_ms']['p50']:.3f}", f"{mr['pending_ms']['p99']:.3f}",
         "202"),
        ("make run: a request declined", f"{mr['declined_ms']['p50']:.3f}", f"{mr['declined_ms']['p99']:.3f}", "402"),
        ("make run: GET /healthz", f"{mr['healthz_ms']['p50']:.3f}", f"{mr['healthz_ms']['p99']:.3f}", ""),
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
        ("request, full policy and ceiling", f"{d['policy_cost']['policy_ms']['p50']:.3f}",
         f"{d['policy_cost']['policy_ms']['p99']:.3f}", f"policy_cost_ratio = {r['policy_cost_ratio']}"),
        ("32 agents of one org, with a ceiling", "", "",
         f"org_ceiling_throughput_ratio = {r['org_ceiling_throughput_ratio']}"),
        ("simulation over 10,000 requests", f"{r['simulation_10k_s'] * 1000:.0f}", "", "median of 3"),
    ]  # fmt: skip
    print()
    print(f"{'figure':<40}{'p50 ms':>10}{'p99 ms':>10}  note")
    print("-" * 80)
    for name, p50, p99, note in rows:
        print(f"{name:<40}{p50:>10}{p99:>10}  {note}")
    print("-" * 80)
    org = d["org_overspend"]
    print(f"org_overspend_cents = {r['org_overspend_cents']}  (ceiling {org['ceiling_cents']}, held"
          f" {org['held_cents']}; each agent's day {org['agent_daily_cents']}; 201: {org['answered_201']},"
          f" 402: {org['answered_402']})")  # fmt: skip
    ratios = ", ".join(f"{name} {ratio}" for name, ratio in r["import_ratio"].items())
    print(f"cold start: import fastapi {r['import_fastapi_ms']} ms; each handler x it: {ratios};"
          f" artifact {r['artifact_mb']} MB")  # fmt: skip
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
    )
    drained = mr["charges"]["drained_s"]
    print(f"make run: {mr['charges']['completed']} of {mr['charges']['approved']} approved payments charged through"
          " localstripe, " + (f"each turn's within {drained}s of its last request" if drained is not None else
          f"{mr['charges']['still_approved']} still waiting when the phase stopped waiting") +
          f"; started in {mr['startup_s']}s")  # fmt: skip
    print(f"throughput context: load generator {t['load_generator_cpu_cores']} cores, server {t['server_cpu_cores']}"
          f" cores, machine {t['machine_busy_fraction'] * 100:.0f}% busy, of {r['machine']['cpu_count']} cores"
          " shared by the load generator, the server, PostgreSQL and Valkey")  # fmt: skip
    print(f"dashboard_p50_ms = {r['dashboard_p50_ms']}, dashboard_p99_ms = {r['dashboard_p99_ms']} (the worse page);"
          f" history generated in {dm['generate_s']}s, VACUUM ANALYZE {dm['vacuum_analyze_s']}s")  # fmt: skip
    print(f"written to {out} ({r['elapsed_s']}s)")
