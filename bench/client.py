"""The benchmark's client side: signing as docs/api.md says (no AgentPay code), the API calls that set a run up,
requests one at a time on a keep-alive connection, and the load of concurrent clients."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import http.client
import json
import resource
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.report import summary_ms

PAYMENT_PATH = "/v1/payment-request"
CLIENTS = 32
NORMAL_LOAD_AGENTS = 8  # the normal load is spread so no agent nears max_requests_per_minute = 10000
MAX_RPM = 10_000
HUGE_DAILY = 100_000_000_000  # MAX_DAILY_LIMIT_CENTS
PER_TX = 100_000_000


# Signing (written here so the benchmark does not use AgentPay code on the client side) ------------------------
def signed_headers(api_key: str, method: str, path: str, body: bytes) -> dict[str, str]:
    ts = str(int(time.time()))
    key = hashlib.sha256(api_key.encode()).hexdigest().encode()
    mac = hmac.new(key, f"{ts}.{method}.{path}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Authorization": f"Bearer {api_key}",
        "AgentPay-Timestamp": ts,
        "AgentPay-Signature": "v1=" + mac,
        "Content-Type": "application/json",
    }


def payment_body(amount: int, key: str) -> bytes:
    return json.dumps(
        {"amount": amount, "merchant": "bench.example.com", "purpose": "benchmark", "idempotency_key": key},
        separators=(",", ":"),
    ).encode()


# The API, for setup ---------------------------------------------------------------------------------------------
@dataclass
class Agent:
    id: str
    api_key: str


@dataclass
class Org:
    id: str
    admin_key: str
    agents: list[Agent] = field(default_factory=list)


def api_json(port: int, method: str, path: str, payload: Any, headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps(payload).encode()
        conn.request(method, path, body, {"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        if response.status not in (200, 201):
            raise RuntimeError(f"{method} {path} answered {response.status}: {data[:500]!r}")
        return json.loads(data)
    finally:
        conn.close()


def create_org(port: int) -> Org:
    body = api_json(port, "POST", "/v1/orgs", {"name": "Bench org", "admin_email": "bench@example.com"})
    return Org(id=body["organization"]["id"], admin_key=body["admin_key"])


def create_agent(port: int, org: Org, name: str, *, daily: int, per_tx: int, threshold: int) -> Agent:
    body = api_json(
        port,
        "POST",
        "/v1/dashboard/agents",
        {
            "name": name,
            "limits": {
                "daily_limit": daily,
                "per_transaction_limit": per_tx,
                "approval_threshold": threshold,
                "max_requests_per_minute": MAX_RPM,
            },
        },
        {"Authorization": f"Bearer {org.admin_key}"},
    )
    return Agent(id=body["agent"]["id"], api_key=body["api_key"])


def fast_agent(port: int, org: Org, name: str) -> Agent:
    """Every request of 1 cent is auto-approved and the day never runs out."""
    return create_agent(port, org, name, daily=HUGE_DAILY, per_tx=PER_TX, threshold=PER_TX)


# One request at a time ------------------------------------------------------------------------------------------
def measure_requests(
    port: int,
    agent: Agent,
    n: int,
    warmup: int,
    samples_out: list[float] | None = None,
    *,
    amount: int = 1,
    expect: int = 201,
) -> dict[str, Any]:
    """POST /v1/payment-request, signed, over one keep-alive connection, one at a time; every answer `expect`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    statuses: dict[int, int] = {}

    def one(i: int) -> float:
        body = payment_body(amount, f"req-{i}-{uuid.uuid4().hex}")
        headers = signed_headers(agent.api_key, "POST", PAYMENT_PATH, body)
        t0 = time.perf_counter()
        conn.request("POST", PAYMENT_PATH, body, headers)
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - t0
        statuses[response.status] = statuses.get(response.status, 0) + 1
        if response.status != expect:
            raise RuntimeError(f"request {i} answered {response.status}: {data[:300]!r}")
        return elapsed

    try:
        for i in range(warmup):
            one(-1 - i)
        samples = [one(i) for i in range(n)]
    finally:
        conn.close()
    if samples_out is not None:
        samples_out.extend(samples)
    return {**summary_ms(samples), "statuses": statuses}


def measure_gets(port: int, path: str, n: int, warmup: int, headers: dict[str, str] | None = None) -> list[float]:
    """GET `path` over one keep-alive connection, one at a time; every answer 200. The timed samples, in seconds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def one(i: int) -> float:
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - t0
        if response.status != 200:
            raise RuntimeError(f"GET {path} ({i}) answered {response.status}: {data[:300]!r}")
        return elapsed

    try:
        for i in range(warmup):
            one(-1 - i)
        return [one(i) for i in range(n)]
    finally:
        conn.close()


# Many clients at once -------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client on asyncio streams: one thread, no GIL contention with itself, about the least Python
# work per request there is, so most of the 2 cores go to the server.
async def _client(
    port: int,
    targets: list[tuple[Agent, int]],
    count: int | None,
    deadline: float | None,
    tally: dict[str, dict[int, int]],
    latencies: list[float],
    tag: str,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while (count is None or i < count) and (deadline is None or time.monotonic() < deadline):
            agent, amount = targets[i % len(targets)]
            body = payment_body(amount, f"{tag}-{uuid.uuid4().hex}")
            head = [f"POST {PAYMENT_PATH} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
            head += [f"{k}: {v}" for k, v in signed_headers(agent.api_key, "POST", PAYMENT_PATH, body).items()]
            t0 = time.perf_counter()
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            response_head = await reader.readuntil(b"\r\n\r\n")
            status = int(response_head[9:12])
            length = None
            for line in response_head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                    break
            if length is None:
                raise RuntimeError(f"an answer without Content-Length: {response_head!r}")
            data = await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            per_agent = tally.setdefault(agent.id, {})
            per_agent[status] = per_agent.get(status, 0) + 1
            if status not in (201, 402):
                raise RuntimeError(f"load request answered {status}: {data[:300]!r}")
            i += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass
class LoadResult:
    seconds: float
    tally: dict[str, dict[int, int]]
    latencies: list[float]
    client_cpu_s: float
    server_cpu_s: float
    system_busy: float  # fraction of all cores busy during the run (everything on the machine)

    def count(self, status: int, agent_id: str | None = None) -> int:
        return sum(v.get(status, 0) for k, v in self.tally.items() if agent_id is None or k == agent_id)

    @property
    def total(self) -> int:
        return sum(sum(v.values()) for v in self.tally.values())


def run_load(
    server: Any, plans: list[list[tuple[Agent, int]]], *, per_client: int | None, seconds: float | None, tag: str
) -> LoadResult:
    """One client per plan against `server` (anything with `port` and `cpu_seconds()`), each cycling its targets."""
    import psutil

    tally: dict[str, dict[int, int]] = {}
    latencies: list[float] = []

    async def main() -> float:
        deadline = time.monotonic() + seconds if seconds is not None else None
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                _client(server.port, plan, per_client, deadline, tally, latencies, f"{tag}-{n}")
                for n, plan in enumerate(plans)
            )
        )
        return time.perf_counter() - t0

    cpu0 = psutil.cpu_times()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    server0 = server.cpu_seconds()
    elapsed = asyncio.run(main())
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    server1 = server.cpu_seconds()
    cpu1 = psutil.cpu_times()
    idle = (cpu1.idle - cpu0.idle) + (getattr(cpu1, "iowait", 0) - getattr(cpu0, "iowait", 0))
    busy = (sum(cpu1) - sum(cpu0)) - idle
    all_time = sum(cpu1) - sum(cpu0)
    return LoadResult(
        seconds=elapsed,
        tally=tally,
        latencies=latencies,
        client_cpu_s=(usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime),
        server_cpu_s=server1 - server0,
        system_busy=busy / all_time if all_time > 0 else 0.0,
    )


def load_agents(port: int, org: Org, label: str) -> list[Agent]:
    return [fast_agent(port, org, f"{label}-{i}") for i in range(NORMAL_LOAD_AGENTS)]


def normal_plans(agents: list[Agent]) -> list[list[tuple[Agent, int]]]:
    return [[(agents[c % len(agents)], 1)] for c in range(CLIENTS)]


def probe(server: Any, org: Org, seconds: float, label: str) -> LoadResult:
    """A short load of 32 clients on fresh agents: warms the server and tells its approved decisions per second."""
    agents = load_agents(server.port, org, label)
    return run_load(server, normal_plans(agents), per_client=None, seconds=seconds, tag=label)
