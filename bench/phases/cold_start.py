"""The Lambda functions' cold start: each handler's import time from the built artifact (build/lambda, Python 3.12)
against a bare `import fastapi` in the same run (bench/cold_start.py), with each ratio."""

from __future__ import annotations

from typing import Any

from bench.cold_start import TARGET_RATIO, measure, table
from bench.context import Context
from bench.report import say, stopwatch


def run(ctx: Context) -> dict[str, Any]:
    from deploy import package

    python = package.find_python()
    runs = 1 if ctx.args.quick else 5
    say(f"[cold start] make package, then each handler imported from build/lambda in {runs} fresh python3.12 -I -S")
    with stopwatch():
        package.build(package.ARTIFACT, python=python)
        result = measure(package.ARTIFACT, python, runs=runs)
    for line in table(result).splitlines():
        say("    " + line)
    baseline = result["import_fastapi_ms"]
    ratios = {name: round(ms / baseline, 2) for name, ms in result["import_ms"].items()}
    return {
        "import_fastapi_ms": round(baseline, 1),
        "import_ms": {name: round(ms, 1) for name, ms in result["import_ms"].items()},
        "import_ratio": ratios,
        "import_ratio_max": max(ratios.values()),
        "artifact_mb": round(result["artifact_mb"], 1),
        "notes": {
            "import_ratio": (
                f"each handler's import time from the artifact over a bare `import fastapi` in the same run (medians"
                f" of fresh interpreters, interleaved); target at most {TARGET_RATIO}"
            )
        },
        "details": {
            "cold_start_cpu_ms": {
                "import_fastapi": round(result["import_fastapi_cpu_ms"], 1),
                **{name: round(ms, 1) for name, ms in result["import_cpu_ms"].items()},
            }
        },
    }
