"""Decision webhooks: delivering a recorded event to the agent's callback_url, signed with the agent's key."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from shared import db
from shared.clock import clock
from shared.errors import NotFound, ServiceUnavailable

log = logging.getLogger("agentpay.webhooks")
DELIVERY_TIMEOUT_SECONDS = 10.0


class WebhookDeliveryFailed(ServiceUnavailable):
    """The receiver did not answer 2xx; the job layer retries with backoff."""

    code = "webhook_delivery_failed"
    message = "The webhook receiver did not accept the event."


def signature_header(key_hash: str, body: bytes, timestamp: int) -> str:
    """`t=<unix seconds>,v1=<hex>`: HMAC-SHA256 keyed with the agent key's hex SHA-256 over "{t}.{raw_body}"."""
    digest = hmac.new(key_hash.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _refuse_private_destination(url: str) -> None:
    """Outside local mode a callback must not reach our own network (SSRF): private, loopback, link-local."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)}
    except OSError as exc:
        raise WebhookDeliveryFailed(f"The callback host {host!r} does not resolve.") from exc
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise WebhookRefused(f"The callback host {host!r} resolves to a private address; not delivered.")


class WebhookRefused(WebhookDeliveryFailed):
    """The callback URL points into a private network: never delivered, not retried."""

    http_status = 422
    type = "invalid_request"
    code = "callback_url_refused"


def deliver(event_id: str, *, client: httpx.Client | None = None, allow_private: bool = False) -> int:
    """POST the event to its transaction's callback_url. Returns the receiver's status; raises unless 2xx."""
    with db.connection() as conn:
        row = conn.execute(
            """
            SELECT e.payload, t.callback_url, a.api_key_hash
            FROM webhook_events e
            JOIN transactions t ON t.id = e.transaction_id
            JOIN agents a ON a.id = t.agent_id
            WHERE e.id = %s
            """,
            (event_id,),
        ).fetchone()
    if row is None:
        raise NotFound("No such webhook event.")
    if not allow_private:
        _refuse_private_destination(row["callback_url"])
    payload: dict[str, Any] = row["payload"]
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "AgentPay-Webhooks/1",
        "AgentPay-Signature": signature_header(row["api_key_hash"], body, int(clock.time())),
        "AgentPay-Event-Id": event_id,
    }
    owned = client is None
    http = client or httpx.Client(timeout=DELIVERY_TIMEOUT_SECONDS, follow_redirects=False)
    try:
        response = http.post(row["callback_url"], content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise WebhookDeliveryFailed(f"Could not reach the receiver: {type(exc).__name__}.") from exc
    finally:
        if owned:
            http.close()
    if not response.is_success:
        raise WebhookDeliveryFailed(f"The receiver answered {response.status_code}.")
    log.info("webhook delivered", extra={"fields": {"event_id": event_id, "status": response.status_code}})
    return response.status_code
