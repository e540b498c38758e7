"""Schemathesis against the exported openapi.json and a real server: every operation, valid credentials, two checks.

The checks: no 5xx (`not_a_server_error`) and every answer conforms to the contract (documented status code, content
type, body schema and headers). Credentials come from `requests` auth objects, which run on the prepared request,
after the body is serialized: agent calls are signed over the exact path, query string and bytes that are sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure, FailureGroup

OPENAPI_FILE = Path(__file__).resolve().parents[2] / "openapi.json"

# Both modes: schema-valid inputs, and inputs that break the schema (these must be rejected with a documented 4xx).
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]


# Credentials --------------------------------------------------------------------------------------------------
class AgentSigner(requests.auth.AuthBase):
    """Bearer agent key plus a fresh AgentPay-Signature over the request exactly as it goes on the wire."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.key = hashlib.sha256(api_key.encode()).hexdigest().encode()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        timestamp = str(int(time.time()))
        message = f"{timestamp}.{request.method}.{request.path_url}.".encode() + body
        request.headers["Authorization"] = f"Bearer {self.api_key}"
        request.headers["AgentPay-Timestamp"] = timestamp
        request.headers["AgentPay-Signature"] = "v1=" + hmac.new(self.key, message, hashlib.sha256).hexdigest()
        return request


class AdminBearer(requests.auth.AuthBase):
    def __init__(self, admin_key: str) -> None:
        self.admin_key = admin_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.admin_key}"
        return request


class QStashSigner(requests.auth.AuthBase):
    """Upstash-Signature as QStash (and the local dispatcher) signs: a JWT over the URL and the body's digest."""

    def __init__(self, signing_key: str) -> None:
        self.signing_key = signing_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from shared.jobs.outbox import sign_like_qstash

        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        url = (request.url or "").split("?", 1)[0]
        request.headers["Upstash-Signature"] = sign_like_qstash(url=url, body=body, signing_key=self.signing_key)
        return request


# The world the fuzzer works in --------------------------------------------------------------------------------
@dataclass
class Target:
    """An organization with a signing agent, agents for the dashboard calls to change, and real transactions."""

    base_url: str
    admin_key: str
    agent_key: str
    agent_id: str
    other_agent_ids: list[str]
    transaction_ids: list[str]
    pending_ids: list[str]
    qstash_key: str | None
    tokens: dict[str, list[str]] = field(default_factory=dict)

    def auth_for(self, path: str) -> requests.auth.AuthBase | None:
        if path.startswith("/v1/dashboard/"):
            return AdminBearer(self.admin_key)
        if path == "/v1/payment-request" or path.startswith("/v1/transactions/"):
            return AgentSigner(self.agent_key)
        if path.startswith("/v1/jobs/") and self.qstash_key:
            return QStashSigner(self.qstash_key)
        return None


def prepare_target(base_url: str, *, pending: int = 30, agents: int = 4) -> Target:
    """Create the organization, agents and transactions through the API itself."""
    session = requests.Session()
    signup = session.post(
        f"{base_url}/v1/orgs",
        json={"name": f"Fuzz {uuid.uuid4().hex[:6]}", "admin_email": "fuzz@example.com", "timezone": "UTC"},
        timeout=30,
    )
    assert signup.status_code == 201, signup.text
    admin_key = signup.json()["admin_key"]
    admin = AdminBearer(admin_key)

    def new_agent(limits: dict[str, int]) -> dict[str, Any]:
        created = session.post(
            f"{base_url}/v1/dashboard/agents",
            json={"name": f"fuzz-{uuid.uuid4().hex[:6]}", "limits": limits},
            auth=admin,
            timeout=30,
        )
        assert created.status_code == 201, created.text
        return dict(created.json())

    # Generous limits and a circuit breaker that a long run cannot trip; amounts over the threshold wait for approval.
    signing = new_agent(
        {
            "daily_limit": 100_000_000_000,
            "per_transaction_limit": 50_000_000,
            "approval_threshold": 1_000_000,
            "max_requests_per_minute": 10_000,
        }
    )
    others = [
        new_agent({"daily_limit": 5000, "per_transaction_limit": 2000, "approval_threshold": 1000})["agent"]["id"]
        for _ in range(agents)
    ]
    signer = AgentSigner(signing["api_key"])
    transaction_ids: list[str] = []
    pending_ids: list[str] = []
    for index in range(pending + 5):
        amount = 2_000_000 + index if index < pending else 500 + index
        response = session.post(
            f"{base_url}/v1/payment-request",
            data=json.dumps(
                {
                    "amount": amount,
                    "merchant": "fuzz.example.com",
                    "purpose": "fuzz",
                    "idempotency_key": f"seed-{index}",
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
            auth=signer,
            timeout=30,
        )
        assert response.status_code in (201, 202), response.text
        transaction_ids.append(response.json()["id"])
        if response.status_code == 202:
            pending_ids.append(response.json()["id"])
    from shared.config import get_settings

    settings = get_settings()
    return Target(
        base_url=base_url,
        admin_key=admin_key,
        agent_key=signing["api_key"],
        agent_id=signing["agent"]["id"],
        other_agent_ids=others,
        transaction_ids=transaction_ids,
        pending_ids=pending_ids,
        qstash_key=settings.qstash_current_signing_key,
        tokens=approval_tokens(settings.outbox_dir, pending_ids),
    )


_LINK = re.compile(r"/v1/(approve|decline)/([A-Za-z0-9_.-]+)")


def approval_tokens(outbox: Path, pending_ids: list[str], timeout: float = 10.0) -> dict[str, list[str]]:
    """The approve and decline tokens of the approval emails the local dispatcher wrote for our pending requests."""
    tokens: dict[str, list[str]] = {"approve": [], "decline": []}
    deadline = time.monotonic() + timeout
    wanted = set(pending_ids)
    while time.monotonic() < deadline:
        tokens = {"approve": [], "decline": []}
        found = set()
        for mail in sorted(outbox.glob("approval-*.json")):
            transaction_id = next((tid for tid in wanted if tid in mail.name), None)
            if transaction_id is None:
                continue
            found.add(transaction_id)
            for action, token in _LINK.findall(json.loads(mail.read_text())["text"]):
                tokens[action].append(token)
        if found == wanted:
            break
        time.sleep(0.2)
    return tokens


# Loading the schema -------------------------------------------------------------------------------------------
def operation_labels() -> list[str]:
    """Every operation in openapi.json as "METHOD /path" (cheap: read at collection time)."""
    document = json.loads(OPENAPI_FILE.read_text())
    return [
        f"{method.upper()} {path}"
        for path, item in sorted(document["paths"].items())
        for method in sorted(item)
        if method in ("get", "put", "post", "patch", "delete")
    ]


def load_schema(target: Target) -> Any:
    schema = schemathesis.openapi.from_path(str(OPENAPI_FILE))
    schema.config.update(base_url=target.base_url)

    # Real ids and tokens some of the time, so that the calls reach past "404 not found" and "400 invalid token".
    def real_values(name: str, path: str) -> list[str]:
        if name == "agent_id":
            return target.other_agent_ids
        if name == "transaction_id":
            return target.pending_ids + target.transaction_ids
        if name == "token":
            # Mostly the link's own action; the other action's tokens must be refused (400) and change nothing.
            action = "approve" if path.startswith("/v1/approve/") else "decline"
            other = "decline" if action == "approve" else "approve"
            return target.tokens.get(action, []) * 3 + target.tokens.get(other, [])[:3]
        return []

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
        if not path_parameters:
            return st.just(path_parameters)
        path = context.operation.path
        names = [name for name in path_parameters if real_values(name, path)]
        if not names:
            return st.just(path_parameters)
        return st.one_of(
            st.just(path_parameters),
            st.fixed_dictionaries({name: st.sampled_from(real_values(name, path)) for name in names}).map(
                lambda chosen: {**path_parameters, **chosen}
            ),
        )

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        path = context.operation.path
        body = loopback_callbacks(body)
        if not isinstance(body, dict):
            return st.just(body)
        if path == "/v1/payment-request":
            # Also a request that passes the checks the schema cannot express, to reach the budget logic.
            plausible = {key: value for key, value in body.items() if key != "callback_url"}
            plausible["currency"] = "usd"
            if not isinstance(plausible.get("idempotency_key"), str) or not plausible["idempotency_key"].strip():
                plausible["idempotency_key"] = "fuzz-" + hashlib.sha256(repr(body).encode()).hexdigest()[:16]
            return st.sampled_from([body, plausible])
        if path == "/v1/dashboard/agents" and isinstance(body.get("limits"), dict):
            return st.sampled_from([body, {**body, "limits": ordered_limits(body["limits"])}])
        if path.endswith("/limits"):
            return st.sampled_from([body, ordered_limits(body)])
        return st.just(body)

    return schema


_LIMIT_KEYS = ("approval_threshold", "per_transaction_limit", "daily_limit")


def ordered_limits(limits: dict[str, Any]) -> dict[str, Any]:
    """The limits with approval_threshold <= per_transaction_limit <= daily_limit, when all three are integers."""
    values = [limits.get(key) for key in _LIMIT_KEYS]
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in values):
        return limits
    return {**limits, **dict(zip(_LIMIT_KEYS, sorted(values), strict=True))}


def loopback_callbacks(body: Any) -> Any:
    """Point any http(s) callback_url at a closed loopback port: the fuzzer must not make the server call out."""
    if not isinstance(body, dict) or not isinstance(body.get("callback_url"), str):
        return body
    try:
        scheme = urlsplit(body["callback_url"]).scheme
    except ValueError:
        return body  # unparsable: the server must refuse it (422), and it cannot call it
    if scheme in ("http", "https"):
        return {**body, "callback_url": "http://127.0.0.1:9/fuzz-callback"}
    return body


def find_operation(schema: Any, label: str) -> Any:
    method, path = label.split(" ", 1)
    return schema[path][method]


# Running ------------------------------------------------------------------------------------------------------
EXAMPLES_KEPT = 3  # example requests kept per finding (a 5xx can have several causes in one operation)


@dataclass
class Finding:
    """One kind of failure (operation, check, status), with its first examples and how often it was seen."""

    operation: str
    check: str
    status: int | None
    title: str
    message: str
    examples: list[str] = field(default_factory=list)
    count: int = 0


@dataclass
class OperationReport:
    label: str
    examples: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    findings: dict[tuple[str, str, int | None], Finding] = field(default_factory=dict)
    seconds: float = 0.0
    skipped_modes: list[str] = field(default_factory=list)

    def record(self, check: str, status: int | None, title: str, message: str, example: str) -> None:
        """Count the failure; keep the shortest distinct requests that show it (the easiest to replay)."""
        finding = self.findings.setdefault(
            (check, title, status), Finding(self.label, check, status, title, message.strip()[:600])
        )
        finding.count += 1
        request_part = example.split("\n      -> ", 1)[0]
        if any(kept.split("\n      -> ", 1)[0] == request_part for kept in finding.examples):
            return
        finding.examples.append(example)
        finding.examples.sort(key=len)
        del finding.examples[EXAMPLES_KEPT:]


_AUTH_HEADERS = ("authorization", "agentpay-timestamp", "agentpay-signature", "upstash-signature")
_NOISE_HEADERS = ("user-agent", "accept-encoding", "connection", "content-length", "x-schemathesis-testcaseid")
_SHOWN_RESPONSE_HEADERS = ("content-type", "retry-after", "x-request-id")


def describe_exchange(path: str, request: Any, response: Any | None) -> str:
    """The request as sent (credentials named, not shown) and what came back, enough to replay it by hand."""
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    headers = {
        name: value for name, value in request.headers.items() if name.lower() not in _AUTH_HEADERS + _NOISE_HEADERS
    }
    if path.startswith("/v1/dashboard/"):
        credentials = "admin bearer key"
    elif path == "/v1/payment-request" or path.startswith("/v1/transactions/"):
        credentials = "agent key, signed: tests.support.signing.signed_headers(key, method, path_with_query, body)"
    elif path.startswith("/v1/jobs/"):
        credentials = "Upstash-Signature: shared.jobs.outbox.sign_like_qstash(url=base_url + path, body=body, ...)"
    else:
        credentials = "none"
    lines = [
        f"    {request.method} {request.path_url}",
        f"      credentials: {credentials}",
        f"      headers: {headers}",
        f"      body: {body[:1500]!r}{' ...' if len(body) > 1500 else ''}",
    ]
    if response is not None:
        shown = {k: ", ".join(v) for k, v in response.headers.items() if k.lower() in _SHOWN_RESPONSE_HEADERS}
        text = response.content[:300].decode("utf-8", errors="replace")
        lines.append(f"      -> {response.status_code} {shown} {text}")
    return "\n".join(lines)


def _failures(exc: BaseException) -> Iterator[Failure]:
    if isinstance(exc, FailureGroup):
        for inner in exc.exceptions:
            yield from _failures(inner)
    elif isinstance(exc, Failure):
        yield exc


def _check_name(failure: Failure) -> str:
    return failure.checks[0] if failure.checks else type(failure).__name__


def run_operation(
    schema: Any, target: Target, label: str, *, examples: int, modes: tuple[GenerationMode, ...] = MODES
) -> OperationReport:
    """Fuzz one operation with `examples` inputs per generation mode, deterministically.

    Failures are collected, not raised, so that one run reports every kind of failure with its examples.
    """
    operation = find_operation(schema, label)
    path = label.split(" ", 1)[1]
    report = OperationReport(label)
    started = time.monotonic()
    session = requests.Session()
    selected = checks()

    def exercise(case: Any) -> None:
        report.examples += 1
        # Alternate what the client accepts: the approval pages answer HTML or JSON, everything else JSON.
        accept = "application/json" if report.examples % 2 else "*/*"
        try:
            response = case.call(session=session, auth=target.auth_for(path), headers={"Accept": accept}, timeout=30)
        except requests.RequestException as exc:  # the server died or hung: as bad as a 5xx
            report.record("network_error", None, type(exc).__name__, str(exc), case.as_curl_command())
            return
        outcome = f"{response.status_code}"
        if response.status_code >= 400:
            try:
                outcome += " " + str(json.loads(response.content)["error"]["code"])
            except Exception:
                content_type = (response.headers.get("content-type") or ["no content type"])[0]
                outcome += f" ({content_type.split(';')[0]})"
        report.statuses[outcome] = report.statuses.get(outcome, 0) + 1
        try:
            case.validate_response(response, checks=selected)
        except (FailureGroup, Failure) as exc:
            for failure in _failures(exc):
                if response.status_code >= 500 and _check_name(failure) == "status_code_conformance":
                    continue  # the same answer as not_a_server_error's finding
                example = describe_exchange(path, response.request, response)
                report.record(_check_name(failure), response.status_code, failure.title, failure.message, example)

    for mode in modes:
        strategy = operation.as_strategy(generation_mode=mode)
        run = hypothesis.settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=hypothesis.Verbosity.quiet,
        )(hypothesis.given(strategy)(exercise))
        try:
            run()
        except hypothesis.errors.Unsatisfiable:
            # Nothing in this operation can be made invalid (no parameters, or only free-form strings).
            report.skipped_modes.append(mode.value)
    report.seconds = time.monotonic() - started
    return report


def format_summary(reports: list[OperationReport]) -> str:
    lines = ["", f"AgentPay contract fuzzing (schemathesis {schemathesis.__version__}, hypothesis derandomized)"]
    total = sum(report.examples for report in reports)
    findings = [finding for report in reports for finding in report.findings.values()]
    for report in reports:
        statuses = ", ".join(f"{status} x{count}" for status, count in sorted(report.statuses.items()))
        mark = f"  {len(report.findings)} FAILING" if report.findings else ""
        skipped = f" (no {'/'.join(report.skipped_modes)} inputs possible)" if report.skipped_modes else ""
        lines.append(f"  {report.label:<58} {report.examples:>5} inputs {report.seconds:5.1f}s{mark}{skipped}")
        lines.append(f"      {statuses}")
    lines.append(f"operations covered: {len(reports)}, inputs tried: {total}, distinct failures: {len(findings)}")
    for finding in findings:
        lines.append(f"- {finding.operation}: {finding.check} ({finding.title}), status {finding.status}, ")
        lines[-1] += f"seen {finding.count}x"
        lines.extend("    " + line for line in finding.message.splitlines())
        lines.extend(finding.examples)
    return "\n".join(lines)
