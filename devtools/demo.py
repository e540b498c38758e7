"""`agentpay demo`: both paths of a payment against a running `agentpay dev`, narrated as they happen."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from shared.config import get_settings
from shared.http.auth import compute_signature, hash_key
from shared.notify.email import outbox_file_name

TERMINAL = ("completed", "declined", "timed_out")


def _say(message: str) -> None:
    print(message, flush=True)


class DemoAgent:
    """A tiny signed client for the demo (the SDKs in sdk/ are what agents use)."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=15)
        self.api_key = api_key
        self.key_hash = hash_key(api_key)

    def _headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        return {
            "Authorization": f"Bearer {self.api_key}",
            "AgentPay-Timestamp": ts,
            "AgentPay-Signature": "v1=" + compute_signature(self.key_hash, ts, method, path, body),
            "Content-Type": "application/json",
        }

    def pay(self, amount: int, merchant: str, purpose: str) -> tuple[int, dict[str, Any]]:
        path = "/v1/payment-request"
        body = json.dumps(
            {"amount": amount, "merchant": merchant, "purpose": purpose, "idempotency_key": "demo-" + uuid.uuid4().hex}
        ).encode()
        response = self.http.post(path, content=body, headers=self._headers("POST", path, body))
        return response.status_code, response.json()

    def get(self, transaction_id: str) -> dict[str, Any]:
        path = f"/v1/transactions/{transaction_id}"
        response = self.http.get(path, headers=self._headers("GET", path, b""))
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def _wait(agent: DemoAgent, transaction_id: str, *, timeout: float, label: str) -> dict[str, Any]:
    started = time.monotonic()
    last = ""
    while True:
        tx = agent.get(transaction_id)
        elapsed = time.monotonic() - started
        if sys.stdout.isatty():  # one line that updates itself
            sys.stdout.write(f"\r  {label}: {tx['status']:<10} ({elapsed:4.0f}s)")
            sys.stdout.flush()
        elif tx["status"] != last:  # a log: one line per change
            _say(f"  {label}: {tx['status']} ({elapsed:.0f}s)")
        last = tx["status"]
        if tx["status"] in TERMINAL:
            if sys.stdout.isatty():
                sys.stdout.write("\n")
            return tx
        if elapsed > timeout:
            raise TimeoutError(f"still {tx['status']} after {timeout:.0f}s")
        time.sleep(0.5)


def _approve_link(outbox: Path, transaction_id: str, timeout: float = 30.0) -> str:
    path = outbox / outbox_file_name(f"approval-{transaction_id}")
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no approval email in {outbox} after {timeout:.0f}s")
        time.sleep(0.2)
    text = json.loads(path.read_text())["text"]
    return next(line.strip() for line in text.splitlines() if "/v1/approve/" in line)


def run_demo(*, base_url: str | None, timeout: float) -> int:
    settings = get_settings()
    dev_file = settings.agentpay_home / "dev.json"
    if not dev_file.exists():
        _say("No running AgentPay found: start it with `make run` first.")
        return 2
    dev = json.loads(dev_file.read_text())
    agent = DemoAgent(base_url or dev["base_url"], dev["agent_key"])

    _say("1. A small payment ($12.50): auto-approved, then charged.")
    status, tx = agent.pay(1250, "api.example.com", "Demo: 1M tokens of inference")
    _say(f"  POST /v1/payment-request -> {status} {tx.get('status')} ({tx.get('decision_reason')})")
    if status != 201:
        _say(f"  unexpected answer: {json.dumps(tx)}")
        return 1
    done = _wait(agent, tx["id"], timeout=60, label="charge")
    _say(f"  {done['status']}: Stripe PaymentIntent {done['stripe_charge_id']}")

    _say("2. A larger payment ($150.00): above the approval threshold, so a human decides.")
    status, tx = agent.pay(15000, "cloud.example.com", "Demo: reserve a GPU node for a day")
    _say(f"  POST /v1/payment-request -> {status} {tx.get('status')} ({tx.get('decision_reason')})")
    if status != 202:
        _say(f"  unexpected answer: {json.dumps(tx)}")
        return 1
    link = _approve_link(Path(dev["outbox_dir"]), tx["id"])
    _say("  The approval email is in the outbox. Open this link and click Approve:")
    _say(f"\n  {link}\n")
    done = _wait(agent, tx["id"], timeout=timeout, label="waiting for the admin")
    if done["status"] == "completed":
        _say(f"  completed: Stripe PaymentIntent {done['stripe_charge_id']}")
        return 0
    _say(f"  {done['status']} ({done['decision_reason']})")
    return 0
