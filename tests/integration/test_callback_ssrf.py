"""The pen test's SSRF finding: a callback_url never reaches an internal address, at request time nor at delivery
(DNS rebinding included), in local mode too; real receivers on loopback show what was (not) reached."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Agent, make_agent, make_org, signed_post
from tests.integration.test_hostile_input import assert_clean, fingerprint, pay_payload
from tests.support.internal_addresses import INTERNAL_CALLBACK_URLS
from tests.support.jobs import deliver_pending, post_job

PAY = "/v1/payment-request"


# Real receivers on loopback -----------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.end_headers()

    def do_CONNECT(self) -> None:  # noqa: N802 - a proxy client asks for a tunnel: note where to, refuse it
        self.server.tunnels.append(self.path)
        self.send_response(403)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Receiver(ThreadingHTTPServer):
    """An HTTP server on a loopback address that counts every connection made to it, whatever was sent."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), _Handler)
        self.connections = 0
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.tunnels: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)


@pytest.fixture()
def receivers() -> Iterator[Any]:
    started: list[Receiver] = []

    def start(host: str, port: int = 0) -> Receiver:
        receiver = Receiver(host, port)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.shutdown()
        receiver.server_close()


class PlayedDns:
    """getaddrinfo's signature, answering from a script: DNS is the one thing these tests cannot control for real."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.calls.append(host)
        address = self.answers[min(len(self.calls), len(self.answers)) - 1]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


# Helpers ------------------------------------------------------------------------------------------------------
def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def refusal_of(response: Any, agent: Agent) -> str:
    assert_clean(response, agent.api_key)
    assert response.status_code == 422, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    [problem] = error["errors"]
    assert problem["field"] == "callback_url"
    message: str = problem["message"]
    return message


def stored_event(client: Any, agent: Agent, callback_url: str) -> str:
    """A completed payment's webhook event, its row holding `callback_url` as an older release would have stored it
    (before the rule existed). Its delivery job is left to the test."""
    from shared.platform import db

    created = signed_post(client, agent.api_key, PAY, pay_payload(callback_url="http://127.0.0.1:9/unused"))
    assert created.status_code == 201, created.text
    tx_id = created.json()["id"]
    with db.connection() as conn:
        conn.execute("UPDATE transactions SET callback_url = %s WHERE id = %s", (callback_url, tx_id))
    assert post_job(client, "charge", {"transaction_id": tx_id}).status_code == 200
    with db.connection() as conn:
        event = conn.execute("SELECT id FROM webhook_events WHERE transaction_id = %s", (tx_id,)).fetchone()
        assert event is not None
        # No dispatcher of another test's server may deliver it meanwhile: the test delivers it itself.
        conn.execute("UPDATE job_outbox SET published_at = now() WHERE payload->>'event_id' = %s", (event["id"],))
    return str(event["id"])


def dead_letters_of(event_id: str) -> list[str]:
    from shared.platform import db

    with db.connection() as conn:
        rows = conn.execute(
            "SELECT error FROM job_dead_letters WHERE job_type = 'webhook' AND payload->>'event_id' = %s", (event_id,)
        ).fetchall()
    return [row["error"] for row in rows]


def local_policy() -> Any:
    from shared.config import get_settings
    from shared.notify.destinations import CallbackPolicy

    return CallbackPolicy.for_settings(get_settings())


@pytest.fixture()
def roomy_agent(client: Any) -> Agent:
    return make_agent(client, make_org(client), daily_limit=10_000_000, max_requests_per_minute=10_000)


# At request time ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "https://169.254.169.254/latest/meta-data/",
            "must not point at a private or internal address (169.254.169.254 is link-local)",
        ),
        ("https://10.0.0.1/", "must not point at a private or internal address (10.0.0.1 is private)"),
        ("https://[::1]/", "must not point at a private or internal address (::1 is loopback)"),
    ],
)
def test_the_pen_tests_urls_are_refused_when_the_payment_is_requested(
    client: Any, roomy_agent: Agent, url: str, message: str
) -> None:
    before = fingerprint(roomy_agent)
    response = signed_post(client, roomy_agent.api_key, PAY, pay_payload(callback_url=url))
    assert refusal_of(response, roomy_agent) == message
    assert fingerprint(roomy_agent) == before, "a refused request wrote nothing and held nothing"


@pytest.mark.parametrize(("url", "reason"), INTERNAL_CALLBACK_URLS, ids=lambda v: repr(v)[:40])
def test_every_spelling_of_an_internal_address_is_a_422_naming_why(
    client: Any, roomy_agent: Agent, url: str, reason: str
) -> None:
    before = fingerprint(roomy_agent)
    response = signed_post(client, roomy_agent.api_key, PAY, pay_payload(callback_url=url))
    assert reason in refusal_of(response, roomy_agent)
    assert fingerprint(roomy_agent) == before


@pytest.mark.parametrize(("service", "name"), [("redis_url", "Valkey"), ("stripe_api_base", "localstripe")])
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_in_local_mode_a_callback_to_an_embedded_service_is_refused(
    client: Any, roomy_agent: Agent, services: Any, service: str, name: str, host: str
) -> None:
    port = port_of(getattr(services, service))
    before = fingerprint(roomy_agent)
    response = signed_post(client, roomy_agent.api_key, PAY, pay_payload(callback_url=f"http://{host}:{port}/"))
    assert refusal_of(response, roomy_agent) == (
        f"must not point at a service of the local stack (port {port} is {name})"
    )
    assert fingerprint(roomy_agent) == before


# At delivery --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("listen_on", "stored"),
    [
        ("127.0.0.2", "https://127.0.0.2:{port}/hook"),
        ("127.0.0.1", "https://2130706433:{port}/hook"),
        ("127.0.0.1", "https://[::ffff:127.0.0.1]:{port}/hook"),
        ("127.0.0.1", "https://localhost.:{port}/hook"),
        ("::1", "https://[::1]:{port}/hook"),
    ],
)
def test_a_stored_internal_callback_is_dead_lettered_and_its_receiver_gets_nothing(
    client: Any, roomy_agent: Agent, receivers: Any, listen_on: str, stored: str
) -> None:
    receiver = receivers(listen_on)
    event_id = stored_event(client, roomy_agent, stored.format(port=receiver.port))
    response = post_job(client, "webhook", {"event_id": event_id})
    assert response.status_code == 200, "acknowledged: retrying would not change the answer"
    assert response.json()["refused"].startswith("callback_url must")
    assert len(dead_letters_of(event_id)) == 1
    assert receiver.connections == 0


@pytest.mark.parametrize(("service", "name"), [("redis_url", "Valkey"), ("stripe_api_base", "localstripe")])
def test_in_local_mode_a_stored_callback_to_an_embedded_service_is_never_delivered(
    client: Any, roomy_agent: Agent, services: Any, service: str, name: str
) -> None:
    port = port_of(getattr(services, service))
    event_id = stored_event(client, roomy_agent, f"http://localhost:{port}/")
    response = post_job(client, "webhook", {"event_id": event_id})
    assert response.status_code == 200
    assert f"port {port} is {name}" in response.json()["refused"]
    assert [f"port {port} is {name}" in error for error in dead_letters_of(event_id)] == [True]


@pytest.mark.parametrize("mode", ["production", "local"])
def test_a_public_looking_name_that_resolves_inside_is_refused_and_logged_once(
    client: Any, roomy_agent: Agent, receivers: Any, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    from shared.notify import webhooks
    from shared.notify.destinations import CallbackPolicy

    receiver = receivers("127.0.0.1")
    event_id = stored_event(client, roomy_agent, f"https://hooks.example.com:{receiver.port}/hook?token=s3cret")
    dns = PlayedDns("127.0.0.1")
    policy = local_policy() if mode == "local" else CallbackPolicy()
    with caplog.at_level(logging.WARNING, logger="agentpay.webhooks"), pytest.raises(webhooks.WebhookRefused) as no:
        webhooks.deliver(event_id, policy=policy, resolve=dns)
    assert "hooks.example.com resolves to 127.0.0.1, which is loopback" in no.value.message
    assert dns.calls == ["hooks.example.com"] and receiver.connections == 0
    [line] = [r for r in caplog.records if r.name == "agentpay.webhooks"]
    logged = line.getMessage() + json.dumps(getattr(line, "fields", {}))
    assert line.levelno == logging.WARNING and event_id in logged and "hooks.example.com" in logged
    key_hash = hashlib.sha256(roomy_agent.api_key.encode()).hexdigest()
    assert "s3cret" not in logged and key_hash not in logged and roomy_agent.api_key not in logged


def test_dns_rebinding_the_post_goes_to_the_address_that_was_checked(
    client: Any, roomy_agent: Agent, receivers: Any
) -> None:
    """The name is resolved once; the connection goes to that answer, whatever the name resolves to afterwards."""
    from shared.notify import webhooks

    later = receivers("127.0.0.1")  # where the system resolver (and a second lookup) would send it
    checked = receivers("127.0.0.2", later.port)  # the same port: only the address tells them apart
    event_id = stored_event(client, roomy_agent, f"http://localhost:{checked.port}/hook")
    dns = PlayedDns("127.0.0.2", "127.0.0.1")
    assert webhooks.deliver(event_id, policy=local_policy(), resolve=dns) == 200
    assert dns.calls == ["localhost"]
    assert later.connections == 0 and len(checked.posts) == 1
    headers, body = checked.posts[0]
    assert headers["host"] == f"localhost:{checked.port}" and json.loads(body)["id"] == event_id


def test_dns_rebinding_a_public_name_connects_to_the_checked_public_address(
    client: Any, roomy_agent: Agent, receivers: Any
) -> None:
    """Through a real forward proxy on loopback, which shows where the client asked to connect (no traffic leaves)."""
    from shared.notify import webhooks
    from shared.notify.destinations import CallbackPolicy

    proxy = receivers("127.0.0.1")
    event_id = stored_event(client, roomy_agent, "https://hooks.example.com/hook")
    dns = PlayedDns("93.184.216.34", "127.0.0.1")
    with (
        httpx.Client(proxy=f"http://127.0.0.1:{proxy.port}", timeout=5) as through_proxy,
        pytest.raises(webhooks.WebhookDeliveryFailed),
    ):
        webhooks.deliver(event_id, policy=CallbackPolicy(), client=through_proxy, resolve=dns)
    assert dns.calls == ["hooks.example.com"]
    assert proxy.tunnels == ["93.184.216.34:443"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_local_delivery_to_a_receiver_on_localhost_still_works_and_is_signed(
    client: Any, agent: Agent, receivers: Any, host: str
) -> None:
    receiver = receivers("127.0.0.1")
    created = signed_post(client, agent.api_key, PAY, pay_payload(callback_url=f"http://{host}:{receiver.port}/hooks"))
    assert created.status_code == 201, created.text
    deliver_pending(client, created.json()["id"])
    [(headers, body)] = receiver.posts
    assert json.loads(body)["type"] == "transaction.completed"
    assert headers["host"] == f"{host}:{receiver.port}"
    parts = dict(p.split("=", 1) for p in headers["agentpay-signature"].split(","))
    key = hashlib.sha256(agent.api_key.encode()).hexdigest().encode()
    assert hmac.compare_digest(parts["v1"], hmac.new(key, f"{parts['t']}.".encode() + body, "sha256").hexdigest())
