"""Which uvicorn worker count serves more: 1 and 2 side by side, probed with the same load in A B B A order."""

from __future__ import annotations

from typing import Any

from bench.client import CLIENTS, LoadResult, probe
from bench.context import Context
from bench.report import percentile, say


def run(ctx: Context) -> dict[str, Any]:
    """Sets `ctx.workers` for the server the later phases use; `--workers N` skips the probe, `--quick` uses 1."""
    candidates = [ctx.args.workers] if ctx.args.workers else ([1] if ctx.args.quick else [1, 2])
    ctx.workers = candidates[0]
    if len(candidates) == 1:
        return {"workers": ctx.workers, "workers_probe": None}
    # Both servers run side by side (only the probed one gets load) and are probed in A B B A order, so a burst
    # from a neighbour on this shared machine does not decide alone.
    seconds = ctx.plan.probe_seconds
    say(f"[workers] probing uvicorn --workers {' vs '.join(map(str, candidates))}: {CLIENTS} clients,"
        f" {len(candidates) * 2} rounds of {seconds / 2:.0f}s in A B B A order")  # fmt: skip
    servers = {w: ctx.start_app("devtools.local_app:build_local_app", workers=w) for w in candidates}
    try:
        org = ctx.org(servers[candidates[0]].port)
        for w, s in servers.items():
            probe(s, org, 1.0, f"warm-w{w}")
        runs: dict[int, list[LoadResult]] = {w: [] for w in candidates}
        for w in [*candidates, *reversed(candidates)]:
            got = probe(servers[w], org, seconds / 2, f"probe-w{w}-{len(runs[w])}")
            runs[w].append(got)
            say(f"    --workers {w}: {got.count(201) / got.seconds:.0f} approved/s")
    finally:
        for s in servers.values():
            ctx.stop_app(s)
    probes: dict[str, Any] = {}
    for w, got_runs in runs.items():
        total_s = sum(g.seconds for g in got_runs)
        probes[str(w)] = {
            "approved_rps": round(sum(g.count(201) for g in got_runs) / total_s, 1),
            "p50_ms": round(percentile([x for g in got_runs for x in g.latencies], 50) * 1000, 2),
            "server_cpu_cores": round(sum(g.server_cpu_s for g in got_runs) / total_s, 2),
        }
    ctx.workers = max(candidates, key=lambda w: probes[str(w)]["approved_rps"])
    everyone = ", ".join(f"{w}: {v['approved_rps']:.0f}" for w, v in probes.items())
    say(f"    keeping --workers {ctx.workers} (approved/s {everyone})")
    return {"workers": ctx.workers, "workers_probe": probes}
