"""Hostile input on every text field and header: the documented error or the value stored verbatim, never a 500,
a stack trace, SQL or a secret; nothing changed where nothing should; pages escape what they show."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Agent, Org, forget_throttle_counts, make_agent, make_org, signed_get, signed_post
from tests.integration.test_dashboard_api import log_in
from tests.integration.test_money_movement import links, local_path, outbox_email
from tests.support.internal_addresses import INTERNAL_CALLBACK_URLS
from tests.support.jobs import deliver_pending
from tests.support.signing import encode, signed_headers
from tests.unit.test_email_and_pages import hidden_characters, isolated, outside_isolation

PAY = "/v1/payment-request"

SQL = [
    "'; DROP TABLE transactions; --",
    "' OR '1'='1",
    "1); DELETE FROM audit_logs WHERE (1=1",
    "$$; TRUNCATE agents CASCADE; $$",
    "\\'; SELECT pg_sleep(5); --",
]
MARKUP = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "{{7*7}}${7*7}<%= 7*7 %>",
    "javascript:alert(1)",
]
# Control, format and separator characters (Unicode Cc, Cf, Zl, Zp): valid text, stored verbatim everywhere but in
# `merchant`, the name a person reads to decide whom to pay (see DECEPTIVE_MERCHANTS).
HIDDEN = [
    "\x1b[31mred\x1b[0m\x07",
    "invoice\u202egnp.exe",
    "tab\tnew\nline\rcr",
    "\u200b\ufeffzero-width",
]
CONTROL = [*HIDDEN, "\ud7ff\ue000"]
UNICODE = ["😀" * 255, "ﷺ" * 255, "Z̤̭̓a̴͓̓l̦̈́g̛͕o" * 14, "\U0010fffd" * 100]
NUL = "before\x00after"

# Values that are valid text: stored and echoed exactly (within the 255-character limit of the shortest field).
VERBATIM = SQL + MARKUP + CONTROL + UNICODE
# What a leaked query or driver error would show (none of it appears in the payloads above).
SQL_TEXT = (
    "syntax error",
    "psycopg",
    "sqlstate",
    "pg_catalog",
    "LINE 1:",
    "INSERT INTO",
    "RETURNING",
    "WHERE agent_id",
)


def secrets_of(*keys: str) -> list[str]:
    from shared.config import get_settings

    settings = get_settings()
    found = [k for k in keys if k]
    for name in ("approval_jwt_secret", "session_secret", "qstash_current_signing_key", "qstash_next_signing_key"):
        value = getattr(settings, name)
        if value:
            found.append(value)
    # The signing key of a request is the key's hash: never shown either.
    found += [hashlib.sha256(k.encode()).hexdigest() for k in keys if k]
    return found


def assert_clean(response: Any, *keys: str) -> None:
    """No 500, no trace, no SQL, no secret; the error shape when it is an error."""
    text = response.text
    assert response.status_code < 500, (response.status_code, text[:500])
    assert "Traceback" not in text and 'File "' not in text, text[:500]
    lowered = text.lower()
    for marker in SQL_TEXT:
        assert marker.lower() not in lowered, (marker, text[:500])
    for secret in secrets_of(*keys):
        assert secret not in text, "a secret leaked into a response"
    assert response.headers.get("x-request-id", "").startswith("req_")
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith("application/json"):
        error = response.json()["error"]
        assert {"type", "code", "message", "request_id"} <= set(error)


def fingerprint(agent: Agent) -> tuple[Any, ...]:
    """What a refused request must leave as it was: the agent's transactions, its day's counter, its key and flags."""
    from shared.budget import engine as budget
    from shared.platform import db
    from shared.platform.clock import clock

    with db.connection() as conn:
        txs = conn.execute(
            "SELECT count(*) AS n, coalesce(sum(amount_cents), 0) AS cents FROM transactions WHERE agent_id = %s",
            (agent.id,),
        ).fetchone()
        row = conn.execute(
            "SELECT a.api_key_hash, a.is_active, a.blocked_at, a.name, l.daily_limit_cents, l.per_tx_limit_cents,"
            " l.approval_threshold_cents, l.max_requests_per_minute"
            " FROM agents a JOIN budget_limits l ON l.agent_id = a.id WHERE a.id = %s",
            (agent.id,),
        ).fetchone()
    spent = budget.get_engine().spent(
        uuid.UUID(agent.org.body["organization"]["id"]), uuid.UUID(agent.id), budget.budget_day("UTC", clock.now())
    )
    return (txs["n"], txs["cents"], spent, tuple(row.values()) if row else None)


def pay_payload(**fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"amount": 100, "merchant": "api.example.com", "purpose": "tokens"}
    payload.update(fields)
    payload.setdefault("idempotency_key", uuid.uuid4().hex)
    return payload


def read_back(client: Any, agent: Agent, tx_id: str) -> dict[str, Any]:
    response = signed_get(client, agent.api_key, f"/v1/transactions/{tx_id}")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture()
def roomy_agent(client: Any) -> Agent:
    """An agent whose limits no hostile test reaches."""
    return make_agent(
        client,
        make_org(client),
        daily_limit=10_000_000,
        per_transaction_limit=10_000,
        approval_threshold=10_000,
        max_requests_per_minute=10_000,
    )


# Payment request text fields ----------------------------------------------------------------------------------
TEXT_FIELDS = ["merchant", "purpose", "context_key", "context_value", "idempotency_key", "idempotency_header"]


def _send_with(client: Any, agent: Agent, field: str, value: str) -> tuple[Any, dict[str, Any]]:
    payload = pay_payload()
    extra_headers: dict[str, str] = {}
    if field == "context_key":
        payload["context"] = {value: "v"}
    elif field == "context_value":
        payload["context"] = {"k": value, "nested": {"list": [value]}}
    elif field == "idempotency_header":
        del payload["idempotency_key"]
        extra_headers["Idempotency-Key"] = value
    else:
        payload[field] = value
    body = encode(payload)
    headers = {**signed_headers(agent.api_key, "POST", PAY, body), **extra_headers}
    return client.post(PAY, content=body, headers=headers), payload


# HTTP header values are latin-1 on the wire: non-ASCII keys go in the body (a header one has its own test below).
TEXT_CASES = [
    (field, value.replace("\r", "").replace("\n", "") if field == "idempotency_header" else value)
    for field in TEXT_FIELDS
    for value in VERBATIM
    if (field != "idempotency_header" or value.isascii()) and not (field == "merchant" and value in HIDDEN)
]


@pytest.mark.parametrize(("field", "value"), TEXT_CASES, ids=lambda v: repr(v)[:24])
def test_valid_hostile_text_is_stored_verbatim_and_echoed_as_json(
    client: Any, roomy_agent: Agent, field: str, value: str
) -> None:
    response, payload = _send_with(client, roomy_agent, field, value)
    assert_clean(response, roomy_agent.api_key)
    assert response.status_code == 201, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    tx = read_back(client, roomy_agent, response.json()["id"])
    if field == "context_key":
        assert tx["context"] == {value: "v"}
    elif field == "context_value":
        assert tx["context"] == {"k": value, "nested": {"list": [value]}}
    elif field == "idempotency_header":
        assert tx["idempotency_key"] == value
    else:
        assert tx[field] == payload[field]


# Every class of character that can make a merchant name read as another one, or hide part of it, with how the 422
# names it. Positions count characters from 1.
DECEPTIVE_MERCHANTS = {
    "bidi-override-rlo": ("evil\u202emoc.elgoog", "U+202E RIGHT-TO-LEFT OVERRIDE at position 5"),
    "bidi-override-lro": ("\u202dshop.example", "U+202D LEFT-TO-RIGHT OVERRIDE at position 1"),
    "bidi-embedding-rle": ("shop\u202b.example", "U+202B RIGHT-TO-LEFT EMBEDDING at position 5"),
    "bidi-embedding-lre": ("shop\u202a.example", "U+202A LEFT-TO-RIGHT EMBEDDING at position 5"),
    "bidi-pop-pdf": ("shop.example\u202c", "U+202C POP DIRECTIONAL FORMATTING at position 13"),
    "bidi-isolate-rli": ("shop\u2067elpmaxe.\u2069", "U+2067 RIGHT-TO-LEFT ISOLATE at position 5"),
    "bidi-isolate-lri": ("\u2066shop.example", "U+2066 LEFT-TO-RIGHT ISOLATE at position 1"),
    "bidi-isolate-fsi": ("\u2068shop.example", "U+2068 FIRST STRONG ISOLATE at position 1"),
    "bidi-isolate-pdi": ("shop.example\u2069", "U+2069 POP DIRECTIONAL ISOLATE at position 13"),
    "mark-rlm": ("shop\u200f.example", "U+200F RIGHT-TO-LEFT MARK at position 5"),
    "mark-lrm": ("shop\u200e.example", "U+200E LEFT-TO-RIGHT MARK at position 5"),
    "mark-alm": ("shop\u061c.example", "U+061C ARABIC LETTER MARK at position 5"),
    "zero-width-space": ("pay\u200bpal.com", "U+200B ZERO WIDTH SPACE at position 4"),
    "zero-width-non-joiner": ("pay\u200cpal.com", "U+200C ZERO WIDTH NON-JOINER at position 4"),
    "zero-width-joiner": ("pay\u200dpal.com", "U+200D ZERO WIDTH JOINER at position 4"),
    "word-joiner": ("pay\u2060pal.com", "U+2060 WORD JOINER at position 4"),
    "invisible-operator": ("pay\u2062pal.com", "U+2062 INVISIBLE TIMES at position 4"),
    "bom": ("\ufeffpaypal.com", "U+FEFF ZERO WIDTH NO-BREAK SPACE at position 1"),
    "soft-hyphen": ("pay\xadpal.com", "U+00AD SOFT HYPHEN at position 4"),
    "mongolian-vowel-separator": ("pay\u180epal.com", "U+180E MONGOLIAN VOWEL SEPARATOR at position 4"),
    "other-format": ("pay\ufff9pal.com", "U+FFF9 INTERLINEAR ANNOTATION ANCHOR at position 4"),
    "c0-escape": ("\x1b[8mhidden\x1b[0mshop.example", "U+001B, a control character, at position 1"),
    "c0-tab": ("shop\texample", "U+0009, a control character, at position 5"),
    "c0-newline": ("shop.example\nApproved", "U+000A, a control character, at position 13"),
    "c0-carriage-return": ("shop.example\r", "U+000D, a control character, at position 13"),
    "c0-bell": ("shop\x07.example", "U+0007, a control character, at position 5"),
    "del": ("shop\x7f.example", "U+007F, a control character, at position 5"),
    "c1-csi": ("shop\x9b31m.example", "U+009B, a control character, at position 5"),
    "c1-next-line": ("shop\x85.example", "U+0085, a control character, at position 5"),
    "line-separator": ("shop.example\u2028", "U+2028 LINE SEPARATOR at position 13"),
    "paragraph-separator": ("shop.example\u2029", "U+2029 PARAGRAPH SEPARATOR at position 13"),
    "tag-characters": ("shop.example\U000e0001\U000e0065\U000e007f", "U+E0001 LANGUAGE TAG at position 13"),
    "tag-only": ("shop.example\U000e0067", "U+E0067 TAG LATIN SMALL LETTER G at position 13"),
}


@pytest.mark.parametrize(("merchant", "named"), DECEPTIVE_MERCHANTS.values(), ids=list(DECEPTIVE_MERCHANTS))
def test_a_merchant_name_with_hidden_or_bidi_characters_is_422_and_changes_nothing(
    client: Any, roomy_agent: Agent, merchant: str, named: str
) -> None:
    before = fingerprint(roomy_agent)
    response = signed_post(client, roomy_agent.api_key, PAY, pay_payload(merchant=merchant))
    assert_clean(response, roomy_agent.api_key)
    assert response.status_code == 422, response.text[:300]
    error = response.json()["error"]
    message = f"must not contain invisible, bidirectional or control characters ({named})"
    assert (error["type"], error["code"], error["errors"]) == (
        "invalid_request",
        "validation_error",
        [{"field": "merchant", "message": message}],
    )
    assert fingerprint(roomy_agent) == before


def test_a_non_ascii_idempotency_header_is_stored_as_received_or_refused(client: Any, roomy_agent: Agent) -> None:
    payload = pay_payload()
    del payload["idempotency_key"]
    body = encode(payload)
    headers = {k: v.encode() for k, v in signed_headers(roomy_agent.api_key, "POST", PAY, body).items()}
    headers["Idempotency-Key"] = "ключ-😀".encode()
    response = client.post(PAY, content=body, headers=headers)
    assert_clean(response, roomy_agent.api_key)
    assert response.status_code in (201, 422)


@pytest.mark.parametrize("field", TEXT_FIELDS[:-1])  # an HTTP header cannot carry NUL
def test_nul_in_any_text_field_is_422_and_changes_nothing(client: Any, roomy_agent: Agent, field: str) -> None:
    """PostgreSQL text cannot hold NUL: it must be refused as invalid input, not reach the database as a 500."""
    before = fingerprint(roomy_agent)
    response, _ = _send_with(client, roomy_agent, field, NUL)
    after = fingerprint(roomy_agent)
    outcome = (
        response.status_code,
        response.json()["error"]["code"],
        f"rows {before[0]} -> {after[0]}, day's counter {before[2]} -> {after[2]}",
    )
    assert outcome == (422, "validation_error", "rows 0 -> 0, day's counter 0 -> 0"), outcome
    assert after == before
    assert_clean(response, roomy_agent.api_key)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("merchant", "😀" * 256),
        ("purpose", "ß" * 2001),
        ("idempotency_key", "🔑" * 256),
        ("merchant", " \t\n "),
        ("context", {"k": "😀" * 5000}),
        ("context", "'; DROP TABLE transactions; --"),
        ("context", ["<script>"]),
        ("amount", "100; DROP TABLE transactions"),
        ("amount", 1.5),
        ("amount", 10**30),
        ("amount", True),
        ("amount", "１００"),
        ("currency", "usd'; --"),
        ("currency", "<script>"),
        ("callback_url", "javascript:alert(1)"),
        ("callback_url", "https://exa\x00mple.com/hook"),
        ("callback_url", "http://evil.example.com/'; DROP TABLE--"),
        ("callback_url", "file:///etc/passwd"),
        ("callback_url", "https://" + "a" * 2100 + ".com"),
        ("callback_url", "\u202ehttps://example.com"),
        ("unexpected_field", "<script>"),
        # Every spelling of an internal address (SSRF): refused in local mode too.
        *(("callback_url", url) for url, _ in INTERNAL_CALLBACK_URLS),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_invalid_hostile_values_are_a_precise_422_and_change_nothing(
    client: Any, roomy_agent: Agent, field: str, value: Any
) -> None:
    before = fingerprint(roomy_agent)
    response = signed_post(client, roomy_agent.api_key, PAY, pay_payload(**{field: value}))
    assert_clean(response, roomy_agent.api_key)
    assert response.status_code == 422, response.text[:300]
    error = response.json()["error"]
    assert error["code"] in ("validation_error", "unsupported_currency")
    if error["code"] == "validation_error":
        assert field in {e["field"].split(".")[0] for e in error["errors"]}, error
    assert fingerprint(roomy_agent) == before


def test_valid_hostile_callback_url_is_stored_verbatim(client: Any, roomy_agent: Agent) -> None:
    url = "https://evil.example.com/hook?q='; DROP TABLE transactions; --&x=<script>alert(1)</script>"
    response = signed_post(client, roomy_agent.api_key, PAY, pay_payload(callback_url=url))
    assert_clean(response, roomy_agent.api_key)
    assert response.status_code == 201
    from shared.platform import db

    with db.connection() as conn:
        row = conn.execute("SELECT callback_url FROM transactions WHERE id = %s", (response.json()["id"],)).fetchone()
    assert row is not None and row["callback_url"] == url


@pytest.mark.parametrize(
    "raw",
    [b"NaN", b'{"amount": NaN}', b'{"amount": Infinity}', b"\xff\xfe\x00", b'{"amount": 1' + b"]" * 5000, b"[]"],
    ids=["nan", "amount-nan", "amount-inf", "not-utf8", "unbalanced", "array"],
)
def test_malformed_bodies_are_422(client: Any, roomy_agent: Agent, raw: bytes) -> None:
    before = fingerprint(roomy_agent)
    response = client.post(PAY, content=raw, headers=signed_headers(roomy_agent.api_key, "POST", PAY, raw))
    assert_clean(response, roomy_agent.api_key)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error"), response.text
    assert fingerprint(roomy_agent) == before


# Headers ------------------------------------------------------------------------------------------------------
def _header_cases(api_key: str) -> list[tuple[str, dict[str, str], int, str]]:
    body = encode(pay_payload())
    good = signed_headers(api_key, "POST", PAY, body)
    ts = good["AgentPay-Timestamp"]
    cases: list[tuple[str, dict[str, str], int, str]] = []
    for name, value in [
        ("sql", "Bearer ' OR '1'='1"),
        ("sql-key", "Bearer apk_test_' OR 1=1 --" + "0" * 40),
        ("script", "Bearer <script>alert(1)</script>"),
        ("escape", "Bearer \x1b[2J"),
        ("long", "Bearer apk_test_" + "a" * 10_000),
        ("basic", "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()),
        ("uppercase-key", "Bearer " + api_key.upper()),
        ("key-with-suffix", f"Bearer {api_key}' --"),
        ("two-keys", f"Bearer {api_key} {api_key}"),
    ]:
        status, code = (401, "missing_api_key") if name == "basic" else (401, "invalid_api_key")
        cases.append((f"authorization-{name}", {**good, "Authorization": value}, status, code))
    for name, value in [
        ("sql", f"{ts}' OR 1=1 --"),
        ("negative", "-1"),
        ("float", f"{ts}.5"),
        ("hex", hex(int(ts))),
        ("huge", "9" * 5000),
        ("nan", "NaN"),
        ("empty", ""),
        ("unicode-digits", "".join(chr(0xFF10 + int(d)) for d in ts)),
    ]:
        cases.append((f"timestamp-{name}", {**good, "AgentPay-Timestamp": value}, 401, "timestamp_out_of_range"))
    for name, value in [
        ("sql", "v1=' OR '1'='1"),
        ("script", "v1=<script>"),
        ("long", "v1=" + "f" * 10_000),
        ("v0", good["AgentPay-Signature"].replace("v1=", "v0=")),
        ("truncated", good["AgentPay-Signature"][:-1]),
        ("uppercase", "v1=" + good["AgentPay-Signature"][3:].upper()),
        ("empty", ""),
        ("two", good["AgentPay-Signature"] + "," + good["AgentPay-Signature"]),
    ]:
        cases.append((f"signature-{name}", {**good, "AgentPay-Signature": value}, 401, "invalid_signature"))
    return cases


def test_hostile_auth_headers_get_the_documented_401_and_change_nothing(client: Any, roomy_agent: Agent) -> None:
    body = encode(pay_payload())
    before = fingerprint(roomy_agent)
    tried = 0
    for name, headers, status, code in _header_cases(roomy_agent.api_key):
        # Each case as its own client would send it: 25 failures in a row would trip the failed-authentication
        # throttle (tests/integration/test_auth_throttle.py), whose 429 is not what this test looks at.
        forget_throttle_counts()
        # Re-sign the body these headers were made for (the payload carries its own idempotency key).
        response = client.post(PAY, content=body, headers={k: v.encode() for k, v in headers.items()})
        assert_clean(response, roomy_agent.api_key)
        if name in ("signature-empty",):
            assert response.status_code == 401, name
        else:
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), (name, response.text)
        tried += 1
    assert tried >= 25
    assert fingerprint(roomy_agent) == before


@pytest.mark.parametrize(
    "value",
    ["'; DROP TABLE transactions; --", "<script>alert(1)</script>", "\x1b[31m", "k" * 256, " "],
    ids=["sql", "script", "escape", "too-long", "blank"],
)
def test_hostile_idempotency_header_is_stored_or_refused_precisely(client: Any, roomy_agent: Agent, value: str) -> None:
    before = fingerprint(roomy_agent)
    payload = pay_payload()
    del payload["idempotency_key"]
    body = encode(payload)
    headers = {**signed_headers(roomy_agent.api_key, "POST", PAY, body), "Idempotency-Key": value}
    response = client.post(PAY, content=body, headers=headers)
    assert_clean(response, roomy_agent.api_key)
    if len(value) > 255 or not value.strip():
        assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
        assert fingerprint(roomy_agent) == before
    else:
        assert response.status_code == 201 and response.json()["idempotency_key"] == value


# Sign-up, agents, limits, dashboard queries -------------------------------------------------------------------
@pytest.mark.parametrize("value", [v for v in VERBATIM if len(v) <= 200] + ["😀" * 200], ids=lambda v: repr(v)[:24])
@pytest.mark.parametrize("field", ["org_name", "agent_name"])
def test_hostile_names_are_stored_verbatim(client: Any, field: str, value: str) -> None:
    if field == "org_name":
        response = client.post("/v1/orgs", json={"name": value, "admin_email": "admin@example.com"})
        assert_clean(response)
        assert response.status_code == 201, response.text[:300]
        assert response.json()["organization"]["name"] == value
    else:
        org = make_org(client)
        response = client.post(
            "/v1/dashboard/agents",
            json={"name": value, "limits": {"daily_limit": 100, "per_transaction_limit": 10, "approval_threshold": 1}},
            headers=org.admin_headers,
        )
        assert_clean(response, org.admin_key)
        assert response.status_code == 201, response.text[:300]
        agents = client.get("/v1/dashboard/agents", headers=org.admin_headers).json()["data"]
        assert [a["name"] for a in agents] == [value]


def _org_count() -> int:
    from shared.platform import db

    with db.connection() as conn:
        row = conn.execute("SELECT count(*) AS n FROM organizations").fetchone()
    return int(row["n"]) if row else 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "acme\x00corp"),
        ("name", "😀" * 201),
        ("name", ""),
        ("admin_email", "'; DROP TABLE organizations; --"),
        ("admin_email", "<script>alert(1)</script>@example.com"),
        ("admin_email", "admin@example.com\x00"),
        ("admin_email", "admin@example.com\r\nBcc: victim@example.com"),
        ("admin_email", "a" * 300 + "@example.com"),
        ("timezone", "'; DROP TABLE organizations; --"),
        ("timezone", "../../../../etc/passwd"),
        ("timezone", "/etc/localtime"),
        ("timezone", "UTC\x00"),
        ("timezone", "Europe/Paris\u202e"),
        ("timezone", "😀" * 64),
        ("timezone", "<script>"),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_invalid_signup_fields_are_422_and_create_nothing(client: Any, field: str, value: str) -> None:
    before = _org_count()
    body = {"name": "Acme", "admin_email": "admin@example.com", "timezone": "UTC", field: value}
    response = client.post("/v1/orgs", json=body)
    assert_clean(response)
    assert response.status_code == 422, response.text[:300]
    error = response.json()["error"]
    assert error["code"] == "validation_error" and field in {e["field"] for e in error["errors"]}
    assert _org_count() == before


@pytest.mark.parametrize(
    "value",
    ["bot\x00", "😀" * 201, "", "\ud800"],
    ids=["nul", "too-long", "empty", "lone-surrogate"],
)
def test_invalid_agent_names_are_422_and_create_nothing(client: Any, org: Org, value: str) -> None:
    limits = {"daily_limit": 100, "per_transaction_limit": 10, "approval_threshold": 1}
    body = json.dumps({"name": value, "limits": limits}).encode()  # \ud800 travels as a JSON escape
    response = client.post(
        "/v1/dashboard/agents", content=body, headers={**org.admin_headers, "Content-Type": "application/json"}
    )
    assert_clean(response, org.admin_key)
    assert response.status_code == 422, response.text[:300]
    assert client.get("/v1/dashboard/agents", headers=org.admin_headers).json()["data"] == []


@pytest.mark.parametrize(
    "value",
    ["1; DROP TABLE budget_limits", 1.5, 10**30, -1, "<script>", None, [], {"$gt": 0}, "NaN", "1e3"],
    ids=lambda v: repr(v)[:20],
)
def test_hostile_limits_are_422_and_change_nothing(client: Any, agent: Agent, value: Any) -> None:
    before = fingerprint(agent)
    limits = {"daily_limit": 5000, "per_transaction_limit": 2000, "approval_threshold": value}
    response = client.put(f"/v1/dashboard/agents/{agent.id}/limits", json=limits, headers=agent.org.admin_headers)
    assert_clean(response, agent.api_key, agent.org.admin_key)
    assert response.status_code == 422, response.text[:300]
    assert response.json()["error"]["code"] == "validation_error"
    assert fingerprint(agent) == before


# Money and limits are strict integers, as payment amounts are: "1000000" or true never becomes a limit (the pen test:
# `true` became 1).
LOOSE_INTEGERS = ["1000000", True, False, 1000.0, " 1000 ", "1_000", 1e3]
LIMIT_FIELDS = ["daily_limit", "per_transaction_limit", "approval_threshold", "max_requests_per_minute"]


@pytest.mark.parametrize("value", LOOSE_INTEGERS, ids=lambda v: repr(v))
@pytest.mark.parametrize("field", LIMIT_FIELDS)
def test_limits_that_are_not_json_integers_are_422_on_every_limits_route(
    client: Any, agent: Agent, field: str, value: Any
) -> None:
    before = fingerprint(agent)
    limits: dict[str, Any] = {
        "daily_limit": 5_000_000,
        "per_transaction_limit": 2_000_000,
        "approval_threshold": 1_000_000,
        "max_requests_per_minute": 1000,
        field: value,
    }
    headers = agent.org.admin_headers
    changed = client.put(f"/v1/dashboard/agents/{agent.id}/limits", json=limits, headers=headers)
    created = client.post("/v1/dashboard/agents", json={"name": "loose", "limits": limits}, headers=headers)
    for response, where in ((changed, field), (created, f"limits.{field}")):
        assert_clean(response, agent.api_key, agent.org.admin_key)
        assert response.status_code == 422, response.text[:300]
        error = response.json()["error"]
        assert error["code"] == "validation_error" and [e["field"] for e in error["errors"]] == [where], error
    assert fingerprint(agent) == before
    names = [a["name"] for a in client.get("/v1/dashboard/agents", headers=headers).json()["data"]]
    assert "loose" not in names


@pytest.mark.parametrize("value", SQL + MARKUP + ["\x00", "😀" * 300], ids=lambda v: repr(v)[:20])
def test_hostile_dashboard_query_parameters_never_break_a_query(client: Any, agent: Agent, value: str) -> None:
    headers = agent.org.admin_headers
    for path, param in [
        ("/v1/dashboard/transactions", "agent_id"),
        ("/v1/dashboard/transactions", "status"),
        ("/v1/dashboard/transactions", "created_from"),
        ("/v1/dashboard/transactions", "limit"),
        ("/v1/dashboard/transactions", "starting_after"),
        ("/v1/dashboard/audit-logs", "action"),
        ("/v1/dashboard/audit-logs", "transaction_id"),
    ]:
        response = client.get(path, params={param: value}, headers=headers)
        assert_clean(response, agent.org.admin_key)
        if param == "action" and response.status_code == 200:
            assert response.json()["data"] == []  # an action filter is an exact match, never a pattern
        else:
            assert response.status_code in (404, 422), (path, param, response.status_code)
    segment = quote(value, safe="")  # a client sends a path segment percent-encoded
    for path in (f"/v1/dashboard/transactions/{segment}", f"/v1/dashboard/agents/{segment}/disable"):
        method = client.get if "transactions" in path else client.post
        response = method(path, headers=headers)
        assert_clean(response, agent.org.admin_key)
        assert response.status_code in (404, 405, 422), (path, response.status_code)


# Approval tokens (forged, tampered, alg none and other audiences are in test_money_movement.py) ----------------
def _b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _claims(tx_id: str, action: str = "approve", **overrides: Any) -> dict[str, Any]:
    claims = {
        "iss": "agentpay",
        "aud": "agentpay-approval",
        "sub": tx_id,
        "act": action,
        "exp": int(time.time()) + 3600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hmac_token(header: dict[str, Any], claims: dict[str, Any], secret: str, digest: Any = hashlib.sha256) -> str:
    signing_input = f"{_b64(header)}.{_b64(claims)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{_b64(signature)}"


def _token_cases(tx_id: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    from shared.config import get_settings

    secret = get_settings().require("approval_jwt_secret")
    hs256 = {"alg": "HS256", "typ": "JWT"}
    good = _hmac_token(hs256, _claims(tx_id), secret)
    head, body, sig = good.split(".")
    return {
        "hs512-right-secret": (
            _hmac_token({"alg": "HS512", "typ": "JWT"}, _claims(tx_id), secret, hashlib.sha512),
            (400, 401),
        ),
        "hs384-right-secret": (
            _hmac_token({"alg": "HS384", "typ": "JWT"}, _claims(tx_id), secret, hashlib.sha384),
            (400, 401),
        ),
        "rs256-header-hmac-signed": (_hmac_token({"alg": "RS256", "typ": "JWT"}, _claims(tx_id), secret), (400, 401)),
        "rs256-header-junk-signature": (
            f"{_b64({'alg': 'RS256', 'typ': 'JWT'})}.{body}.{_b64(b'x' * 256)}",
            (400, 401),
        ),
        "alg-None-capitalised": (f"{_b64({'alg': 'None', 'typ': 'JWT'})}.{body}.", (400, 401)),
        "alg-none-with-signature": (f"{_b64({'alg': 'none'})}.{body}.{sig}", (400, 401)),
        "hs256-empty-signature": (f"{head}.{body}.", (400, 401)),
        "kid-path-traversal": (_hmac_token({**hs256, "kid": "../../../../dev/null"}, _claims(tx_id), ""), (400, 401)),
        "jku-remote-key": (_hmac_token({**hs256, "jku": "https://evil.example.com/jwks"}, _claims(tx_id), "x"), (401,)),
        "another-key": (_hmac_token(hs256, _claims(tx_id), secret + "x"), (401,)),
        "empty-key": (_hmac_token(hs256, _claims(tx_id), ""), (401,)),
        "edited-sub": (f"{head}.{_b64(_claims(str(uuid.uuid4())))}.{sig}", (401,)),
        "edited-exp": (f"{head}.{_b64(_claims(tx_id, exp=4_000_000_000))}.{sig}", (401,)),
        "other-issuer": (_hmac_token(hs256, _claims(tx_id, iss="evil"), secret), (400,)),
        "audience-list": (_hmac_token(hs256, _claims(tx_id, aud=["someone", "else"]), secret), (400,)),
        "no-exp": (_hmac_token(hs256, _claims(tx_id, exp=None), secret), (400,)),
        "no-jti": (_hmac_token(hs256, _claims(tx_id, jti=None), secret), (400,)),
        "sub-sql": (_hmac_token(hs256, _claims("' OR 1=1 --"), secret), (400,)),
        "sub-unknown-tx": (_hmac_token(hs256, _claims(str(uuid.uuid4())), secret), (400, 404)),  # 400 on /decline
        "act-sql": (_hmac_token(hs256, _claims(tx_id, action="approve' OR 1=1"), secret), (400,)),
        "exp-string": (_hmac_token(hs256, _claims(tx_id, exp="never"), secret), (400,)),
        # Signed with our secret, but no datetime can hold when they end (the pen test: "year out of range", a 500).
        "exp-year-33658": (_hmac_token(hs256, _claims(tx_id, exp=10**12), secret), (400,)),
        "exp-past-time_t": (_hmac_token(hs256, _claims(tx_id, exp=10**30), secret), (400,)),
        "exp-float-huge": (_hmac_token(hs256, _claims(tx_id, exp=1e300), secret), (400,)),
        "nbf-future": (_hmac_token(hs256, _claims(tx_id, nbf=4_000_000_000), secret), (400, 401)),
        "header-not-json": (f"{_b64(b'not json')}.{body}.{sig}", (400,)),
        "four-parts": (f"{good}.extra", (400,)),
        "huge": ("a" * 6000 + "." + "b" * 6000 + ".c", (400, 404, 413, 414, 431)),
        "script": ("<script>alert(1)</script>", (400, 404)),
    }


def test_approval_tokens_that_are_not_ours_change_nothing(client: Any, agent: Agent) -> None:
    from tests.integration.test_money_movement import audit_actions

    tx = signed_post(client, agent.api_key, PAY, pay_payload(amount=1500)).json()
    assert tx["status"] == "pending"
    before = fingerprint(agent)
    cases = _token_cases(tx["id"])
    for name, (token, statuses) in cases.items():
        for action in ("approve", "decline"):
            for method in ("GET", "POST"):
                for accept in ("application/json", "text/html"):
                    response = client.request(method, f"/v1/{action}/{token}", headers={"Accept": accept})
                    assert_clean(response, agent.api_key)
                    assert response.status_code in statuses, (name, action, method, response.status_code)
                    assert "<script>alert" not in response.text
    assert read_back(client, agent, tx["id"])["status"] == "pending"
    assert audit_actions(tx["id"]) == ["payment.pending_approval"]
    assert fingerprint(agent) == before
    assert len(cases) >= 25


# Signatures replayed ------------------------------------------------------------------------------------------
def test_a_captured_signed_request_cannot_be_replayed_late_or_moved(client: Any, agent: Agent) -> None:
    from shared.platform.clock import clock

    body = encode(pay_payload())
    headers = signed_headers(agent.api_key, "POST", PAY, body)
    first = client.post(PAY, content=body, headers=headers)
    assert first.status_code == 201
    before = fingerprint(agent)

    same = client.post(PAY, content=body, headers=headers)  # within five minutes: the idempotency key answers
    assert same.status_code == 200 and same.headers["Idempotent-Replayed"] == "true"
    assert same.json()["id"] == first.json()["id"]

    clock.offset_seconds = 301
    try:
        late = client.post(PAY, content=body, headers=headers)
    finally:
        clock.offset_seconds = 0
    assert (late.status_code, late.json()["error"]["code"]) == (401, "timestamp_out_of_range")

    other_body = encode({**json.loads(body), "amount": 1999, "idempotency_key": uuid.uuid4().hex})
    moved = [
        client.post(PAY, content=other_body, headers=headers),
        client.post(PAY + "?amount=1", content=body, headers=headers),
        client.request("PUT", PAY, content=body, headers=headers),
        client.get(f"/v1/transactions/{first.json()['id']}", headers=headers),
        client.post(PAY, content=body + b" ", headers=headers),
    ]
    for response in moved:
        assert_clean(response, agent.api_key)
        assert response.status_code in (401, 405), response.text
        if response.status_code == 401:
            assert response.json()["error"]["code"] == "invalid_signature"
    assert fingerprint(agent) == before


# Keys that stopped being valid --------------------------------------------------------------------------------
def test_after_rotation_neither_the_old_key_nor_its_signatures_work(client: Any, agent: Agent) -> None:
    rotated = client.post(f"/v1/dashboard/agents/{agent.id}/rotate-key", headers=agent.org.admin_headers)
    assert rotated.status_code == 200
    new_key = rotated.json()["api_key"]
    assert_clean(rotated, agent.api_key)
    before = fingerprint(agent)
    body = encode(pay_payload())
    old = client.post(PAY, content=body, headers=signed_headers(agent.api_key, "POST", PAY, body))
    assert (old.status_code, old.json()["error"]["code"]) == (401, "invalid_api_key")
    # The new key as bearer with a signature made with the old key: the signature binds to the new key.
    mixed = {**signed_headers(agent.api_key, "POST", PAY, body), "Authorization": f"Bearer {new_key}"}
    response = client.post(PAY, content=body, headers=mixed)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_signature")
    for response in (old, rotated):
        assert agent.api_key not in response.text
    assert fingerprint(agent) == before
    assert signed_post(client, new_key, PAY, pay_payload()).status_code == 201


def test_disabled_and_blocked_agents_get_their_403_and_nothing_is_written(client: Any) -> None:
    org = make_org(client)
    disabled = make_agent(client, org)
    blocked = make_agent(client, org, max_requests_per_minute=1)
    assert client.post(f"/v1/dashboard/agents/{disabled.id}/disable", headers=org.admin_headers).status_code == 200
    assert signed_post(client, blocked.api_key, PAY, pay_payload()).status_code == 201
    assert signed_post(client, blocked.api_key, PAY, pay_payload()).status_code == 429
    for agent, code in ((disabled, "agent_disabled"), (blocked, "agent_blocked")):
        before = fingerprint(agent)
        for payload in (pay_payload(), pay_payload(merchant="'; DROP TABLE agents; --"), pay_payload(amount=10**8)):
            response = signed_post(client, agent.api_key, PAY, payload)
            assert_clean(response, agent.api_key, org.admin_key)
            assert (response.status_code, response.json()["error"]["type"], response.json()["error"]["code"]) == (
                403,
                "permission",
                code,
            )
        assert fingerprint(agent) == before


# Tenancy: another organization's ids on every dashboard route -------------------------------------------------
def test_another_organizations_ids_are_404_on_every_route_and_change_nothing(client: Any, agent: Agent) -> None:
    from tests.integration.test_money_movement import audit_actions

    pending = signed_post(client, agent.api_key, PAY, pay_payload(amount=1500)).json()
    approved = signed_post(client, agent.api_key, PAY, pay_payload(amount=100)).json()
    intruder_org = make_org(client)
    intruder_agent = make_agent(client, intruder_org)
    headers = intruder_org.admin_headers
    before = fingerprint(agent)
    trail = {tx["id"]: audit_actions(tx["id"]) for tx in (pending, approved)}
    limits = {"daily_limit": 1, "per_transaction_limit": 1, "approval_threshold": 0}
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("PUT", f"/v1/dashboard/agents/{agent.id}/limits", limits),
        *[("POST", f"/v1/dashboard/agents/{agent.id}/{action}", None) for action in ("unblock", "disable", "enable")],
        ("POST", f"/v1/dashboard/agents/{agent.id}/rotate-key", None),
    ]
    for tx in (pending, approved):
        calls += [
            ("GET", f"/v1/dashboard/transactions/{tx['id']}", None),
            ("POST", f"/v1/dashboard/transactions/{tx['id']}/approve", None),
            ("POST", f"/v1/dashboard/transactions/{tx['id']}/decline", {"reason": "mine now"}),
        ]
    for method, path, body in calls:
        response = client.request(method, path, json=body, headers=headers)
        assert_clean(response, agent.api_key, agent.org.admin_key, intruder_org.admin_key)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found"), (method, path)
        assert agent.id not in response.text and pending["id"] not in response.text
    for tx in (pending, approved):
        response = signed_get(client, intruder_agent.api_key, f"/v1/transactions/{tx['id']}")
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
        assert read_back(client, agent, tx["id"])["status"] == tx["status"]
        assert audit_actions(tx["id"]) == trail[tx["id"]]
    assert fingerprint(agent) == before
    assert len(calls) >= 10


# Pages escape what they show ----------------------------------------------------------------------------------
def test_approval_and_dashboard_pages_show_hostile_text_escaped(client: Any) -> None:
    org = make_org(client, name="<script>alert('org')</script>")
    response = client.post(
        "/v1/dashboard/agents",
        json={
            "name": "<script>alert('agent')</script>",
            "limits": {"daily_limit": 5000, "per_transaction_limit": 2000, "approval_threshold": 1000},
        },
        headers=org.admin_headers,
    )
    agent = Agent(id=response.json()["agent"]["id"], api_key=response.json()["api_key"], org=org, body={})
    tx = signed_post(
        client,
        agent.api_key,
        PAY,
        pay_payload(
            amount=1500,
            merchant="<script>alert('merchant')</script>",
            purpose="<script>alert('purpose')</script>\u202e",
            context={"<script>k</script>": "</textarea><script>alert('ctx')</script>"},
        ),
    ).json()
    assert tx["status"] == "pending"
    deliver_pending(client, tx["id"])
    approve_url, decline_url = links(tx["id"])
    pages = [client.get(local_path(approve_url)), client.get(local_path(decline_url))]
    log_in(client, org)
    pages += [client.get(f"/dashboard/transactions/{tx['id']}"), client.get("/dashboard")]
    for page in pages:
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert_clean(page, agent.api_key, org.admin_key)
        assert "<script>alert(" not in page.text and "<script>k" not in page.text
    for page in pages[:3]:
        assert "&lt;script&gt;alert(" in page.text
        assert "alert(&#39;purpose&#39;)" in page.text or "alert(&#x27;purpose&#x27;)" in page.text
    assert read_back(client, agent, tx["id"])["status"] == "pending", "showing the pages changed nothing"


# Nesting and numbers: bounded before anything else, on every JSON route -----------------------------------------
# The pen test: `context` nested 10,000 deep was an unauthenticated 500 that logged a 3.9 KB trace per request.
MAX_DEPTH = 32  # what the contract allows a JSON body: the body itself is level 1


def nested(kind: str, depth: int, leaf: Any = 1) -> Any:
    """A value `depth` containers deep: objects, arrays, or the two alternating."""
    value = leaf
    for level in range(depth):
        as_array = kind == "arrays" or (kind == "mixed" and level % 2)
        value = [value] if as_array else {"k": value}
    return value


def deep_text(kind: str, depth: int) -> bytes:
    """The JSON text of nested(kind, depth) without recursing (json.dumps would hit Python's own limit)."""
    opens = "".join("[" if kind == "arrays" or (kind == "mixed" and i % 2) else '{"k":' for i in reversed(range(depth)))
    closes = "".join("]" if kind == "arrays" or (kind == "mixed" and i % 2) else "}" for i in range(depth))
    return (opens + "1" + closes).encode()


def _json_routes(client: Any, agent: Agent, transaction_id: str) -> list[tuple[str, str, Any]]:
    """Every route that reads a JSON body, with the headers an honest caller would send (or none)."""
    admin = agent.org.admin_headers
    return [
        ("POST", PAY, lambda body: signed_headers(agent.api_key, "POST", PAY, body)),
        ("POST", PAY, lambda body: {"Content-Type": "application/json"}),  # no key at all
        ("POST", "/v1/orgs", lambda body: {"Content-Type": "application/json"}),
        ("POST", "/v1/dashboard/agents", lambda body: {**admin, "Content-Type": "application/json"}),
        ("PUT", f"/v1/dashboard/agents/{agent.id}/limits", lambda body: {**admin, "Content-Type": "application/json"}),
        (
            "POST",
            f"/v1/dashboard/transactions/{transaction_id}/decline",
            lambda body: {**admin, "Content-Type": "application/json"},
        ),
        ("POST", "/v1/jobs/charge", lambda body: {"Content-Type": "application/json"}),
    ]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 10_000])
@pytest.mark.parametrize("kind", ["objects", "arrays", "mixed"])
def test_json_nested_too_deep_is_422_on_every_route_logs_no_error_and_changes_nothing(
    client: Any, roomy_agent: Agent, caplog: pytest.LogCaptureFixture, kind: str, depth: int
) -> None:
    earlier = signed_post(client, roomy_agent.api_key, PAY, pay_payload()).json()
    before = fingerprint(roomy_agent)
    inner = deep_text(kind, depth - 1)  # the body's own object is the first level
    bodies = [
        b'{"amount":100,"merchant":"m","purpose":"p","idempotency_key":"deep","context":' + inner + b"}",
        b'{"name":"x","limits":' + inner + b"}",
        deep_text(kind, depth),
    ]
    tried = 0
    with caplog.at_level(logging.INFO):
        for method, path, headers_for in _json_routes(client, roomy_agent, earlier["id"]):
            for body in bodies:
                response = client.request(method, path, content=body, headers=headers_for(body))
                assert_clean(response, roomy_agent.api_key, roomy_agent.org.admin_key)
                error = response.json()["error"]
                assert (response.status_code, error["code"]) == (422, "validation_error"), (path, response.text[:200])
                assert error["errors"] == [{"field": "body", "message": f"is nested deeper than {MAX_DEPTH} levels"}], (
                    path,
                    error,
                )
                tried += 1
    assert tried == 21
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert fingerprint(roomy_agent) == before
    assert read_back(client, roomy_agent, earlier["id"])["status"] == earlier["status"]


@pytest.mark.parametrize("kind", ["objects", "arrays", "mixed"])
def test_a_context_nested_to_the_limit_is_stored_as_sent(client: Any, roomy_agent: Agent, kind: str) -> None:
    context = {"k": nested(kind, MAX_DEPTH - 2)}  # body (1) > context (2) > ... = MAX_DEPTH levels in all
    response = signed_post(client, roomy_agent.api_key, PAY, pay_payload(context=context))
    assert response.status_code == 201, response.text[:300]
    assert read_back(client, roomy_agent, response.json()["id"])["context"] == context


def test_brackets_inside_strings_do_not_count_as_nesting(client: Any, roomy_agent: Agent) -> None:
    text = '[{"' * 2000 + '\\"]}' * 50
    response = signed_post(client, roomy_agent.api_key, PAY, pay_payload(purpose=text[:2000], context={"t": text}))
    assert response.status_code == 201, response.text[:300]
    assert read_back(client, roomy_agent, response.json()["id"])["context"] == {"t": text}


@pytest.mark.parametrize("path", [PAY, "/v1/orgs"])
def test_a_number_too_long_to_parse_is_422_not_500(client: Any, roomy_agent: Agent, path: str) -> None:
    """Python refuses to convert integers of more than 4300 digits: that is the client's input, not our failure."""
    before = fingerprint(roomy_agent)
    body = b'{"amount":' + b"9" * 5000 + b',"merchant":"m","purpose":"p","idempotency_key":"k","name":"n"}'
    headers = signed_headers(roomy_agent.api_key, "POST", path, body)
    response = client.post(path, content=body, headers=headers)
    assert_clean(response, roomy_agent.api_key)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "validation_error"), response.text
    assert fingerprint(roomy_agent) == before


def test_hidden_characters_in_user_text_are_isolated_on_every_page_and_shown_in_every_email(client: Any) -> None:
    """An override in a purpose, a name or the context is kept as sent but cannot reorder the text around it: in HTML
    it stays inside its own <bdi>; in plain text and the subject it is written out as <U+202E>."""
    org = make_org(client, name="Acme\u202eCorp")
    response = client.post(
        "/v1/dashboard/agents",
        json={
            "name": "bot\u202eevil",
            "limits": {"daily_limit": 5000, "per_transaction_limit": 2000, "approval_threshold": 1000},
        },
        headers=org.admin_headers,
    )
    agent = Agent(id=response.json()["agent"]["id"], api_key=response.json()["api_key"], org=org, body={})
    purpose = "invoice\u202egnp.exe"
    context = {"file\u202e": "gnp.exe\u202e", "note": "\u200bzero\x7fwidth\x9b"}
    tx = signed_post(client, agent.api_key, PAY, pay_payload(amount=1500, purpose=purpose, context=context)).json()
    assert (tx["status"], tx["purpose"], tx["context"]) == ("pending", purpose, context), "stored as sent"

    deliver_pending(client, tx["id"])
    email = outbox_email(tx["id"])
    for shown in (purpose, "bot\u202eevil", "Acme\u202eCorp", "file\u202e", "gnp.exe\u202e"):
        assert isolated(shown) in email["html"], shown
    assert hidden_characters(outside_isolation(email["html"])) == []
    assert "Purpose:   invoice<U+202E>gnp.exe" in email["text"].splitlines()
    assert "  note: <U+200B>zero<U+007F>width<U+009B>" in email["text"].splitlines()
    assert hidden_characters(email["text"]) == [] and "\u202e" not in email["text"]
    assert email["subject"] == 'Approve $15.00 to api.example.com? (agent "bot<U+202E>evil")'

    approve_url, decline_url = links(tx["id"])
    pages = {"approve link": client.get(local_path(approve_url)), "decline link": client.get(local_path(decline_url))}
    log_in(client, org)
    pages["transactions"] = client.get("/dashboard")
    pages["transaction"] = client.get(f"/dashboard/transactions/{tx['id']}")
    for name, page in pages.items():
        assert page.status_code == 200, name
        assert isolated(purpose) in page.text and isolated("bot\u202eevil") in page.text, name
    declined = client.post(local_path(decline_url), data={"reason": "no\u202eseirots"})
    assert declined.status_code == 200
    pages |= {
        "decline result": declined,
        "declined transaction": client.get(f"/dashboard/transactions/{tx['id']}"),
        "agents": client.get("/dashboard/agents"),
        "agent": client.get(f"/dashboard/agents/{agent.id}"),
        "audit": client.get("/dashboard/audit"),
        "billing": client.get("/dashboard/billing"),
    }
    for name, page in pages.items():
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), name
        assert hidden_characters(outside_isolation(page.text)) == [], name
    assert "no\\u202eseirots" in pages["declined transaction"].text  # the decline reason, in the audit trail's JSON
    assert isolated("Acme\u202eCorp") in pages["billing"].text
    assert read_back(client, agent, tx["id"])["purpose"] == purpose
