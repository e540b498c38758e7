"""Decision webhooks: delivering a recorded event to the agent's callback_url, signed with the agent's key."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import httpx

from shared.errors import CallbackUrlRefused, NotFound, WebhookDeliveryFailed, WebhookRefused
from shared.notify.destinations import CallbackPolicy, Destination, IPAddress, check_resolved, check_url
from shared.platform import db
from shared.platform.clock import clock

log = logging.getLogger("agentpay.webhooks")
DELIVERY_TIMEOUT_SECONDS = 10.0
# socket.getaddrinfo's signature: tests play DNS through it (the one thing they cannot control for real).
Resolver = Callable[..., list[tuple[Any, ...]]]


def signature_header(key_hash: str, body: bytes, timestamp: int) -> str:
    """`t=<unix seconds>,v1=<hex>`: HMAC-SHA256 keyed with the agent key's hex SHA-256 over "{t}.{raw_body}"."""
    digest = hmac.new(key_hash.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _connect_to(callback_url: str, policy: CallbackPolicy, resolve: Resolver) -> tuple[Destination, list[IPAddress]]:
    """The callback's destination and the addresses it may connect to: its host resolved once, every answer checked.

    The delivery connects to these addresses, never to the name: a second lookup (DNS rebinding) cannot differ.
    """
    destination = check_url(callback_url, policy)
    if destination.address is not None:
        return destination, [destination.address]
    try:
        answers = resolve(destination.host, destination.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookDeliveryFailed(f"The callback host {destination.host!r} does not resolve.") from exc
    addresses = [check_resolved(destination, str(answer[4][0])) for answer in answers]
    if not addresses:
        raise WebhookDeliveryFailed(f"The callback host {destination.host!r} does not resolve.")
    return destination, list(dict.fromkeys(addresses))


def _post_pinned(
    http: httpx.Client,
    destination: Destination,
    address: IPAddress,
    body: bytes,
    headers: dict[str, str],
) -> httpx.Response:
    """POST to the checked address, with the Host header and (https) the TLS server name of the URL's host."""
    extensions = {}
    if destination.url.scheme == "https" and destination.address is None:
        extensions["sni_hostname"] = destination.host.removesuffix(".")  # the certificate is verified for this name
    return http.post(
        destination.url.copy_with(host=str(address)),
        content=body,
        headers={**headers, "Host": destination.url.netloc.decode("ascii")},
        extensions=extensions,
    )


def _post_to_first_reachable(
    http: httpx.Client, destination: Destination, addresses: list[IPAddress], body: bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST to the first checked address that takes the connection (localhost may be ::1 and 127.0.0.1)."""
    for address in addresses[:-1]:
        try:
            return _post_pinned(http, destination, address, body, headers)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            continue  # nothing was sent: the next checked address may answer
    return _post_pinned(http, destination, addresses[-1], body, headers)


def deliver(
    event_id: str,
    *,
    policy: CallbackPolicy | None = None,
    client: httpx.Client | None = None,
    resolve: Resolver = socket.getaddrinfo,
) -> int:
    """POST the event to its transaction's callback_url. Returns the receiver's status; raises unless 2xx.

    `policy` says where callbacks may go (default: production's, public addresses only); `resolve` is getaddrinfo.
    A destination the policy refuses raises WebhookRefused, whatever the mode.
    """
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
    try:
        destination, addresses = _connect_to(row["callback_url"], policy or CallbackPolicy(), resolve)
    except CallbackUrlRefused as refused:
        # The reason names the host or address, never the URL's path or query (they may carry the agent's secrets).
        log.warning("webhook refused", extra={"fields": {"event_id": event_id, "reason": refused.reason}})
        raise WebhookRefused(f"callback_url {refused.reason}; not delivered.") from refused
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
        response = _post_to_first_reachable(http, destination, addresses, body, headers)
    except httpx.HTTPError as exc:
        raise WebhookDeliveryFailed(f"Could not reach the receiver: {type(exc).__name__}.") from exc
    finally:
        if owned:
            http.close()
    if not response.is_success:
        raise WebhookDeliveryFailed(f"The receiver answered {response.status_code}.")
    log.info("webhook delivered", extra={"fields": {"event_id": event_id, "status": response.status_code}})
    return response.status_code
