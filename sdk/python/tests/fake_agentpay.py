"""A small AgentPay look-alike on a real local HTTP server, for SDK tests.

It checks signatures with its own hashlib code (not the SDK's), keeps transactions in memory, and can be
scripted to answer the next requests with canned responses (for retries and error mapping).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

AUTO_APPROVE_UP_TO = 1000
PER_TRANSACTION_LIMIT = 10000
# As if the agent's policy blocked this merchant (the repository README's example policy does).
BLOCKED_MERCHANT = "ads.example.com"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


@dataclass
class Canned:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def error_body(type_: str, code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "code": code, "message": message, "request_id": "req_test", **extra}}


class FakeAgentPay:
    """State and behaviour; `url` is where it listens."""

    def __init__(self, api_key: str, *, polls_until_decided: int = 1) -> None:
        self.api_key = api_key
        self.polls_until_decided = polls_until_decided
        self.requests: list[Recorded] = []
        self.script: list[Canned] = []
        self.transactions: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, tuple[str, dict[str, Any]]] = {}
        self.polls: dict[str, int] = {}
        self.outcome: dict[str, str] = {}  # tx id -> "completed" | "declined" | "timed_out" | "never"
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeAgentPay:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- behaviour --
    def verify(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Canned | None:
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return Canned(401, error_body("authentication", "invalid_api_key", "The API key is not valid."))
        timestamp = headers.get("agentpay-timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
            return Canned(401, error_body("authentication", "timestamp_out_of_range", "Bad timestamp."))
        key = hashlib.sha256(self.api_key.encode()).hexdigest().encode()
        message = f"{timestamp}.{method}.{path}.".encode() + body
        expected = "v1=" + hmac.new(key, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("agentpay-signature", "")):
            return Canned(401, error_body("authentication", "invalid_signature", "Bad signature."))
        return None

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Canned:
        with self.lock:
            if self.script:
                return self.script.pop(0)
            if method == "POST" and path == "/v1/payment-request":
                return self.payment_request(headers, json.loads(body))
            if method == "GET" and path.startswith("/v1/transactions/"):
                return self.poll(path.rsplit("/", 1)[1])
            return Canned(404, error_body("not_found", "not_found", "No such object."))

    def payment_request(self, headers: dict[str, str], data: dict[str, Any]) -> Canned:
        key = str(data.get("idempotency_key"))
        if headers.get("idempotency-key") != key:
            return Canned(422, error_body("invalid_request", "validation_error", "Keys differ.", errors=[]))
        amount = data.get("amount")
        if not isinstance(amount, int) or not 1 <= amount <= 100_000_000:
            return Canned(
                422,
                error_body(
                    "invalid_request",
                    "validation_error",
                    "Invalid request.",
                    errors=[{"field": "amount", "message": "must be an integer from 1 to 100000000"}],
                ),
            )
        params = {
            k: data.get(k) for k in ("amount", "currency", "merchant", "purpose", "context", "callback_url")
        }
        if key in self.by_key:
            tx_id, seen = self.by_key[key]
            if seen != params:
                return Canned(409, error_body("conflict", "idempotency_key_reused", "Key reused."))
            return Canned(200, self.transactions[tx_id], {"Idempotent-Replayed": "true"})
        tx = {
            "id": str(uuid.uuid4()),
            "object": "transaction",
            "organization_id": "5a3f7c3e-8f0e-4a55-9a0c-2f1c8c1e1b11",
            "agent_id": "c4b2a9d1-0e6f-4f4e-8b9a-6d5e4c3b2a10",
            "amount": amount,
            "currency": data.get("currency", "usd"),
            "merchant": data["merchant"],
            "purpose": data["purpose"],
            "context": data.get("context") or {},
            "status": "approved",
            "decision_reason": "auto_approved",
            "idempotency_key": key,
            "stripe_charge_id": None,
            "approval_expires_at": None,
            "created_at": now_iso(),
            "completed_at": None,
        }
        self.by_key[key] = (tx["id"], params)
        self.transactions[tx["id"]] = tx
        merchant = str(data["merchant"]).strip().lower().rstrip(".")
        if merchant == BLOCKED_MERCHANT:
            tx.update(status="declined", decision_reason="merchant_blocked")
            message = f"Payments to {merchant} are blocked by this agent's policy."
            return Canned(402, {**tx, **error_body("budget", "merchant_blocked", message, merchant=merchant)})
        if amount > PER_TRANSACTION_LIMIT:
            tx.update(status="declined", decision_reason="per_transaction_limit_exceeded")
            message = f"Per-transaction limit of {PER_TRANSACTION_LIMIT} exceeded (requested {amount})."
            error = error_body(
                "budget",
                "per_transaction_limit_exceeded",
                message,
                limit=PER_TRANSACTION_LIMIT,
                requested=amount,
            )
            return Canned(402, {**tx, **error})
        if amount > AUTO_APPROVE_UP_TO:
            expires = datetime.now(UTC) + timedelta(hours=24)
            tx.update(
                status="pending", decision_reason="approval_required", approval_expires_at=expires.isoformat()
            )
            return Canned(202, tx)
        return Canned(201, tx)

    def poll(self, tx_id: str) -> Canned:
        tx = self.transactions.get(tx_id)
        if tx is None:
            return Canned(404, error_body("not_found", "not_found", "No such object."))
        self.polls[tx_id] = self.polls.get(tx_id, 0) + 1
        outcome = self.outcome.get(tx_id, "completed")
        if tx["status"] == "pending" and self.polls[tx_id] >= self.polls_until_decided and outcome != "never":
            if outcome == "declined":
                tx.update(status="declined", decision_reason="declined_by_admin")
            elif outcome == "timed_out":
                tx.update(status="timed_out", decision_reason="approval_timed_out")
            else:
                tx.update(status="approved", decision_reason="approved_by_admin")
        elif tx["status"] == "approved":
            tx.update(status="completed", stripe_charge_id="ch_" + tx_id[:8], completed_at=now_iso())
        return Canned(200, tx)

    # -- HTTP plumbing --
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                rejected = fake.verify(self.command, self.path, headers, body)
                fake.requests.append(Recorded(self.command, self.path, headers, body, rejected is None))
                answer = rejected or fake.handle(self.command, self.path, headers, body)
                if isinstance(answer.body, bytes):
                    payload = answer.body
                else:
                    payload = json.dumps(answer.body).encode() if answer.body is not None else b""
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Request-Id", "req_test")
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
