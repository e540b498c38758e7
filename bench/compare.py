"""Throughput of two commits back to back, on one stack, in the same minutes (`make bench-compare A=ref B=ref`).

The machine is shared: its speed drifts by 2x within an hour, so two `make bench` runs an hour apart say little about
a change. This starts the server of each commit (a `git worktree` each, in a temporary directory) against one
embedded stack (migrations of the newer commit: they only add), and loads them in A B B A rounds of 32 clients, the
load of the `make bench` worker probe (every request auto-approved). It prints approved decisions per second and the
server's CPU per decision for each, and their ratio.

    .venv/bin/python bench/compare.py HEAD~1 HEAD [--rounds 4] [--seconds 6] [--workers 2]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import run as bench  # noqa: E402

REPO = bench.REPO


def worktree(ref: str, into: Path, name: str) -> Path:
    path = into / name
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(path), ref], cwd=REPO, check=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="the baseline commit (any git ref)")
    parser.add_argument("b", help="the commit to compare with it")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, alternating A B B A (default 4)")
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of load per round (default 6)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers per server (default 2)")
    args = parser.parse_args(argv)

    from devtools.localstack import LocalStack
    from devtools.migrate import apply_migrations

    tmp = Path(tempfile.mkdtemp(prefix="agentpay-compare-"))
    trees: list[Path] = []
    servers: list[bench.Server] = []
    stack = LocalStack(tmp / "stack")
    try:
        trees = [worktree(args.a, tmp, "a"), worktree(args.b, tmp, "b")]
        bench.say(f"[setup] worktrees {', '.join(map(str, trees))}; starting PostgreSQL, Valkey and localstripe")
        services = stack.start()
        apply_migrations(services.database_url, trees[1] / "migrations")
        env = bench.server_env(services, tmp / "app")
        (tmp / "app").mkdir()
        for tree in trees:
            bench.REPO = tree  # the server's working directory
            server = bench.Server(
                workers=args.workers,
                env={**env, "PYTHONPATH": str(tree)},
                log_path=tmp / "s.log",
                http=bench.http_protocol_of(tree),
                factory=bench.app_factory_of(tree),
            )
            server.wait_ready()
            servers.append(server)
        org = bench.create_org(servers[0].port)
        for server in servers:
            bench.probe(server, org, 2.0, f"warm-{server.port}")
        results: list[list[bench.LoadResult]] = [[], []]
        for round_ in range(args.rounds):
            for i in (0, 1) if round_ % 2 == 0 else (1, 0):
                got = bench.probe(servers[i], org, args.seconds, f"r{round_}-{i}")
                results[i].append(got)
                bench.say(f"    {'AB'[i]} ({[args.a, args.b][i]}): {got.count(201) / got.seconds:.0f} approved/s,"
                          f" machine {got.system_busy * 100:.0f}% busy")  # fmt: skip
        rates, cpu = [], []
        for runs in results:
            seconds = sum(g.seconds for g in runs)
            rates.append(sum(g.count(201) for g in runs) / seconds)
            cpu.append(sum(g.server_cpu_s for g in runs) / max(1, sum(g.total for g in runs)) * 1000)
        print()
        print(f"{'commit':<24}{'approved/s':>12}{'server CPU ms/decision':>26}")
        for ref, rate, ms in zip((args.a, args.b), rates, cpu, strict=True):
            print(f"{ref:<24}{rate:>12.0f}{ms:>26.3f}")
        print(f"B / A: throughput x{rates[1] / rates[0]:.2f}, server CPU per decision x{cpu[1] / cpu[0]:.2f}")
        return 0
    finally:
        for server in servers:
            server.stop()
        stack.stop()
        for tree in trees:
            with contextlib.suppress(subprocess.CalledProcessError):
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, check=True)


if __name__ == "__main__":
    sys.exit(main())
