"""Callback URLs refused in every mode: internal addresses in every spelling, and what the refusal names."""

from __future__ import annotations

# (callback_url, words the refusal's message must contain). None of these is allowed in local mode either: the local
# exception is only http(s) to exactly `localhost` or `127.0.0.1` (so `https://localhost/` is not in this list).
INTERNAL_CALLBACK_URLS: list[tuple[str, str]] = [
    # The pen test's three.
    ("https://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
    ("https://10.0.0.1/", "10.0.0.1 is private"),
    ("https://[::1]/", "::1 is loopback"),
    # IPv4 ranges that are not globally routable.
    ("https://172.16.0.1/", "172.16.0.1 is private"),
    ("https://172.31.255.254/", "is private"),
    ("https://192.168.1.1/", "is private"),
    ("https://127.0.0.2/", "127.0.0.2 is loopback"),
    ("https://0.0.0.0/", "0.0.0.0 is unspecified"),
    ("https://100.64.0.1/", "shared address space"),
    ("https://224.0.0.1/", "multicast"),
    ("https://239.255.255.250/", "multicast"),
    ("https://255.255.255.255/", "broadcast"),
    ("https://240.0.0.1/", "reserved"),
    ("https://192.0.2.1/", "documentation"),
    ("https://198.51.100.7/", "documentation"),
    ("https://203.0.113.9/", "documentation"),
    ("https://198.18.0.1/", "benchmarking"),
    ("https://192.0.0.8/", "reserved"),
    # IPv4 spellings that getaddrinfo (inet_aton) reads as an address.
    ("https://127.1/", "127.1 is 127.0.0.1, which is loopback"),
    ("https://2130706433/", "2130706433 is 127.0.0.1, which is loopback"),
    ("https://0x7f000001/", "0x7f000001 is 127.0.0.1, which is loopback"),
    ("https://0x7f.0.0.1/", "0x7f.0.0.1 is 127.0.0.1, which is loopback"),
    ("https://0X7F.1/", "is 127.0.0.1, which is loopback"),
    ("https://0/", "0 is 0.0.0.0, which is unspecified"),
    ("https://167772161/", "167772161 is 10.0.0.1, which is private"),
    ("https://0xa9fea9fe/latest/meta-data/", "is 169.254.169.254, which is link-local"),
    ("https://127.0.0.1./", "is loopback"),
    ("https://127。0。0。2/", "127.0.0.2 is loopback"),  # ideographic full stops: IDNA makes them dots
    ("https://0177.0.0.1/", ""),  # octal: no HTTP client here reads it, so it is not even a URL
    ("https://017700000001/", ""),
    ("https://1.2.3.4.5/", "not a valid IP address"),
    ("https://0x100000000/", "not a valid IP address"),
    # IPv6: loopback, unspecified, link-local (with a zone id too), unique-local, site-local, multicast, documentation.
    ("https://[::]/", ":: is unspecified"),
    ("https://[0:0:0:0:0:0:0:1]/", "is loopback"),
    ("https://[fe80::1]/", "fe80::1 is link-local"),
    ("https://[fe80::1%25eth0]/", "zone"),
    ("https://[fc00::1]/", "unique-local"),
    ("https://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254 is unique-local"),
    ("https://[fec0::1]/", "site-local"),
    ("https://[ff02::1]/", "multicast"),
    ("https://[2001:db8::1]/", "documentation"),
    ("https://[100::1]/", "reserved"),
    ("https://[4000::1]/", "reserved"),
    # IPv6 addresses that carry an IPv4 one: mapped (dotted and hex), compatible, NAT64, 6to4, Teredo.
    ("https://[::ffff:127.0.0.1]/", "127.0.0.1, which is loopback"),
    ("https://[::ffff:7f00:1]/", "127.0.0.1, which is loopback"),
    ("https://[::ffff:a9fe:a9fe]/", "169.254.169.254, which is link-local"),
    ("https://[0:0:0:0:0:ffff:10.0.0.1]/", "10.0.0.1, which is private"),
    ("https://[::127.0.0.1]/", "127.0.0.1, which is loopback"),
    ("https://[::a00:1]/", "10.0.0.1, which is private"),
    ("https://[64:ff9b::a9fe:a9fe]/", "169.254.169.254, which is link-local"),
    ("https://[64:ff9b::10.0.0.1]/", "10.0.0.1, which is private"),
    ("https://[2002:7f00:1::]/", "127.0.0.1, which is loopback"),
    ("https://[2002:a9fe:a9fe::1]/", "169.254.169.254, which is link-local"),
    ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "192.0.2.45, which is reserved for documentation"),
    # Names that resolve inside the network.
    ("https://LOCALHOST./", "localhost. is a loopback name"),
    ("https://api.localhost/", "loopback name"),
    ("https://metadata/computeMetadata/v1/", "metadata is a single-label name"),
    ("https://redis/", "single-label"),
    ("https://Redis./", "single-label"),
    ("https://metadata.google.internal/", "internal"),
    ("https://printer.local/", "local"),
    # A host the URL hides behind userinfo is still the host.
    ("https://hooks.example.com@169.254.169.254/", "169.254.169.254 is link-local"),
    ("https://hooks.example.com\\@10.0.0.1/", "10.0.0.1 is private"),
    # Hosts that are not names at all.
    ("https://exa%2emple.com/", "not a valid host"),
    ("https://127.0.0.1%2f.example.com/", "not a valid host"),
    ("https:///hook", "must name a host"),
]
