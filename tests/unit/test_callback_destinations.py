"""What a callback URL may point at: every spelling of an internal address refused, public destinations allowed."""

from __future__ import annotations

import ipaddress

import pytest

from shared.config import Settings
from shared.errors import CallbackUrlRefused, ValidationFailed
from shared.notify.destinations import CallbackPolicy, check_resolved, check_url, host_address
from tests.support.internal_addresses import INTERNAL_CALLBACK_URLS

PRODUCTION = CallbackPolicy()
LOCAL = CallbackPolicy(local=True, service_ports={6379: "Valkey", 12111: "localstripe"})

ALLOWED_EVERYWHERE = [
    "https://hooks.example.com/agentpay",
    "https://Hooks.Example.com:8443/agentpay?x=1",
    "https://hooks.example.com./trailing-dot",
    "https://93.184.216.34/",
    "https://[2606:4700::1111]/",
    "https://[::ffff:93.184.216.34]/",  # mapped to a public address: the connection reaches that address
    "https://[64:ff9b::5db8:d822]/",  # NAT64 of a public address
    "https://[2002:5db8:d822::1]/",  # 6to4 of a public address
    "https://bücher.example/",  # an IDN: checked as the punycode name it is sent as
    "https://127.0.0.1.nip.io/",  # a name: what it resolves to is checked at delivery
    "https://my_host.example.com/",
]


def refusal(url: str, policy: CallbackPolicy) -> str:
    with pytest.raises(CallbackUrlRefused) as refused:
        check_url(url, policy)
    assert isinstance(refused.value, ValidationFailed)
    [error] = refused.value.errors
    assert error["field"] == "callback_url"
    return error["message"]


@pytest.mark.parametrize("policy", [PRODUCTION, LOCAL], ids=["production", "local"])
@pytest.mark.parametrize(("url", "reason"), INTERNAL_CALLBACK_URLS, ids=lambda v: repr(v)[:40])
def test_an_internal_destination_is_refused_in_every_mode_naming_why(
    url: str, reason: str, policy: CallbackPolicy
) -> None:
    assert reason in refusal(url, policy)


@pytest.mark.parametrize("policy", [PRODUCTION, LOCAL], ids=["production", "local"])
@pytest.mark.parametrize("url", ALLOWED_EVERYWHERE)
def test_a_public_destination_is_allowed_in_every_mode(url: str, policy: CallbackPolicy) -> None:
    check_url(url, policy)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("10.0.0.1.", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("hooks.example.com", None),
        ("127.0.0.1.nip.io", None),
    ],
)
def test_every_ipv4_spelling_inet_aton_reads_is_an_address_not_a_name(host: str, address: str | None) -> None:
    assert host_address(host) == (None if address is None else ipaddress.ip_address(address))


@pytest.mark.parametrize("host", ["256.0.0.1", "1.2.3.4.5", "08.0.0.1", "0x100000000", "1.0x1000000", "1.2.3.0x100"])
def test_a_host_that_ends_like_a_number_but_is_no_address_is_refused(host: str) -> None:
    with pytest.raises(CallbackUrlRefused, match="not a valid IP address"):
        host_address(host)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:9999/hook",
        "http://127.0.0.1:9999/hook",
        "https://localhost:9999/hook",
        "https://127.0.0.1/hook",
        "http://LocalHost:9999/hook",
        "https://127。0。0。1/hook",
        "https://hooks.example.com@127.0.0.1/hook",
    ],
)
def test_local_mode_allows_exactly_localhost_and_127_0_0_1(url: str) -> None:
    check_url(url, LOCAL)
    assert "loopback" in refusal(url.replace("http://", "https://"), PRODUCTION)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1]:9999/", "must be an https URL"),
        ("https://[::1]:9999/", "::1 is loopback"),
        ("http://127.0.0.2:9999/", "must be an https URL"),
        ("https://127.1:9999/", "127.1 is 127.0.0.1, which is loopback"),
        ("http://2130706433:9999/", "must be an https URL"),
        ("https://localhost.:9999/", "localhost. is a loopback name"),
        ("https://foo.localhost:9999/", "loopback name"),
        ("http://localhost:6379/", "port 6379 is Valkey"),
        ("https://127.0.0.1:12111/v1/charges", "port 12111 is localstripe"),
        ("http://hooks.example.com/", "must be an https URL (or http on localhost in local mode)"),
    ],
)
def test_local_mode_refuses_other_loopback_spellings_and_the_embedded_services(url: str, reason: str) -> None:
    assert reason in refusal(url, LOCAL)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/", "must be an https URL"),
        ("http://localhost:9999/", "must be an https URL"),
        ("ftp://hooks.example.com/", "must be an https URL"),
        ("javascript:alert(1)", "must be an https URL"),
        ("https://[", "not a valid"),
        ("https://exa\x00mple.com/", "is not a valid URL"),
    ],
)
def test_only_https_urls_are_callbacks_in_production(url: str, reason: str) -> None:
    message = refusal(url, PRODUCTION)
    assert reason in message and "local mode" not in message


@pytest.mark.parametrize(
    ("url", "address", "reason"),
    [
        ("https://hooks.example.com/", "10.0.0.1", "hooks.example.com resolves to 10.0.0.1, which is private"),
        ("https://hooks.example.com/", "127.0.0.1", "resolves to 127.0.0.1, which is loopback"),
        ("https://hooks.example.com/", "169.254.169.254", "link-local"),
        ("https://hooks.example.com/", "::ffff:127.0.0.1", "127.0.0.1, which is loopback"),
        ("https://hooks.example.com/", "fe80::1%eth0", "link-local"),
        ("https://hooks.example.com/", "fd00:ec2::254", "unique-local"),
    ],
)
@pytest.mark.parametrize("policy", [PRODUCTION, LOCAL], ids=["production", "local"])
def test_a_name_resolving_to_an_internal_address_is_refused_at_delivery(
    url: str, address: str, reason: str, policy: CallbackPolicy
) -> None:
    destination = check_url(url, policy)
    with pytest.raises(CallbackUrlRefused) as refused:
        check_resolved(destination, address)
    assert reason in refused.value.errors[0]["message"]


def test_a_name_resolving_to_public_addresses_is_delivered_to_them() -> None:
    destination = check_url("https://hooks.example.com/", PRODUCTION)
    assert check_resolved(destination, "93.184.216.34") == ipaddress.ip_address("93.184.216.34")
    assert check_resolved(destination, "2606:4700::1111") == ipaddress.ip_address("2606:4700::1111")


def test_localhost_in_local_mode_may_resolve_only_to_loopback() -> None:
    destination = check_url("http://localhost:9999/", LOCAL)
    assert check_resolved(destination, "127.0.0.1") == ipaddress.ip_address("127.0.0.1")
    assert check_resolved(destination, "::1") == ipaddress.ip_address("::1")
    with pytest.raises(CallbackUrlRefused, match="localhost resolves to 10.0.0.1, which is private"):
        check_resolved(destination, "10.0.0.1")


def test_the_local_policy_names_the_embedded_services_on_loopback_only() -> None:
    local = Settings(
        agentpay_env="local",
        redis_url="redis://127.0.0.1:6390/0",
        stripe_api_base="http://localhost:12111",
        database_url="postgresql://agentpay@/agentpay?host=/tmp/agentpay-pg",
    )
    assert CallbackPolicy.for_settings(local) == CallbackPolicy(
        local=True, service_ports={6390: "Valkey", 12111: "localstripe", 5432: "PostgreSQL"}
    )
    remote = Settings(
        agentpay_env="local",
        redis_url="redis://cache.example.com:6379/0",
        stripe_api_base="https://api.stripe.com",
        database_url="postgresql://db.example/x",
    )
    assert CallbackPolicy.for_settings(remote) == CallbackPolicy(local=True, service_ports={})
    production = Settings(agentpay_env="production", redis_url="redis://127.0.0.1:6390/0")
    assert CallbackPolicy.for_settings(production) == PRODUCTION
