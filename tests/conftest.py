"""Fixtures: one embedded stack (real PostgreSQL, Valkey, localstripe) for the whole run, and API helpers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.signing import encode, signed_headers


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from devtools.localstack import LocalStack

    home = tmp_path_factory.mktemp("agentpay-home")
    local = LocalStack(home)
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def services(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Point every setting at the embedded services and bring the schema up to date."""
    from shared.platform import db
    from tests.support.stack import use_services

    found = stack.start()
    use_services(found, tmp_path_factory.mktemp("agentpay-settings"))
    yield found
    db.close_pool()


def forget_throttle_counts() -> None:
    """Drop every count of shared.http.throttle (failed authentications, sign-ups), as if their windows had passed."""
    from shared.http.throttle import KEY_PREFIX
    from shared.platform.redis_store import get_store

    store = get_store()
    counted = store.scan_keys(KEY_PREFIX + "*")
    if counted:
        store.delete(*counted)


@pytest.fixture(autouse=True)
def _no_throttle_counts(request: pytest.FixtureRequest) -> None:
    """Failed authentications and sign-ups are counted per client address (shared.http.throttle), and the tests share
    their addresses ("testclient", 127.0.0.1): each test that reaches the services starts with nothing counted."""
    if "services" in request.fixturenames:
        request.getfixturevalue("services")
        forget_throttle_counts()


@pytest.fixture(scope="session")
def app(services: Any) -> Any:
    from devtools.local_app import build_local_app

    return build_local_app()


@pytest.fixture()
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class Org:
    id: str
    admin_key: str
    body: dict[str, Any]

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


@dataclass
class Agent:
    id: str
    api_key: str
    org: Org
    body: dict[str, Any]


def make_org(client: Any, *, timezone: str = "UTC", name: str | None = None) -> Org:
    response = client.post(
        "/v1/orgs",
        json={
            "name": name or f"Org {uuid.uuid4().hex[:6]}",
            "admin_email": "admin@example.com",
            "timezone": timezone,
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Org(id=body["organization"]["id"], admin_key=body["admin_key"], body=body)


def make_agent(client: Any, org: Org, **limits: int) -> Agent:
    limits = {"daily_limit": 5000, "per_transaction_limit": 2000, "approval_threshold": 1000, **limits}
    response = client.post(
        "/v1/dashboard/agents",
        json={"name": f"agent-{uuid.uuid4().hex[:6]}", "limits": limits},
        headers=org.admin_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return Agent(id=body["agent"]["id"], api_key=body["api_key"], org=org, body=body)


@pytest.fixture()
def org(client: Any) -> Org:
    return make_org(client)


@pytest.fixture()
def agent(client: Any, org: Org) -> Agent:
    return make_agent(client, org)


def signed_get(client: Any, api_key: str, path: str, **kwargs: Any) -> Any:
    return client.get(path, headers=signed_headers(api_key, "GET", path, **kwargs))


def signed_post(client: Any, api_key: str, path: str, payload: Any, **kwargs: Any) -> Any:
    body = encode(payload)
    return client.post(path, content=body, headers=signed_headers(api_key, "POST", path, body, **kwargs))


REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """The local app served by a real uvicorn process on loopback (real HTTP, its own pools and caches)."""

    def __init__(self, port: int, extra_env: dict[str, str] | None = None) -> None:
        import subprocess
        import sys

        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        # The sweep stays off unless a test asks for it: in a shared test database it would re-drive every charge
        # that in-process tests left approved on purpose.
        env = {**os.environ, "AGENTPAY_PORT": str(port), "SWEEP_INTERVAL_SECONDS": "3600", **(extra_env or {})}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "devtools.local_app:build_server_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--http",
                "devtools.local_http:BoundedHttpToolsProtocol",
            ],
            cwd=REPO,
            env=env,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except Exception:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def _server_processes(services: Any) -> Iterator[list[ServerProcess]]:
    servers = [ServerProcess(_free_port()), ServerProcess(_free_port())]
    try:
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture()
def live_servers(_server_processes: list[ServerProcess]) -> list[ServerProcess]:
    """Two server processes sharing the embedded services, as two Lambda containers would.

    Each test gets them healthy: after an earlier test restarted PostgreSQL, a process's first query finds its
    pooled connection dead (one 503, by design); the health check takes that hit here instead.
    """
    for server in _server_processes:
        server.wait_ready()
    return _server_processes
