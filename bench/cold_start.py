#!/usr/bin/env python3
"""Cold start (`make cold-start`): each handler's import time from the Lambda artifact, against a bare `import fastapi`.

Each figure is the median of `runs` fresh `python3.12 -I -S` interpreters that see only the artifact and the standard
library, each timing its one import with perf_counter (interpreter start-up excluded), and the CPU time the import
took (process_time: steadier than the wall clock when other work shares the cores). A handler is imported with the
environment its function has once deployed (deploy/template.py), since building the app reads the settings. The
rounds are interleaved (fastapi, every handler, then again) so that this shared machine's drifting speed touches
every figure alike; compare ratios, not milliseconds across runs. It measures, it asserts nothing.

    .venv/bin/python bench/cold_start.py              # builds build/lambda first (a few seconds when up to date)
    .venv/bin/python bench/cold_start.py --runs 9 --no-build --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deploy import package  # noqa: E402
from deploy.template import deployed_functions  # noqa: E402

BASELINE = "fastapi"
TARGET_RATIO = 1.5  # issue 15, item 4: each handler at most 1.5 x a bare `import fastapi`

_TIMED_IMPORT = """
import importlib, sys, time
sys.path.insert(0, sys.argv[1])
started, cpu = time.perf_counter(), time.process_time()
importlib.import_module(sys.argv[2])
print((time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000)
"""


def _import_ms(python: str, artifact: Path, module: str, environment: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of importing `module` in a fresh interpreter."""
    ran = subprocess.run(
        [python, "-I", "-S", "-c", _TIMED_IMPORT, str(artifact), module],
        env=environment,
        cwd=artifact,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ran.returncode != 0:
        raise RuntimeError(f"importing {module} from {artifact} failed:\n{ran.stderr[-3000:]}")
    wall, cpu = ran.stdout.split()[-2:]
    return float(wall), float(cpu)


def measure(artifact_dir: Path, python: str, runs: int = 5) -> dict[str, Any]:
    """Median import times in ms of `import fastapi` and of each handler of template.yaml, and the artifact's size.

    `import_fastapi_ms` and `import_ms` are wall-clock times; `import_fastapi_cpu_ms` and `import_cpu_ms` the same
    imports' CPU times."""
    artifact_dir = artifact_dir.resolve()
    functions = deployed_functions(artifact_dir)
    targets = [(BASELINE, BASELINE, functions[0].environment)]
    targets += [(f.name, f.module, f.environment) for f in functions]
    wall: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    cpu: dict[str, list[float]] = {name: [] for name, _, _ in targets}
    for _ in range(runs):
        for name, module, environment in targets:
            took, used = _import_ms(python, artifact_dir, module, environment)
            wall[name].append(took)
            cpu[name].append(used)
    return {
        "import_fastapi_ms": statistics.median(wall[BASELINE]),
        "import_ms": {f.name: statistics.median(wall[f.name]) for f in functions},
        "artifact_mb": package.size_mb(artifact_dir),
        "import_fastapi_cpu_ms": statistics.median(cpu[BASELINE]),
        "import_cpu_ms": {f.name: statistics.median(cpu[f.name]) for f in functions},
    }


def table(result: dict[str, Any]) -> str:
    baseline, cpu_baseline = result["import_fastapi_ms"], result["import_fastapi_cpu_ms"]
    lines = [
        f"{'handler':<20} {'import ms':>10} {'x fastapi':>10} {'cpu ms':>8} {'x fastapi':>10}",
        f"{'(import fastapi)':<20} {baseline:>10.1f} {1:>10.2f} {cpu_baseline:>8.1f} {1:>10.2f}",
    ]
    for name, ms in result["import_ms"].items():
        cpu = result["import_cpu_ms"][name]
        mark = "" if ms <= TARGET_RATIO * baseline else f"  over {TARGET_RATIO}x"
        lines.append(f"{name:<20} {ms:>10.1f} {ms / baseline:>10.2f} {cpu:>8.1f} {cpu / cpu_baseline:>10.2f}{mark}")
    lines.append(f"artifact: {result['artifact_mb']:.1f} MB unzipped")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="fresh interpreters per figure (default 5)")
    parser.add_argument("--artifact", type=Path, default=package.ARTIFACT, help="default: build/lambda")
    parser.add_argument("--no-build", action="store_true", help="measure the artifact as it is")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    python = package.find_python()
    if not args.no_build:
        package.build(args.artifact, python=python)
    result = measure(args.artifact, python, runs=args.runs)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
