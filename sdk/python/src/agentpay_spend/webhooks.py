"""Verification of the decision webhooks AgentPay POSTs to a payment's callback_url."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from ._errors import WebhookSignatureError
from ._signing import SIGNATURE_VERSION, signing_key

DEFAULT_TOLERANCE = 300


def verify(
    payload: bytes | str,
    signature_header: str | None,
    api_key: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """Check `AgentPay-Signature: t=<unix seconds>,v1=<hex>` against the raw body and return the parsed event.

    Pass the body exactly as received (before any JSON parsing). Raises WebhookSignatureError when the
    header is missing or malformed, the timestamp is more than `tolerance` seconds from `now`, or no v1
    signature matches. Several v1 entries are allowed; one match suffices. Receivers should still dedupe on
    the event's `id`.
    """
    raw = payload.encode("utf-8") if isinstance(payload, str) else payload
    timestamp, signatures = _parse_header(signature_header)
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        raise WebhookSignatureError(
            f"Webhook timestamp {timestamp} is more than {tolerance} s from now.",
            code="timestamp_out_of_range",
        )
    message = timestamp.encode("ascii") + b"." + raw
    expected = hmac.new(signing_key(api_key), message, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookSignatureError("Webhook signature does not match its body.", code="invalid_signature")
    try:
        event = json.loads(raw)
    except ValueError as exc:
        raise WebhookSignatureError("Webhook body is not JSON.", code="invalid_payload") from exc
    if not isinstance(event, dict):
        raise WebhookSignatureError("Webhook body is not a JSON object.", code="invalid_payload")
    return event


def _parse_header(header: str | None) -> tuple[str, list[str]]:
    """The `t` value (ASCII digits, as sent) and every `v1` hex from the header."""
    if not header:
        raise WebhookSignatureError("Missing AgentPay-Signature header.", code="missing_signature")
    timestamp: str | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise WebhookSignatureError("Malformed AgentPay-Signature header.", code="malformed_signature")
        if name == "t":
            timestamp = value
        elif name == SIGNATURE_VERSION:
            signatures.append(value)
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()) or not signatures:
        raise WebhookSignatureError(
            "AgentPay-Signature header needs t=<unix seconds> and v1=<hex>.", code="malformed_signature"
        )
    return timestamp, signatures
