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
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.client import LoadResult, create_org, probe  # noqa: E402
from bench.report import say  # noqa: E402
from bench.trees import add_worktree, app_factory_of, http_protocol_of, remove_worktree  # noqa: E402


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
    from devtools.server_process import AppServer, local_env

    tmp = Path(tempfile.mkdtemp(prefix="agentpay-compare-"))
    trees: list[Path] = []
    servers: list[AppServer] = []
    stack = LocalStack(tmp / "stack")
    try:
        trees = [add_worktree(args.a, tmp / "a"), add_worktree(args.b, tmp / "b")]
        say(f"[setup] worktrees {', '.join(map(str, trees))}; starting PostgreSQL, Valkey and localstripe")
        services = stack.start()
        apply_migrations(services.database_url, trees[1] / "migrations")
        (tmp / "app").mkdir()
        for tree in trees:
            server = AppServer(
                app_factory_of(tree),
                env=local_env(tmp / "app", services, tree=tree),
                log_path=tmp / "s.log",
                workers=args.workers,
                tree=tree,
                http=http_protocol_of(tree),
            )
            servers.append(server)
            server.wait_ready()
        org = create_org(servers[0].port)
        for server in servers:
            probe(server, org, 2.0, f"warm-{server.port}")
        results: list[list[LoadResult]] = [[], []]
        for round_ in range(args.rounds):
            for i in (0, 1) if round_ % 2 == 0 else (1, 0):
                got = probe(servers[i], org, args.seconds, f"r{round_}-{i}")
                results[i].append(got)
                say(f"    {'AB'[i]} ({[args.a, args.b][i]}): {got.count(201) / got.seconds:.0f} approved/s,"
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
            remove_worktree(tree)


if __name__ == "__main__":
    sys.exit(main())
