"""The penetration test's findings (issue 12), replayed from outside against the servers of two commits on one stack.

Each probe is what the test did: a request a client could send. For each commit it prints what the server answered,
how long it took and how many bytes the server wrote to its log, so the record in docs/RELIABILITY.md is a command,
not a claim (`make security-probe A=<before> B=<after>`; both default to HEAD).

    .venv/bin/python bench/security_probe.py 0b4779e HEAD
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import re
import secrets
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.client import Agent, Org, create_agent, create_org, signed_headers  # noqa: E402
from bench.trees import add_worktree, app_factory_of, http_protocol_of, remove_worktree  # noqa: E402
from devtools.server_process import AppServer, local_env  # noqa: E402

PAY = "/v1/payment-request"


@dataclass
class Target:
    """One commit's server, with an organization, an agent and the log it writes."""

    name: str
    server: AppServer
    log: Path
    home: Path
    org: Org
    agent: Agent

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def logged(self) -> int:
        return self.log.stat().st_size


def signed(api_key: str, path: str, payload: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return body, signed_headers(api_key, "POST", path, body)


def payment(**fields: Any) -> dict[str, Any]:
    return {
        "amount": 100,
        "merchant": "api.example.com",
        "purpose": "probe",
        "idempotency_key": uuid.uuid4().hex,
        **fields,
    }


def measured(target: Target, send: Callable[[], list[httpx.Response]]) -> str:
    """Statuses of what `send` sent, with the time it took and the bytes the server logged meanwhile."""
    before, started = target.logged(), time.perf_counter()
    answers = send()
    elapsed = time.perf_counter() - started
    time.sleep(0.2)  # the server writes its request line after answering
    logged = target.logged() - before
    statuses = ", ".join(f"{code} x{n}" if n > 1 else str(code) for code, n in _counted(r.status_code for r in answers))
    per = f"{logged / len(answers) / 1024:.1f} KiB logged per request" if answers else ""
    return f"{statuses}; {elapsed / max(1, len(answers)) * 1000:.0f} ms each; {per}"


def _counted(codes: Any) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for code in codes:
        if out and out[-1][0] == code:
            out[-1] = (code, out[-1][1] + 1)
        else:
            out.append((code, 1))
    return out


# The findings -----------------------------------------------------------------------------------------------------
def deep_json(target: Target) -> str:
    deep = b'{"amount":100,"merchant":"m","purpose":"p","idempotency_key":"d","context":' + b'{"a":' * 10_000
    deep += b"1" + b"}" * 10_001
    with httpx.Client(base_url=target.url) as client:
        return measured(target, lambda: [client.post(PAY, content=deep) for _ in range(10)])


def logout(target: Target) -> str:
    with httpx.Client(base_url=target.url) as client:
        page = client.get("/dashboard/login")
        client.post("/dashboard/login", data={"csrf_token": _csrf(page.text), "admin_key": target.org.admin_key})
        cookie = client.cookies.get("agentpay_session", path="/dashboard") or ""
        csrf = _csrf(client.get("/dashboard").text)
        client.post("/dashboard/logout", data={"csrf_token": csrf})
    with httpx.Client(base_url=target.url, cookies={"agentpay_session": cookie}) as copied:
        after = copied.get("/dashboard")
    return f"the copied cookie after logout: {after.status_code}" + (
        " (still signed in)" if after.status_code == 200 else " (sent to the login page)"
    )


def internal_callbacks(target: Target) -> str:
    urls = ["https://169.254.169.254/latest/meta-data/", "https://10.0.0.1/", "https://[::1]/", "https://2130706433/"]
    answers = []
    with httpx.Client(base_url=target.url) as client:
        for url in urls:
            body, headers = signed(target.agent.api_key, PAY, payment(callback_url=url))
            answers.append(str(client.post(PAY, content=body, headers=headers).status_code))
    return "callback_url " + ", ".join(f"{url} {code}" for url, code in zip(urls, answers, strict=True))


def huge_header(target: Target) -> str:
    started = time.perf_counter()
    sent = 0
    with socket.create_connection(("127.0.0.1", target.server.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/payment-request HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer apk_test_")
        try:
            while sent < 32 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
            sock.sendall(b"\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass  # answered and closed before the client finished
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    status = answer.split(b" ")[1].decode() if answer.startswith(b"HTTP/") else "no answer"
    return f"{status} after {time.perf_counter() - started:.2f} s, {sent / 1024 / 1024:.1f} MiB of the header sent"


def deceptive_merchant(target: Target) -> str:
    answers = []
    with httpx.Client(base_url=target.url) as client:
        for merchant in ("evil\u202emoc.elgoog", "pay\u200bpal.com", "bank\x1b[2J.com"):
            body, headers = signed(target.agent.api_key, PAY, payment(merchant=merchant))
            answers.append(client.post(PAY, content=body, headers=headers).status_code)
    return "RLO, zero-width, ESC in merchant: " + ", ".join(map(str, answers))


def loose_limits(target: Target) -> str:
    answers = []
    with httpx.Client(base_url=target.url, headers={"Authorization": f"Bearer {target.org.admin_key}"}) as client:
        for value in ("1000000", True, 1000.0, " 1000 "):
            limits = {"daily_limit": 1_000_000, "per_transaction_limit": 100_000, "approval_threshold": value}
            answers.append(client.put(f"/v1/dashboard/agents/{target.agent.id}/limits", json=limits).status_code)
    return 'approval_threshold "1000000", true, 1000.0, " 1000 ": ' + ", ".join(map(str, answers))


def far_future_token(target: Target) -> str:
    secret = json.loads((target.home / "secrets.json").read_text())["approval_jwt_secret"]
    claims = {"iss": "agentpay", "aud": "agentpay-approval", "sub": str(uuid.uuid4()), "act": "approve"}
    claims |= {"exp": 10**12, "jti": uuid.uuid4().hex}
    token = _hs256({"alg": "HS256", "typ": "JWT"}, claims, secret)
    with httpx.Client(base_url=target.url) as client:
        return measured(target, lambda: [client.post(f"/v1/approve/{token}", headers={"Accept": "application/json"})])


def cacheable_keys(target: Target) -> str:
    with httpx.Client(base_url=target.url) as client:
        signup = client.post("/v1/orgs", json={"name": "Probe", "admin_email": "probe@example.com"})
        status = client.get("/healthz")
    return (
        f"POST /v1/orgs Cache-Control: {signup.headers.get('cache-control', '(none)')}; "
        f"JSON nosniff: {status.headers.get('x-content-type-options', '(none)')}"
    )


def failed_authentications(target: Target) -> str:
    with httpx.Client(base_url=target.url) as client:
        keys = ["apk_test_" + secrets.token_hex(32) for _ in range(100)]

        def bad_keys() -> list[httpx.Response]:
            answers = []
            for key in keys:
                body, headers = signed(key, PAY, payment())
                answers.append(client.post(PAY, content=body, headers=headers))
            return answers

        agents = measured(target, bad_keys)
        page = client.get("/dashboard/login")
        logins = [
            client.post("/dashboard/login", data={"csrf_token": _csrf(page.text), "admin_key": "apa_test_" + "0" * 64})
            for _ in range(30)
        ]
        body, headers = signed(target.agent.api_key, PAY, payment())
        valid = client.post(PAY, content=body, headers=headers).status_code
    statuses = ", ".join(f"{code} x{n}" for code, n in _counted(r.status_code for r in logins))
    return f"100 bad agent keys: {agents}; 30 bad logins: {statuses}; then the valid key: {valid}"


def foreign_origin(target: Target) -> str:
    with httpx.Client(base_url=target.url) as client:
        page = client.get("/dashboard/login")
        answer = client.post(
            "/dashboard/login",
            data={"csrf_token": _csrf(page.text), "admin_key": target.org.admin_key},
            headers={"Origin": "https://evil.example"},
        )
        headers = client.get("/dashboard/login").headers
    policies = [name for name in ("permissions-policy", "cross-origin-opener-policy") if name in headers]
    return f"login form from Origin https://evil.example: {answer.status_code}; page headers: {policies or 'none'}"


PROBES: list[tuple[str, Callable[[Target], str]]] = [
    ("1 deep JSON, no key (10 requests)", deep_json),
    ("2 logout", logout),
    ("3 internal callback_url", internal_callbacks),
    ("4 32 MiB header", huge_header),
    ("5 deceptive merchant", deceptive_merchant),
    ("6 loose limits", loose_limits),
    ("7 far-future exp", far_future_token),
    ("8 cacheable keys", cacheable_keys),
    ("9 failed authentications", failed_authentications),
    ("9 origin and page headers", foreign_origin),
]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    return found.group(1) if found else ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: str) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


# Running it -----------------------------------------------------------------------------------------------------
def start(ref: str, tree: Path, services: Any, tmp: Path) -> Target:
    home = tmp / f"home-{tree.name}"
    home.mkdir()
    log = tmp / f"{tree.name}.log"
    server = AppServer(
        app_factory_of(tree),
        env=local_env(home, services, tree=tree),
        log_path=log,
        tree=tree,
        http=http_protocol_of(tree),
    )
    server.wait_ready()
    org = create_org(server.port)
    agent = create_agent(server.port, org, "probe", daily=1_000_000, per_tx=100_000, threshold=100_000)
    return Target(name=ref, server=server, log=log, home=home, org=org, agent=agent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("refs", nargs="*", default=["HEAD"], help="commits to probe (default: HEAD)")
    args = parser.parse_args(argv)

    from devtools.localstack import LocalStack
    from devtools.migrate import apply_migrations

    tmp = Path(tempfile.mkdtemp(prefix="agentpay-probe-"))
    stack = LocalStack(tmp / "stack")
    targets: list[Target] = []
    trees: list[Path] = []
    try:
        for i, ref in enumerate(args.refs):
            trees.append(add_worktree(ref, tmp / f"t{i}"))
        services = stack.start()
        apply_migrations(services.database_url, trees[-1] / "migrations")  # the newest: migrations only add
        for ref, tree in zip(args.refs, trees, strict=True):
            targets.append(start(ref, tree, services, tmp))
        for title, probe in PROBES:
            print(f"\n{title}")
            for target in targets:
                print(f"  {target.name:<10} {probe(target)}", flush=True)
                # Each probe starts from a clean slate of failed-authentication counts (they last a minute).
                _forget_counts(services.redis_url)
    finally:
        for target in targets:
            target.server.stop()
        stack.stop()
        for tree in trees:
            remove_worktree(tree)
    return 0


def _forget_counts(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter("throttle:*"))
    if keys:
        client.delete(*keys)
    client.close()


if __name__ == "__main__":
    sys.exit(main())
