"""Key formats and the request signature of API.md, checked against an independent implementation."""

from __future__ import annotations

import hashlib

import pytest

from shared.errors import InvalidSignature, TimestampOutOfRange
from shared.http import auth
from tests.support.signing import signature


def test_agent_and_admin_keys_have_the_documented_shape() -> None:
    for issued, head in (
        (auth.issue_agent_key("test"), "apk_test_"),
        (auth.issue_admin_key("live"), "apa_live_"),
    ):
        assert issued.plaintext.startswith(head)
        body = issued.plaintext[len(head) :]
        assert len(body) == 64 and int(body, 16) >= 0
        assert issued.hash == hashlib.sha256(issued.plaintext.encode()).hexdigest()
        assert issued.plaintext.startswith(issued.prefix) and len(issued.prefix) == len(head) + 8


def test_keys_are_random() -> None:
    assert len({auth.issue_agent_key("test").plaintext for _ in range(50)}) == 50


def test_server_signature_matches_an_independent_signer() -> None:
    key = "apk_test_" + "1f" * 32
    body = '{"amount":1250,"purpose":"caf\u00e9"}'.encode()
    expected = signature(key, "1764000000", "POST", "/v1/payment-request", body)
    got = "v1=" + auth.compute_signature(auth.hash_key(key), "1764000000", "POST", "/v1/payment-request", body)
    assert got == expected


def _verify(**overrides: object) -> None:
    key = "apk_test_" + "2e" * 32
    args: dict[str, object] = {
        "key_hash": auth.hash_key(key),
        "timestamp": "1764000000",
        "signature": signature(key, "1764000000", "GET", "/v1/transactions/x", b""),
        "method": "GET",
        "path": "/v1/transactions/x",
        "body": b"",
        "now": 1764000000.0,
    }
    args.update(overrides)
    auth.verify_signature(**args)  # type: ignore[arg-type]


def test_valid_signature_passes_within_the_window() -> None:
    _verify()
    _verify(now=1764000000.0 + 300)
    _verify(now=1764000000.0 - 300)


@pytest.mark.parametrize("now", [1764000000.0 + 301, 1764000000.0 - 301])
def test_timestamp_more_than_300_s_off_is_refused(now: float) -> None:
    with pytest.raises(TimestampOutOfRange):
        _verify(now=now)


@pytest.mark.parametrize(
    "override",
    [
        {"method": "POST"},
        {"path": "/v1/transactions/y"},
        {"body": b"x"},
        {"signature": "v1=00"},
        {"signature": None},
    ],
)
def test_anything_changed_breaks_the_signature(override: dict[str, object]) -> None:
    with pytest.raises(InvalidSignature):
        _verify(**override)


@pytest.mark.parametrize("timestamp", [None, "", "yesterday", "1764000000.5"])
def test_malformed_timestamp_is_refused(timestamp: str | None) -> None:
    with pytest.raises(TimestampOutOfRange):
        _verify(timestamp=timestamp)


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_bearer_header_must_carry_a_key(header: str | None) -> None:
    from shared.errors import MissingApiKey

    with pytest.raises(MissingApiKey):
        auth.bearer_key(header)
