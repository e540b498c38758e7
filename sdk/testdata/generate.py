"""Writes the shared test vectors (signatures, idempotency keys, webhooks) from the spec in API.md.

Deliberately independent of every SDK and of the server: plain hashlib, hmac and json, so a bug in one
implementation cannot leak into the expected values. Run `python sdk/testdata/generate.py` after changing a
case; the output is deterministic, so an unchanged run leaves the files byte-identical.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def fixed_key(prefix: str, seed: str) -> str:
    """A realistic, reproducible API key: prefix + 64 hex."""
    return prefix + hashlib.sha256(seed.encode()).hexdigest()


KEY_A = fixed_key("apk_test_", "vector-agent-a")
KEY_B = fixed_key("apk_test_", "vector-agent-b")
KEY_LIVE = fixed_key("apk_live_", "vector-agent-live")


def hmac_hex(api_key: str, message: bytes) -> str:
    """HMAC-SHA256; the key is the ASCII lowercase hex sha256 of the API key (what the server stores)."""
    key = hashlib.sha256(api_key.encode("utf-8")).hexdigest().encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


# -- request signatures --
def request_signature(api_key: str, timestamp: int, method: str, path: str, body: str) -> str:
    message = f"{timestamp}.{method}.{path}.{body}".encode()
    return hmac_hex(api_key, message)


SIGNATURE_CASES: list[dict[str, Any]] = [
    {
        "name": "GET a transaction, empty body",
        "api_key": KEY_A,
        "timestamp": 1764000000,
        "method": "GET",
        "path": "/v1/transactions/7b0f0d52-3a51-4c43-9d67-0c1f4b7f9a10",
        "body": "",
    },
    {
        "name": "GET with a query string (signed as sent, in order)",
        "api_key": KEY_A,
        "timestamp": 1764000001,
        "method": "GET",
        "path": "/v1/dashboard/transactions?status=pending&limit=10&agent_id=3f1e",
        "body": "",
    },
    {
        "name": "GET with percent-encoded path and query (the raw request target, not decoded)",
        "api_key": KEY_A,
        "timestamp": 1764000002,
        "method": "GET",
        "path": "/v1/transactions/abc%20def?q=a%2Fb&x=%C3%A9",
        "body": "",
    },
    {
        "name": "POST payment request, compact ASCII JSON",
        "api_key": KEY_A,
        "timestamp": 1764000003,
        "method": "POST",
        "path": "/v1/payment-request",
        "body": '{"amount":1250,"currency":"usd","merchant":"api.example.com","purpose":"GPU hours",'
        '"context":{},"idempotency_key":"k-1"}',
    },
    {
        "name": "POST with a unicode body (UTF-8 bytes, not \\u escapes)",
        "api_key": KEY_B,
        "timestamp": 1764000004,
        "method": "POST",
        "path": "/v1/payment-request",
        "body": '{"amount":500,"currency":"usd","merchant":"café.example","purpose":"日本語の翻訳 🚀",'
        '"context":{"note":"naïve – “quoted”"},"idempotency_key":"k-ü"}',
    },
    {
        "name": "POST with an empty body",
        "api_key": KEY_A,
        "timestamp": 1764000005,
        "method": "POST",
        "path": "/v1/dashboard/agents/0d6c/unblock",
        "body": "",
    },
    {
        "name": "POST with a pretty-printed body: whitespace is part of the signed bytes",
        "api_key": KEY_A,
        "timestamp": 1764000006,
        "method": "POST",
        "path": "/v1/payment-request",
        "body": '{\n  "amount": 100,\n  "merchant": "m",\n  "purpose": "p",\n  "idempotency_key": "k-2"\n}\n',
    },
    {
        "name": "PUT with a live key",
        "api_key": KEY_LIVE,
        "timestamp": 1799999999,
        "method": "PUT",
        "path": "/v1/dashboard/agents/0d6c/limits",
        "body": '{"daily_limit":5000,"per_transaction_limit":2000,"approval_threshold":1000}',
    },
]


# -- derived idempotency keys --
def integral_floats_to_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: integral_floats_to_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [integral_floats_to_ints(v) for v in value]
    return value


def derived_key(params: dict[str, Any]) -> str:
    full = {
        "amount": params["amount"],
        "currency": params.get("currency", "usd"),
        "merchant": params["merchant"],
        "purpose": params["purpose"],
        "context": params.get("context", {}),
    }
    text = json.dumps(
        integral_floats_to_ints(full),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return "ap_" + hashlib.sha256(text.encode("utf-8")).hexdigest()


IDEMPOTENCY_CASES: list[dict[str, Any]] = [
    {
        "name": "all fields",
        "params": {
            "amount": 1250,
            "currency": "usd",
            "merchant": "api.example.com",
            "purpose": "GPU hours",
            "context": {},
        },
    },
    {
        "name": "currency and context missing: defaults usd and {}",
        "params": {"amount": 1250, "merchant": "api.example.com", "purpose": "GPU hours"},
    },
    {
        "name": "context missing only",
        "params": {"amount": 99, "currency": "usd", "merchant": "books.example", "purpose": "a book"},
    },
    {
        "name": "context keys needing sorting",
        "params": {
            "amount": 300,
            "merchant": "m.example",
            "purpose": "p",
            "context": {"zeta": 1, "alpha": 2, "Beta": 3, "_under": 4, "10": 5, "9": 6},
        },
    },
    {
        "name": "nested context, arrays keep their order",
        "params": {
            "amount": 4200,
            "merchant": "cloud.example",
            "purpose": "cluster",
            "context": {
                "task": {"id": "t-9", "steps": [3, 1, 2], "meta": {"b": None, "a": True, "c": False}},
                "tags": ["x", {"y": 1, "x": 2}],
            },
        },
    },
    {
        "name": "unicode keys and values (UTF-8, not escaped)",
        "params": {
            "amount": 500,
            "merchant": "café.example",
            "purpose": "日本語の翻訳 🚀",
            "context": {"ключ": "значение", "é": "ü", "emoji": "👩‍💻"},
        },
    },
    {
        "name": "keys sorted by code point, not UTF-16 unit (U+FF61 before U+1F600)",
        "params": {
            "amount": 1,
            "merchant": "m",
            "purpose": "p",
            "context": {"😀": "astral", "｡": "bmp", "a": "ascii"},
        },
    },
    {
        "name": "integral float amount 1.0 hashes like 1",
        "params": {"amount": 1.0, "merchant": "m", "purpose": "p"},
    },
    {
        "name": "integral floats inside context, -0.0 becomes 0; other floats stay",
        "params": {
            "amount": 700,
            "merchant": "m",
            "purpose": "p",
            "context": {"qty": 3.0, "zero": -0.0, "ratio": 0.5},
        },
    },
    {
        "name": "control characters, quotes and slashes in strings",
        "params": {
            "amount": 12,
            "merchant": 'a/b "c"',
            "purpose": "line1\nline2\ttab\u0001 \\ end",
            "context": {"path": "/x/y"},
        },
    },
]


# -- webhooks --
EVENT = {
    "id": "evt_0b7c2b1e",
    "type": "transaction.completed",
    "created_at": "2025-11-24T16:00:05+00:00",
    "data": {
        "id": "7b0f0d52-3a51-4c43-9d67-0c1f4b7f9a10",
        "object": "transaction",
        "organization_id": "5a3f7c3e-8f0e-4a55-9a0c-2f1c8c1e1b11",
        "agent_id": "c4b2a9d1-0e6f-4f4e-8b9a-6d5e4c3b2a10",
        "amount": 1250,
        "currency": "usd",
        "merchant": "café.example",
        "purpose": "GPU hours",
        "context": {},
        "status": "completed",
        "decision_reason": "approved_by_admin",
        "idempotency_key": "k-1",
        "stripe_charge_id": "ch_3Q1",
        "approval_expires_at": None,
        "created_at": "2025-11-24T15:58:00+00:00",
        "completed_at": "2025-11-24T16:00:05+00:00",
    },
}
PAYLOAD = json.dumps(EVENT, separators=(",", ":"), ensure_ascii=False)
T = 1764000000


def webhook_header(api_key: str, t: int | str, payload: str) -> str:
    return f"t={t},v1=" + hmac_hex(api_key, f"{t}.{payload}".encode())


def webhook_cases() -> list[dict[str, Any]]:
    good = webhook_header(KEY_A, T, PAYLOAD)
    good_hex = good.split("v1=")[1]
    tampered = PAYLOAD.replace('"amount":1250', '"amount":9250')
    assert tampered != PAYLOAD
    return [
        {"name": "valid", "api_key": KEY_A, "now": T + 5, "payload": PAYLOAD, "header": good, "valid": True},
        {
            "name": "valid, spaces after the comma",
            "api_key": KEY_A,
            "now": T,
            "payload": PAYLOAD,
            "header": good.replace(",", ", "),
            "valid": True,
        },
        {
            "name": "valid, exactly 300 s old (tolerance is inclusive)",
            "api_key": KEY_A,
            "now": T + 300,
            "payload": PAYLOAD,
            "header": good,
            "valid": True,
        },
        {
            "name": "valid, one of two v1 signatures matches (key rotation)",
            "api_key": KEY_A,
            "now": T,
            "payload": PAYLOAD,
            "header": f"t={T},v1={'0' * 64},v1={good_hex}",
            "valid": True,
        },
        {
            "name": "tampered body",
            "api_key": KEY_A,
            "now": T,
            "payload": tampered,
            "header": good,
            "valid": False,
        },
        {
            "name": "wrong api key",
            "api_key": KEY_B,
            "now": T,
            "payload": PAYLOAD,
            "header": good,
            "valid": False,
        },
        {
            "name": "stale: 301 s old",
            "api_key": KEY_A,
            "now": T + 301,
            "payload": PAYLOAD,
            "header": good,
            "valid": False,
        },
        {
            "name": "from the future: 301 s ahead",
            "api_key": KEY_A,
            "now": T - 301,
            "payload": PAYLOAD,
            "header": good,
            "valid": False,
        },
        {
            "name": "timestamp in the header changed (signature binds t)",
            "api_key": KEY_A,
            "now": T + 1,
            "payload": PAYLOAD,
            "header": good.replace(f"t={T}", f"t={T + 1}"),
            "valid": False,
        },
        {
            "name": "malformed: no t",
            "api_key": KEY_A,
            "now": T,
            "payload": PAYLOAD,
            "header": f"v1={good_hex}",
            "valid": False,
        },
        {
            "name": "malformed: no v1",
            "api_key": KEY_A,
            "now": T,
            "payload": PAYLOAD,
            "header": f"t={T}",
            "valid": False,
        },
        {
            "name": "malformed: t not an integer",
            "api_key": KEY_A,
            "now": T,
            "payload": PAYLOAD,
            "header": f"t=abc,v1={good_hex}",
            "valid": False,
        },
        {
            "name": "malformed: empty header",
            "api_key": KEY_A,
            "now": T,
            "payload": PAYLOAD,
            "header": "",
            "valid": False,
        },
        {
            "name": "malformed: not key=value",
            "api_key": KEY_A,
            "now": T,
            "payload": PAYLOAD,
            "header": f"{T},{good_hex}",
            "valid": False,
        },
        {
            "name": "v0 scheme only is not accepted",
            "api_key": KEY_A,
            "now": T,
            "payload": PAYLOAD,
            "header": f"t={T},v0={good_hex}",
            "valid": False,
        },
    ]


def write(name: str, cases: list[dict[str, Any]]) -> None:
    text = json.dumps(cases, indent=2, ensure_ascii=False) + "\n"
    (HERE / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(cases)} cases to {name}")


def main() -> None:
    write(
        "signatures.json",
        [
            {
                **case,
                "signature": request_signature(
                    case["api_key"], case["timestamp"], case["method"], case["path"], case["body"]
                ),
            }
            for case in SIGNATURE_CASES
        ],
    )
    write("idempotency_keys.json", [{**case, "key": derived_key(case["params"])} for case in IDEMPOTENCY_CASES])
    write("webhooks.json", webhook_cases())


if __name__ == "__main__":
    main()
