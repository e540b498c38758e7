"""Signs test requests the way API.md says an SDK must, written independently of the server's code."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any


def signature(api_key: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    key = hashlib.sha256(api_key.encode()).hexdigest().encode()
    message = f"{timestamp}.{method}.{path}.".encode() + body
    return "v1=" + hmac.new(key, message, hashlib.sha256).hexdigest()


def signed_headers(
    api_key: str, method: str, path: str, body: bytes = b"", *, timestamp: int | None = None
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "Authorization": f"Bearer {api_key}",
        "AgentPay-Timestamp": ts,
        "AgentPay-Signature": signature(api_key, ts, method, path, body),
    }
    if body:
        headers["Content-Type"] = "application/json"
    return headers


def encode(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
