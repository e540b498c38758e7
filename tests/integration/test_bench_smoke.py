"""`make bench` stays runnable: its quick mode, end to end against its own embedded stack, writes every figure the
issue names and finds no overspend. Speed is not asserted here (the benchmark measures it; this machine is shared)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

REQUIRED = (
    "floor_p50_ms",
    "decision_p99_ms",
    "request_p50_ms",
    "request_p99_ms",
    "ratio_p50",
    "throughput_rps",
    "overspend_cents",
    "dashboard_p99_ms",
    "makerun_request_p50_ms",
    "makerun_ratio",
    "policy_cost_ratio",
    "org_ceiling_throughput_ratio",
    "org_overspend_cents",
    "simulation_10k_s",
    "import_fastapi_ms",
    "import_ratio_max",
    "artifact_mb",
)


def test_bench_quick_writes_every_figure_and_no_overspend(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--workers", "1", "--json-only", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    missing = [key for key in REQUIRED if not isinstance(figures.get(key), int | float)]
    assert not missing, missing
    assert figures["overspend_cents"] == 0
    # the organization's ceiling held under 32 clients, and so did every agent's day (about half was declined)
    assert figures["org_overspend_cents"] == 0
    org = figures["details"]["org_overspend"]
    assert org["held_cents"] == org["ceiling_cents"] and org["answered_402"] > 0
    # every function of template.yaml was imported from the artifact
    assert set(figures["import_ms"]) >= {"payment_request", "dashboard", "charge_worker", "email_worker"}
    counts = figures["counts"]
    # the overspend agent's limit is half of what it is offered: about half approved, and the load kept answering
    assert counts["overspend_201"] > 0 and counts["overspend_402"] > 0
    assert counts["throughput_201"] > counts["overspend_201"]
    assert figures["cost_growth"]["p50_ms_at_1m"] > 0
    # the make run phase's payments were charged by `agentpay dev`'s job process through localstripe
    charges = figures["details"]["makerun"]["charges"]
    assert charges["completed"] == charges["approved"] > counts["makerun"], charges
