"""Bounds on what a request may make the server read, and the headers that keep API answers out of caches."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.conftest import Org, ServerProcess
from tests.functional.test_lambda_handlers import error_of, invoke, load_event

MAX_HEADER_BYTES = 16 * 1024  # names and values of all headers together


# Header size (the pen test: a 32 MiB Authorization header was read and parsed, then a 401 after 1.6 s) ------------
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer apk_test_" + "a" * MAX_HEADER_BYTES},
        {f"X-Filler-{i}": "f" * 1000 for i in range(20)},
        {"Cookie": "agentpay_session=" + "c" * MAX_HEADER_BYTES},
    ],
    ids=["one-huge-authorization", "many-headers", "huge-cookie"],
)
def test_headers_over_the_bound_are_431_in_the_error_shape(client: Any, headers: dict[str, str]) -> None:
    for method, path in (("POST", "/v1/payment-request"), ("GET", "/v1/dashboard/agents"), ("GET", "/dashboard")):
        response = client.request(method, path, headers=headers, content=b"{}" if method == "POST" else None)
        assert response.status_code == 431, (path, response.status_code, response.text[:200])
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request", "headers_too_large")
        assert response.headers["x-request-id"] == error["request_id"]


def test_headers_just_under_the_bound_are_read_as_usual(client: Any) -> None:
    filler = "f" * (MAX_HEADER_BYTES - 2000)
    response = client.get("/v1/dashboard/agents", headers={"X-Filler": filler, "Authorization": "Bearer nope"})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_api_key")


def test_the_lambda_path_answers_431_too(services: Any) -> None:
    event = load_event("healthz.json")
    event["headers"]["authorization"] = "Bearer apk_test_" + "a" * 40_000
    response = invoke("payment_request", event)
    assert response["statusCode"] == 431
    assert error_of(response)["code"] == "headers_too_large"


def _read_answer(sock: socket.socket) -> bytes:
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def test_the_local_server_stops_reading_a_huge_header_and_answers_431(live_servers: list[ServerProcess]) -> None:
    """The server answers once the head passes its bound, long before the client has sent 32 MiB of it."""
    server = live_servers[0]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/payment-request HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer apk_test_")
        sent, chunk = 0, b"a" * 65536
        answered = False
        sock.settimeout(10)
        try:
            while sent < 32 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            answered = True  # the server closed the connection after answering
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert answered and sent < 4 * 1024 * 1024, f"the server read {sent} bytes of one header before answering"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"x-request-id: req_" in head.lower()
    assert json.loads(body)["error"]["code"] == "headers_too_large"


def test_the_local_server_still_serves_ordinary_requests_on_a_kept_alive_connection(
    live_servers: list[ServerProcess],
) -> None:
    server = live_servers[0]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + b"f" * 8000 + b"\r\n\r\n")
            answer = _read_answer(sock)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            length = int(
                next(line for line in answer.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[
                    1
                ]
            )
            body = answer.partition(b"\r\n\r\n")[2]
            while len(body) < length:
                body += sock.recv(65536)


# Caching and sniffing -----------------------------------------------------------------------------------------
def test_answers_that_carry_a_key_are_never_stored_by_a_cache(client: Any, org: Org) -> None:
    signup = client.post("/v1/orgs", json={"name": "Acme", "admin_email": "a@example.com"})
    created = client.post(
        "/v1/dashboard/agents",
        json={"name": "bot", "limits": {"daily_limit": 100, "per_transaction_limit": 10, "approval_threshold": 1}},
        headers=org.admin_headers,
    )
    rotated = client.post(f"/v1/dashboard/agents/{created.json()['agent']['id']}/rotate-key", headers=org.admin_headers)
    for response in (signup, created, rotated):
        assert response.status_code in (200, 201), response.text[:200]
        assert "no-store" in response.headers.get("cache-control", ""), response.request.url
        assert response.headers.get("x-content-type-options") == "nosniff"


def test_every_json_answer_is_nosniff_and_uncacheable(client: Any, org: Org) -> None:
    for response in (
        client.get("/v1/dashboard/agents", headers=org.admin_headers),
        client.get("/v1/dashboard/transactions", headers=org.admin_headers),
        client.get("/v1/nothing-here"),
        client.post("/v1/payment-request", json={}),
        client.get("/healthz"),
    ):
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers.get("x-content-type-options") == "nosniff", response.request.url
        assert "no-store" in response.headers.get("cache-control", ""), response.request.url


def test_static_files_keep_their_own_cache_policy(client: Any) -> None:
    page = client.get("/dashboard/login")
    href = next(part.split('"')[1] for part in page.text.split("href=")[1:] if "dashboard.css" in part)
    response = client.get(href)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=86400"
