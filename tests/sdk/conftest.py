"""The SDKs against a real local server: one uvicorn process with the job dispatcher, plus a flaky proxy and helpers."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import REPO, Agent, ServerProcess, _free_port, make_agent, make_org

PAYMENT_REQUEST_PATH = "/v1/payment-request"
TS_SDK = REPO / "sdk" / "typescript"


@pytest.fixture(scope="session")
def sdk_server(services: Any) -> Iterator[ServerProcess]:
    """`devtools.local_app:build_server_app` on loopback: the routes `agentpay dev` serves, its dispatcher in-process.

    Its periodic sweep is pushed past the session: the suite's in-process tests leave approved-but-uncharged
    transactions and unpublished jobs in the shared database, and a sweep would re-drive them all through this
    server's dispatcher, queueing these tests' charges behind hundreds of others. The sweep has its own tests.
    """
    server = ServerProcess(_free_port(), extra_env={"SWEEP_INTERVAL_SECONDS": "3600"})
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def admin_http(sdk_server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sdk_server.base_url, timeout=30) as client:
        yield client


@pytest.fixture()
def new_agent(admin_http: httpx.Client) -> Any:
    """Creates a fresh agent (in a fresh organization) with the given limits; defaults 5000/2000/1000."""

    def create(**limits: int) -> Agent:
        return make_agent(admin_http, make_org(admin_http), **limits)

    return create


def policy(
    *,
    limits: dict[str, int | None] | None = None,
    block: list[str] | None = None,
    allow: list[str] | None = None,
) -> dict[str, Any]:
    """A whole policy as PUT /v1/dashboard/agents/{id}/policy takes it: the given limits, else make_agent's."""
    defaults: dict[str, int | None] = {
        "per_transaction_limit": 2000,
        "daily_limit": 5000,
        "weekly_limit": None,
        "monthly_limit": None,
        "approval_threshold": 1000,
        "max_requests_per_minute": 20,
        "max_payments_per_day": None,
    }
    return {
        "limits": {**defaults, **(limits or {})},
        "merchants": {"allow": allow or [], "block": block or [], "limits": []},
        "approval": {"new_merchant": False, "dual_approval_above": None},
    }


def put_policy(admin_http: httpx.Client, agent: Agent, body: dict[str, Any]) -> dict[str, Any]:
    """What an admin does in the dashboard: replace the agent's policy; it applies from its next request."""
    response = admin_http.put(f"/v1/dashboard/agents/{agent.id}/policy", json=body, headers=agent.org.admin_headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def outbox_dir() -> Path:
    from shared.config import get_settings

    return Path(get_settings().outbox_dir)


def approval_links(tx_id: str, *, timeout: float = 20.0) -> tuple[str, str]:
    """The approve and decline URLs of the transaction's approval email, once the email worker has written it."""
    from shared.notify.email import outbox_file_name

    path = outbox_dir() / outbox_file_name(f"approval-{tx_id}")
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no approval email for {tx_id} within {timeout} s"
        time.sleep(0.05)
    text = json.loads(path.read_text())["text"]
    approve = next(line for line in text.splitlines() if "/v1/approve/" in line)
    decline = next(line for line in text.splitlines() if "/v1/decline/" in line)
    return approve.strip(), decline.strip()


def click_approve(tx_id: str) -> dict[str, Any]:
    """What the admin does: open the email's approve link and press the button (a POST to the same URL)."""
    approve_url, _ = approval_links(tx_id)
    response = httpx.post(approve_url, headers={"Accept": "application/json"}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def pending_ids(agent_id: str) -> list[str]:
    from shared.platform import db

    with db.connection() as conn:
        rows = conn.execute(
            "SELECT id FROM transactions WHERE agent_id = %s AND status = 'pending' ORDER BY created_at", (agent_id,)
        ).fetchall()
    return [str(row["id"]) for row in rows]


class Approver:
    """A thread playing the admin: approves every pending transaction of one agent as its email arrives."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self.approved: list[str] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="approver", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for tx_id in pending_ids(self.agent_id):
                    if tx_id not in self.approved:
                        click_approve(tx_id)
                        self.approved.append(tx_id)
            except BaseException as exc:  # reported by stop(), not lost in the thread
                self.errors.append(exc)
                return
            self._stop.wait(0.1)

    def __enter__(self) -> Approver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.errors:
            raise self.errors[0]


def transaction_rows(agent_id: str, idempotency_key: str) -> list[dict[str, Any]]:
    from shared.platform import db

    with db.connection() as conn:
        rows = conn.execute(
            "SELECT id, status FROM transactions WHERE agent_id = %s AND idempotency_key = %s",
            (agent_id, idempotency_key),
        ).fetchall()
    return [dict(row) for row in rows]


class FlakyProxy:
    """A reverse proxy that fails the first `failures` payment requests with 503, then forwards byte for byte.

    The first failure never reaches the server (it is down); the later ones do reach it and only the answer is
    lost (a gateway timing out after the work was done), which is the case idempotency must cover.
    """

    def __init__(self, upstream: str, *, failures: int = 2) -> None:
        self.upstream = urlsplit(upstream)
        self.failures = failures
        self.payment_requests: list[int] = []  # the status answered to each POST /v1/payment-request
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                number = None
                if self.command == "POST" and self.path.split("?")[0] == PAYMENT_REQUEST_PATH:
                    with proxy._lock:
                        number = len(proxy.payment_requests)
                        proxy.payment_requests.append(0)
                if number == 0 and proxy.failures > 0:
                    status, headers, payload = proxy._unavailable()
                else:
                    status, headers, payload = proxy._forward(self.command, self.path, self.headers, body)
                    if number is not None and number < proxy.failures:
                        status, headers, payload = proxy._unavailable()
                if number is not None:
                    proxy.payment_requests[number] = status
                self.send_response_only(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="flaky-proxy", daemon=True
        )

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=30)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in ("connection", "keep-alive")}
            connection.request(method, path, body=body, headers=forwarded)
            response = connection.getresponse()
            payload = response.read()
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length")
            ]
            return response.status, kept, payload
        finally:
            connection.close()

    @staticmethod
    def _unavailable() -> tuple[int, list[tuple[str, str]], bytes]:
        body = {
            "error": {
                "type": "unavailable",
                "code": "upstream_unavailable",
                "message": "The flaky proxy lost this one.",
                "request_id": f"req_proxy_{uuid.uuid4().hex[:8]}",
            }
        }
        return 503, [("Content-Type", "application/json"), ("Retry-After", "0")], json.dumps(body).encode()

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture()
def flaky_proxy(sdk_server: ServerProcess) -> Iterator[FlakyProxy]:
    with FlakyProxy(sdk_server.base_url, failures=2) as proxy:
        yield proxy


def _newest_mtime(folder: Path) -> float:
    return max((p.stat().st_mtime for p in folder.rglob("*") if p.is_file()), default=0.0)


@pytest.fixture(scope="session")
def ts_sdk() -> Path:
    """The TypeScript SDK built into dist/ (npm ci from the lock file first, on a fresh checkout)."""
    if not (shutil.which("node") and shutil.which("npm")):
        if os.environ.get("CI"):
            pytest.fail("Node.js 18+ and npm are missing; CI must have them for the TypeScript SDK tests")
        pytest.skip("Node.js 18+ and npm are needed for the TypeScript SDK tests")
    if not (TS_SDK / "node_modules" / ".bin" / "tsc").exists():
        _npm("ci", "--no-audit", "--no-fund")
    dist = TS_SDK / "dist"
    if not (dist / "cjs" / "index.js").exists() or _newest_mtime(TS_SDK / "src") > _newest_mtime(dist):
        _npm("run", "build")
    return TS_SDK


def _npm(*args: str) -> None:
    result = subprocess.run(["npm", *args], cwd=TS_SDK, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"npm {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
