"""What a callback URL may point at: a public address, or in local mode exactly localhost (SSRF)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from shared.errors import CallbackUrlRefused

if TYPE_CHECKING:
    import httpx

    from shared.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The documented exception ("http allowed for localhost in local mode"), spelled exactly so: other loopback spellings
# (::1, 127.0.0.2, 2130706433, localhost.) are refused like any internal address.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1"})
INTERNAL = "must not point at a private or internal address"

# Address ranges a callback must never reach, the most specific first; the reason completes "<address> is ...".
# Python's `is_global` is the backstop; this table names the reason and does not depend on the Python version.
_REFUSED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = tuple(
    (ipaddress.ip_network(network), reason)
    for network, reason in (
        ("0.0.0.0/32", "unspecified"),
        ("0.0.0.0/8", "reserved ('this network')"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved for IETF protocol assignments"),
        ("192.0.2.0/24", "reserved for documentation"),
        ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved for benchmarking"),
        ("198.51.100.0/24", "reserved for documentation"),
        ("203.0.113.0/24", "reserved for documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "reserved (IPv4-compatible, deprecated)"),
        ("64:ff9b:1::/48", "private (local-use NAT64)"),
        ("100::/64", "reserved (discard-only)"),
        ("2001::/32", "reserved (Teredo tunnel)"),
        ("2001:2::/48", "reserved for benchmarking"),
        ("2001::/23", "reserved for IETF protocol assignments"),
        ("2001:db8::/32", "reserved for documentation"),
        ("3fff::/20", "reserved for documentation"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")

# Names that resolve inside a network, whatever the resolver: the last labels and what they are.
_INTERNAL_SUFFIXES = (
    ("localhost", "a loopback name"),
    ("localdomain", "a local-network name (.localdomain)"),
    ("local", "a multicast-DNS name (.local)"),
    ("internal", "a private-use name (.internal)"),
    ("home.arpa", "a home-network name (.home.arpa)"),
)
# A name as httpx sends it (lowercase, IDNA-encoded); anything else (%, \, spaces) is not a host we call.
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
# inet_aton reads each part as hex (0x...), octal (leading 0) or decimal; a last label like these means an address.
_NUMBER = re.compile(r"0x[0-9a-f]*|[0-9]+")

# Where each embedded service's URL lives in the settings and what it is; the port each scheme means by default.
_SERVICES = (("database_url", "PostgreSQL"), ("redis_url", "Valkey"), ("stripe_api_base", "localstripe"))
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "redis": 6379, "rediss": 6379, "http": 80, "https": 443}


@dataclass(frozen=True)
class CallbackPolicy:
    """Where this deployment may send callbacks. Production: public addresses only."""

    local: bool = False
    # Local mode: the loopback ports of the embedded services, which a callback to localhost must never reach.
    service_ports: dict[int, str] = field(default_factory=dict)

    @classmethod
    def for_settings(cls, settings: Settings) -> CallbackPolicy:
        if not settings.is_local:
            return cls()
        ports = {}
        for setting, name in _SERVICES:
            port = _loopback_port(getattr(settings, setting))
            if port is not None:
                ports[port] = name
        return cls(local=True, service_ports=ports)


@dataclass(frozen=True)
class Destination:
    """A callback URL that passed the rule, as httpx will send it."""

    url: httpx.URL
    host: str  # lowercase, IDNA-encoded, without brackets
    port: int
    address: IPAddress | None  # the host when it is an IP address (in any spelling); None for a name
    local_exception: bool  # local mode, host exactly localhost or 127.0.0.1


def check_url(url: str, policy: CallbackPolicy) -> Destination:
    """The URL's destination, parsed as the delivering client parses it; raises CallbackUrlRefused when refused.

    No DNS lookup here: a name is checked again, resolved, when a webhook is delivered (check_resolved).
    """
    import httpx  # here, not at the top: most payment requests name no callback, and their route imports this module

    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise CallbackUrlRefused("is not a valid URL") from exc
    host = parsed.raw_host.decode("ascii").lower()
    local_exception = policy.local and host in LOCAL_HOSTS
    if parsed.scheme != "https" and not (parsed.scheme == "http" and local_exception):
        rule = "an https URL" + (" (or http on localhost in local mode)" if policy.local else "")
        raise CallbackUrlRefused(f"must be {rule}")
    if not host:
        raise CallbackUrlRefused("must name a host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if local_exception:
        if port in policy.service_ports:
            raise CallbackUrlRefused(
                f"must not point at a service of the local stack (port {port} is {policy.service_ports[port]})"
            )
        return Destination(parsed, host, port, host_address(host), local_exception=True)
    address = host_address(host)
    if address is None:
        _refuse_internal_name(host)
    else:
        reason = address_refusal(address)
        if reason is not None:
            if isinstance(address, ipaddress.IPv4Address) and str(address) != host:
                reason = f"{address}, which is {reason}"  # written another way (0x7f000001): name what it is
            raise CallbackUrlRefused(f"{INTERNAL} ({host} is {reason})")
    return Destination(parsed, host, port, address, local_exception=False)


def check_resolved(destination: Destination, resolved: str) -> IPAddress:
    """One address the destination's host resolved to, if a callback may connect to it; else CallbackUrlRefused."""
    address = ipaddress.ip_address(resolved.split("%", 1)[0])  # a zone only ever comes with link-local: refused
    if destination.local_exception and address.is_loopback:
        return address
    reason = address_refusal(address)
    if reason is not None:
        raise CallbackUrlRefused(f"{INTERNAL} ({destination.host} resolves to {address}, which is {reason})")
    return address


def host_address(host: str) -> IPAddress | None:
    """The address a host is, in every spelling getaddrinfo accepts (127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1);
    None when it is a name. A host that is neither is refused."""
    if ":" in host:  # only an IPv6 literal has colons (httpx took its brackets off)
        if "%" in host:
            raise CallbackUrlRefused(f"must not carry an IPv6 zone id ({host})")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise CallbackUrlRefused(f"has a host that is not a valid IP address ({host})") from exc
    if not _NAME.fullmatch(host):
        raise CallbackUrlRefused(f"has a host that is not a valid host name ({host!r})")
    labels = host.removesuffix(".").split(".")
    if not _NUMBER.fullmatch(labels[-1]):
        return None
    address = _inet_aton(labels)
    if address is None:
        raise CallbackUrlRefused(f"has a host that is not a valid IP address ({host})")
    return address


def address_refusal(address: IPAddress) -> str | None:
    """Why a callback must not reach this address (completing "<address> is ..."), or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and int(address) > 1:  # :: and ::1 carry no IPv4 address
        for kind, embedded in _embedded_ipv4(address):
            reason = address_refusal(embedded)
            if reason is not None:
                return f"{kind} {embedded}, which is {reason}"
        if address.ipv4_mapped is not None or address in _NAT64:
            return None  # the connection goes to the public IPv4 address inside
    for network, reason in _REFUSED_NETWORKS:
        if address in network:
            return reason
    if isinstance(address, ipaddress.IPv6Address) and address not in _GLOBAL_UNICAST_V6:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, where its packets may end up."""
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return [("an IPv4-mapped address of", address.ipv4_mapped)]
    if address in _NAT64:
        return [("a NAT64 address of", low32)]
    if address in _IPV4_COMPATIBLE:
        return [("an IPv4-compatible address of", low32)]
    if address.sixtofour is not None:
        return [("a 6to4 address of", address.sixtofour)]
    if address.teredo is not None:
        server, client = address.teredo
        return [("a Teredo address whose server is", server), ("a Teredo address whose client is", client)]
    return []


def _refuse_internal_name(host: str) -> None:
    name = host.removesuffix(".")
    for suffix, kind in _INTERNAL_SUFFIXES:
        if name == suffix or name.endswith("." + suffix):
            raise CallbackUrlRefused(f"{INTERNAL} ({host} is {kind})")
    if "." not in name:
        raise CallbackUrlRefused(f"{INTERNAL} ({host} is a single-label name, which resolves inside the network)")


def _inet_aton(labels: list[str]) -> ipaddress.IPv4Address | None:
    """IPv4 as inet_aton reads it: 1 to 4 parts, the last filling the remaining bytes (a.b.c.d, a.b.cd, a.bcd, abcd)."""
    if len(labels) > 4:
        return None
    numbers = []
    for label in labels:
        if label.startswith("0x"):
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not set(label) <= set("01234567"):
                return None
            numbers.append(int(label, 8))
        elif label.isdigit():
            numbers.append(int(label))
        else:
            return None
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (4 - len(leading)):
        return None
    value = last
    for position, number in enumerate(leading):
        value += number << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def _loopback_port(url: str | None) -> int | None:
    """The TCP port of a service URL whose host is this machine (None for a remote one)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    query = parse_qs(parts.query)
    host = parts.hostname or next(iter(query.get("host", [])), "")
    if host and not host.startswith("/") and host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return None
        except ValueError:
            return None  # a name other than localhost: not this machine as far as we can tell
    if port is None and query.get("port", [""])[0].isdigit():
        port = int(query["port"][0])
    return port or _DEFAULT_PORTS.get(parts.scheme)
