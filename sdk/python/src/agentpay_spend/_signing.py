"""Request signatures and derived idempotency keys: the two byte-exact contracts shared with the server."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from typing import Any

SIGNATURE_VERSION = "v1"


def signing_key(api_key: str) -> bytes:
    """The HMAC key: lowercase hex sha256 of the API key, as ASCII bytes (the value the server stores)."""
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest().encode("ascii")


def sign_request(api_key: str, *, timestamp: str, method: str, path: str, body: bytes) -> str:
    """Hex HMAC-SHA256 over `{timestamp}.{METHOD}.{path_with_query}.{raw_body}`."""
    message = f"{timestamp}.{method.upper()}.{path}.".encode() + body
    return hmac.new(signing_key(api_key), message, hashlib.sha256).hexdigest()


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (not \\u escapes), no NaN; integral floats written as integers."""
    return json.dumps(
        normalize_numbers(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def normalize_numbers(value: Any) -> Any:
    """Integral floats become ints, recursively, so 1.0 and 1 hash alike (JavaScript has no 1.0)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} cannot be sent as JSON")
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: normalize_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [normalize_numbers(item) for item in value]
    return value


def derive_idempotency_key(
    *,
    amount: int | float,
    merchant: str,
    purpose: str,
    currency: str | None = "usd",
    context: dict[str, Any] | None = None,
) -> str:
    """`"ap_" + sha256hex(canonical_json(params))`: the same purchase always gets the same key."""
    params = {
        "amount": amount,
        "currency": currency or "usd",
        "merchant": merchant,
        "purpose": purpose,
        "context": context if context is not None else {},
    }
    return "ap_" + hashlib.sha256(canonical_json(params)).hexdigest()
