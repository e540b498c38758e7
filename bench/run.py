#!/usr/bin/env python3
"""AgentPay benchmark (`make bench`): floor, decision, request, make run, throughput, overspend, dashboard, cost
growth, jobs.

It starts its own embedded stack in a fresh temporary home (devtools.localstack), applies the migrations, serves the
local app as `agentpay dev` serves it (devtools.server_process), creates an organization and agents through the API,
runs the phases below in order, prints a table and writes `.agentpay/bench.json`. See bench/README.md for what each
figure means. It is a benchmark, not a test: nothing here asserts on speed. It exits non-zero only when something is
wrong (an error answer, or an overspend).

    .venv/bin/python bench/run.py            # the full run, about 2 minutes (1,000,000-row history)
    .venv/bin/python bench/run.py --quick    # small counts: a smoke check, well under a minute
    .venv/bin/python bench/run.py --json-only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.context import FULL, QUICK, Context  # noqa: E402
from bench.phases import cold_start, decision, history, job_path, latency, policy, throughput, workers  # noqa: E402
from bench.report import be_quiet, machine_info, print_table, say  # noqa: E402

# In order; each returns its bench.json fields, which later phases may read (ctx.result).
PHASES: list[tuple[str, Callable[[Context], dict[str, Any]]]] = [
    ("workers", workers.run),  # 1 vs 2 uvicorn workers; the server under test starts with the winner
    # The floor, one request at a time, and the same request against `agentpay dev` as `make run` starts it with
    # charges flowing (bench/phases/makerun.py), in turns: request_p50_ms, ratio_p50, makerun_ratio.
    ("latency", latency.run),
    ("decision", decision.run),
    ("throughput", throughput.run),  # and the overspend, and the drivers-only throughput beside it
    ("history", history.run),  # the dashboard over 1,000,000 rows, cost growth
    ("job_path", job_path.run),
    ("policy", policy.run),  # a full policy's cost, an organization's ceiling under load, a 10,000-request simulation
    ("cold_start", cold_start.run),  # each function's import from build/lambda against a bare `import fastapi`
]


def merge(into: dict[str, Any], fields: dict[str, Any]) -> None:
    """A phase's fields into the result; `details`, `counts` and `notes` gather every phase's."""
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so the finally blocks stop the servers and the stack either way."""

    def handle(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    from devtools.localstack import LocalStack
    from devtools.migrate import apply_migrations
    from devtools.server_process import local_env

    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="agentpay-bench-"))
    result: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "machine": machine_info(),
    }
    say(f"AgentPay benchmark ({result['mode']}), temporary home {tmp}")
    say(f"  machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; the load generator shares them")
    stack = LocalStack(tmp / "stack")
    ctx: Context | None = None
    try:
        say("[setup] starting PostgreSQL, Valkey and localstripe")
        services = stack.start()
        apply_migrations(services.database_url)
        (tmp / "app").mkdir()
        ctx = Context(args=args, plan=plan, tmp=tmp, services=services, env=local_env(tmp / "app", services))
        ctx.result = result
        for _name, phase in PHASES:
            merge(result, phase(ctx))
    finally:
        if ctx is not None:
            say("[shutdown] stopping the servers")
            ctx.close()
        say("[shutdown] stopping the local stack")
        stack.stop()
        if args.keep:
            say(f"  kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    result["elapsed_s"] = round(time.monotonic() - started, 1)
    out = Path(args.out) if args.out else REPO / ".agentpay" / "bench.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json_only:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, out)
    problems = []
    if result["overspend_cents"] != 0:
        problems.append(f"OVERSPEND: {result['overspend_cents']} cents held beyond the daily limit (invariant I1)")
    if result.get("org_overspend_cents"):
        problems.append(f"OVERSPEND: {result['org_overspend_cents']} cents beyond a ceiling or an agent's day (I9)")
    if result["details"]["overspend"]["held_rows"] != result["counts"]["overspend_201"]:
        problems.append("the overspend agent's approved rows differ from its 201 answers")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke check (< 60 s)")
    parser.add_argument("--json-only", action="store_true", help="no progress lines; print only the JSON result")
    parser.add_argument("--workers", type=int, choices=(1, 2, 3, 4), help="skip the 1-vs-2 probe and use this many")
    parser.add_argument("--out", help="where to write the JSON (default .agentpay/bench.json in the repo)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home (logs) afterwards")
    parser.add_argument("--py-spy", metavar="FILE", help="profile a server with py-spy during one phase"
                        " (.svg flamegraph, .json speedscope, else raw collapsed stacks); the figures of that phase"
                        " then include the sampler's overhead")  # fmt: skip
    parser.add_argument(
        "--py-spy-phase",
        choices=("request", "throughput", "makerun"),
        default="request",
        help="request and throughput: the benchmark's server; makerun: the agentpay dev process",
    )
    args = parser.parse_args(argv)
    be_quiet(args.json_only)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    with interrupts_raise():
        try:
            return run(args)
        except KeyboardInterrupt:
            print("interrupted: servers and local stack stopped", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
