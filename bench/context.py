"""What the benchmark's phases share: the counts, the embedded stack, the server under test, the organization and its
agents, the figures so far, and the optional py-spy recording."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.client import Agent, Org, create_org, fast_agent
from bench.report import say
from devtools.localstack import LocalServices
from devtools.server_process import AppServer

TURN_WARMUP = 10  # each turn of the floor and the request opens new connections: these iterations are not counted


@dataclass(frozen=True)
class Plan:
    floor: int
    floor_warmup: int
    decision: int
    decision_warmup: int
    request: int
    request_warmup: int
    probe_seconds: float  # the short load that compares worker counts and calibrates the throughput phase
    throughput_seconds: float  # the target length of the throughput phase
    floor_throughput_seconds: float  # the drivers-only load the throughput phase is read against
    turns: int  # rounds in which the floor and the request take turns
    max_throughput_requests: int
    history_rows: int  # the dashboard organization's bulk-generated transactions (one agent)
    small_history_rows: int  # the other agent's, for cost growth
    dashboard: int  # GET /v1/dashboard/transactions per page kind (first, deep)
    dashboard_warmup: int
    growth: int  # payment requests per agent in the cost growth phase
    growth_warmup: int
    job_path: int  # payment requests followed until `completed`
    job_path_warmup: int
    makerun_others: int  # `make run` phase: pending, declined and /healthz requests, each


FULL = Plan(2000, 200, 2000, 200, 2000, 200, 4.0, 10.0, 5.0, 10, 30_000, 1_000_000, 1_000, 200, 20, 600, 60, 50, 5, 200)
QUICK = Plan(200, 30, 200, 30, 200, 30, 1.0, 2.0, 1.0, 2, 2_000, 20_000, 1_000, 50, 10, 100, 20, 10, 2, 30)


@dataclass
class Context:
    """One run's shared state. Phases read and add to it; `close()` stops every server it started."""

    args: argparse.Namespace
    plan: Plan
    tmp: Path
    services: LocalServices
    env: dict[str, str]  # a local server's environment against `services`
    result: dict[str, Any] = field(default_factory=dict)  # the figures the phases returned so far
    workers: int = 1  # uvicorn workers of the server under test (the workers phase may change it)
    _servers: list[AppServer] = field(default_factory=list)
    _server: AppServer | None = None
    _org: Org | None = None
    _agents: dict[str, Agent] = field(default_factory=dict)

    def start_app(self, factory: str, *, workers: int = 1, env: dict[str, str] | None = None) -> AppServer:
        """A server of this checkout on the run's stack, with `agentpay dev`'s options; its log goes to server.log."""
        server = AppServer(factory, env=env or self.env, log_path=self.tmp / "server.log", workers=workers)
        self._servers.append(server)
        server.wait_ready()
        return server

    def stop_app(self, server: AppServer) -> None:
        server.stop()
        self._servers.remove(server)

    def server(self) -> AppServer:
        """The server under test: the local app (routes only) with `workers` workers, started on first use."""
        if self._server is None:
            say(f"[server] uvicorn --workers {self.workers}")
            self._server = self.start_app("devtools.local_app:build_local_app", workers=self.workers)
        return self._server

    def org(self, port: int | None = None) -> Org:
        """The run's organization, created on first use (through `port`, or the server under test)."""
        if self._org is None:
            self._org = create_org(port or self.server().port)
        return self._org

    def agent(self, name: str) -> Agent:
        """An agent of the run's organization that approves every 1-cent request, created on first use."""
        if name not in self._agents:
            self._agents[name] = fast_agent(self.server().port, self.org(), name)
        return self._agents[name]

    def server_pid(self) -> int:
        """The process that serves the requests: the server under test, or one of its workers."""
        pids = self.server().pids()
        return pids[-1] if self.workers > 1 else pids[0]

    def close(self) -> None:
        for server in reversed(self._servers):
            server.stop()
        self._servers.clear()

    @contextlib.contextmanager
    def profiled(self, phase: str, pid: Callable[[], int]) -> Iterator[None]:
        """py-spy on the process `pid()` names while the block runs, if --py-spy asked for this phase."""
        if not self.args.py_spy or self.args.py_spy_phase != phase:
            yield
            return
        profiler = _start_py_spy(self.args.py_spy, pid())
        try:
            yield
        finally:
            _stop_py_spy(profiler)


def server_db_pool_size(env: dict[str, str]) -> int:
    """Postgres connections a server worker's payment requests use (shared.config's db_async_pool_max_size)."""
    from shared.config import Settings

    default = Settings.model_fields["db_async_pool_max_size"].default
    return int(env.get("DB_ASYNC_POOL_MAX_SIZE", default))


# py-spy on a server during one phase (optional) -----------------------------------------------------------------
# Extra py-spy flags, e.g. AGENTPAY_BENCH_PY_SPY_FLAGS="--idle" to see time spent waiting on Redis and Postgres.
PY_SPY_EXTRA = os.environ.get("AGENTPAY_BENCH_PY_SPY_FLAGS", "").split()


def _start_py_spy(path: str, pid: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    fmt = "speedscope" if path.endswith(".json") else ("flamegraph" if path.endswith(".svg") else "raw")
    say(f"    py-spy record -p {pid} -> {path} ({fmt})")
    proc = subprocess.Popen(
        [exe, "record", "-p", str(pid), "-o", path, "-f", fmt, "-r", "500", "--nonblocking", *PY_SPY_EXTRA],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let it attach
    return proc


def _stop_py_spy(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
