"""Approval and block-alert emails, their delivery (local outbox and Resend's wire format), and the approval pages."""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import resend

from shared.approvals.pages import page_css, page_security_headers, render_confirm_page, render_result_page
from shared.config import Settings, load_settings
from shared.notify.email import (
    Email,
    EmailDeliveryFailed,
    render_approval_email,
    render_block_alert,
    send_email,
)
from shared.rendering import format_local_time, format_money, summarize_context

APPROVE_URL = "https://pay.example.com/v1/approve/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0eC0xIn0.c2ln"
DECLINE_URL = "https://pay.example.com/v1/decline/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0eC0xIn0.ZGVj"
EXPIRES = datetime(2026, 11, 24, 16, 5, tzinfo=UTC)


def approval_email(**overrides: Any) -> Email:
    values: dict[str, Any] = {
        "organization_name": "Acme Research",
        "agent_name": "buyer",
        "amount_cents": 125000,
        "currency": "usd",
        "merchant": "api.example.com",
        "purpose": "GPU hours for the nightly evaluation",
        "context": {"invoice": {"id": "inv_8842", "lines": [{"sku": "gpu"}, {"sku": "disk"}]}, "ticket": "OPS-12"},
        "expires_at": EXPIRES,
        "timezone": "Europe/Paris",
        "approve_url": APPROVE_URL,
        "decline_url": DECLINE_URL,
        "to": "admin@acme.test",
    }
    return render_approval_email(**{**values, **overrides})


def confirm_page(action: Any = "approve", **overrides: Any) -> str:
    values: dict[str, Any] = {
        "action": action,
        "agent_name": "buyer",
        "amount_cents": 125000,
        "currency": "usd",
        "merchant": "api.example.com",
        "purpose": "GPU hours",
        "context": {"ticket": "OPS-12"},
        "expires_at": EXPIRES,
        "timezone": "Europe/Paris",
        "post_url": f"/v1/{action}/tok.en-1",
    }
    return render_confirm_page(**{**values, **overrides})


# Money and time ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cents", "shown"),
    [
        (0, "$0.00"),
        (1, "$0.01"),
        (10, "$0.10"),
        (1250, "$12.50"),
        (125000, "$1,250.00"),
        (100000000, "$1,000,000.00"),
        (99999999999999999, "$999,999,999,999,999.99"),  # beyond a double's exact range: still exact
        (-1250, "-$12.50"),
    ],
)
def test_money_is_shown_from_exact_integer_cents(cents: int, shown: str) -> None:
    assert format_money(cents, "usd") == shown
    assert format_money(cents, "USD") == shown


def test_money_refuses_floats() -> None:
    with pytest.raises(TypeError):
        format_money(12.5, "usd")  # type: ignore[arg-type]


def test_other_currencies_are_still_readable() -> None:
    assert format_money(1250, "eur") == "€12.50"
    assert format_money(1250, "jpy") == "1,250 JPY"  # no minor unit
    assert format_money(1250, "chf") == "12.50 CHF"


def test_times_are_shown_in_the_organizations_timezone() -> None:
    assert format_local_time(EXPIRES, "Europe/Paris") == "Tue 24 Nov 2026, 17:05 CET"
    assert format_local_time(EXPIRES, "America/New_York") == "Tue 24 Nov 2026, 11:05 EST"
    assert format_local_time(datetime(2026, 7, 1, 12, 0, tzinfo=UTC), "America/New_York") == "Wed 1 Jul 2026, 08:00 EDT"
    assert format_local_time(EXPIRES, "UTC") == "Tue 24 Nov 2026, 16:05 UTC"
    assert format_local_time(EXPIRES, "Asia/Dubai") == "Tue 24 Nov 2026, 20:05 UTC+04:00"
    assert format_local_time(EXPIRES, "Not/AZone") == "Tue 24 Nov 2026, 16:05 UTC"


# Context summary -----------------------------------------------------------------------------------------------------
def test_context_summary_dots_nested_keys_and_shortens_lists_and_long_values() -> None:
    rows = summarize_context(
        {
            "invoice": {"id": "inv_1", "lines": [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}], "meta": {"paid": False}},
            "tags": ["a", "b", "c", "d", "e", "f", "g"],
            "few": [1, 2],
            "empty": [],
            "nothing": None,
            "note": "x" * 500,
            "multi": "line one\nline two\t\ttabbed",
        }
    )
    assert rows[:7] == [
        ("invoice.id", "inv_1"),
        ("invoice.lines", "3 items"),
        ("invoice.meta.paid", "false"),
        ("tags", "a, b, c, d, e (+2 more)"),
        ("few", "1, 2"),
        ("empty", "(none)"),
        ("nothing", "—"),
    ]
    key, value = rows[7]
    assert key == "note" and value.endswith("…") and len(value) == 80
    assert rows[8] == ("multi", "line one line two tabbed")


def test_context_summary_stops_at_the_limit_and_says_how_many_more() -> None:
    rows = summarize_context({f"k{i}": i for i in range(20)}, limit=12)
    assert len(rows) == 13
    assert rows[:12] == [(f"k{i}", str(i)) for i in range(12)]
    assert rows[12] == ("", "and 8 more")
    assert summarize_context({f"k{i}": i for i in range(12)}, limit=12)[-1] == ("k11", "11")
    assert summarize_context({}) == []


# The approval email --------------------------------------------------------------------------------------------------
def test_approval_email_subject_names_amount_merchant_and_agent() -> None:
    assert approval_email().subject == 'Approve $1,250.00 to api.example.com? (agent "buyer")'


def test_approval_email_both_parts_show_everything_the_admin_decides_on() -> None:
    email = approval_email()
    for part in (email.text, email.html):
        for shown in (
            "buyer",
            "$1,250.00",
            "api.example.com",
            "GPU hours for the nightly evaluation",
            "Tue 24 Nov 2026, 17:05 CET",
            "invoice.id",
            "inv_8842",
            "invoice.lines",
            "OPS-12",
            APPROVE_URL,
            DECLINE_URL,
        ):
            assert shown in part, (shown, part)
    assert email.to == "admin@acme.test"


def test_each_link_stands_alone_on_its_own_line_in_the_text_part() -> None:
    # A purpose that tries to smuggle a link of its own onto a line is flattened onto its "Purpose:" line.
    email = approval_email(purpose="pay now\nhttps://evil.example/approve\n", merchant="shop\r\nhttps://evil.example")
    lines = email.text.splitlines()
    assert lines.count(APPROVE_URL) == 1
    assert lines.count(DECLINE_URL) == 1
    assert [line for line in lines if re.search(r"https?://", line) and line.strip() == line and " " not in line] == [
        APPROVE_URL,
        DECLINE_URL,
    ]
    assert lines[lines.index(APPROVE_URL) - 1] == "Approve this payment:"
    assert lines[lines.index(DECLINE_URL) - 1] == "Decline this payment:"
    assert "Purpose:   pay now https://evil.example/approve" in lines


def test_agent_supplied_markup_is_escaped_in_the_html_part() -> None:
    email = approval_email(
        purpose="<script>alert(1)</script>",
        merchant='evil.example"><img src=x onerror=alert(2)>',
        context={"<b>k</b>": "<i>v</i>"},
        agent_name="<u>buyer</u>",
    )
    assert "<script" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<img" not in email.html and "&lt;img src=x onerror=alert(2)&gt;" in email.html
    assert "<b>k</b>" not in email.html and "<i>v</i>" not in email.html and "<u>buyer</u>" not in email.html
    assert "<script>alert(1)</script>" in email.text  # plain text is not HTML: shown as written


def test_approval_email_html_is_self_contained_with_two_buttons() -> None:
    html = approval_email().html
    assert f'href="{APPROVE_URL}"' in html and f'href="{DECLINE_URL}"' in html
    assert html.count(f'href="{APPROVE_URL}"') == 2  # the button and the raw link for clients that strip buttons
    assert "background-color:#15803d" in html  # Approve is green
    assert not re.search(r"""(src|href)=["']?(https?:)?//(?!pay\.example\.com)""", html)  # nothing loaded from outside
    assert "<link" not in html and "@import" not in html and "<script" not in html


def test_expiry_follows_the_organizations_timezone() -> None:
    paris = approval_email(timezone="Europe/Paris")
    new_york = approval_email(timezone="America/New_York")
    assert "Tue 24 Nov 2026, 17:05 CET" in paris.text and "Tue 24 Nov 2026, 17:05 CET" in paris.html
    assert "Tue 24 Nov 2026, 11:05 EST" in new_york.text and "Tue 24 Nov 2026, 11:05 EST" in new_york.html
    assert "CET" not in new_york.text


def test_links_must_be_web_links() -> None:
    with pytest.raises(ValueError):
        approval_email(approve_url="javascript:alert(1)")


def test_block_alert_says_who_when_why_and_where_to_unblock() -> None:
    email = render_block_alert(
        organization_name="Acme Research",
        agent_name="buyer",
        blocked_at=EXPIRES,
        timezone="America/New_York",
        reason="21 payment requests within 60 seconds (limit 20)",
        dashboard_url="https://pay.example.com/dashboard/agents/a-1",
        to="admin@acme.test",
    )
    assert email.subject == 'Agent "buyer" was blocked by the circuit breaker'
    for part in (email.text, email.html):
        for shown in ("buyer", "Tue 24 Nov 2026, 11:05 EST", "21 payment requests within 60 seconds (limit 20)"):
            assert shown in part
    assert "https://pay.example.com/dashboard/agents/a-1" in email.text.splitlines()
    assert 'href="https://pay.example.com/dashboard/agents/a-1"' in email.html
    assert "unblock" in email.text.lower()


# Hidden characters: isolated in HTML, written out in plain text -------------------------------------------------------
def hidden_characters(text: str) -> list[str]:
    """Control, format and separator characters, other than the text's own line breaks and tabs."""
    return [
        f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") and ch not in "\t\n\r"
    ]


_DIRECTION_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def isolated(text: str) -> str:
    """How HTML shows a user's text: in a <bdi>, with its direction controls written out (so "bot\u202eevil" reads
    "bot<U+202E>evil", never "bot live"); other hidden characters keep their place inside the <bdi>."""
    shown = _DIRECTION_CONTROLS.sub(lambda found: f"&lt;U+{ord(found.group()):04X}&gt;", text)
    return f"<bdi>{shown}</bdi>"


def outside_isolation(html: str) -> str:
    """The HTML without its <bdi> elements: what a user's text could still reorder or hide."""
    return re.sub(r"<bdi>.*?</bdi>", "", html, flags=re.DOTALL)


def test_approval_email_isolates_user_text_in_html_and_writes_hidden_characters_out_in_text_and_subject() -> None:
    email = approval_email(
        organization_name="Acme\u202eResearch",
        agent_name="bot\u202eevil",
        merchant="shop\u200b.example",
        purpose="invoice\u202egnp.exe",
        context={"file\u202e": "gnp.exe\u202e", "bell": "\x07\x7f\x9b"},
    )
    for shown in ("Acme\u202eResearch", "bot\u202eevil", "shop\u200b.example", "invoice\u202egnp.exe", "file\u202e"):
        assert isolated(shown) in email.html, shown
    assert hidden_characters(outside_isolation(email.html)) == []
    lines = email.text.splitlines()
    for line in (
        "Agent:     bot<U+202E>evil",
        "Merchant:  shop<U+200B>.example",
        "Purpose:   invoice<U+202E>gnp.exe",
        "  file<U+202E>: gnp.exe<U+202E>",
        "  bell: <U+0007><U+007F><U+009B>",
        "AgentPay, for Acme<U+202E>Research",
    ):
        assert line in lines, (line, lines)
    assert hidden_characters(email.text) == []
    assert email.subject == 'Approve $1,250.00 to shop<U+200B>.example? (agent "bot<U+202E>evil")'


def test_the_subject_is_one_line_with_its_tabs_and_line_breaks_written_out() -> None:
    email = approval_email(merchant="shop\texample", agent_name="bot\r\nBcc: x")
    assert email.subject == 'Approve $1,250.00 to shop<U+0009>example? (agent "bot<U+000D><U+000A>Bcc: x")'
    long = approval_email(merchant="\u202e" * 100)
    assert long.subject.startswith("Approve $1,250.00 to <U+202E><U+202E>") and len(long.subject) < 120


def test_block_alert_isolates_the_names_and_the_reason() -> None:
    email = render_block_alert(
        organization_name="Acme\u202eResearch",
        agent_name="bot\u202eevil",
        blocked_at=EXPIRES,
        timezone="UTC",
        reason="21 requests\u2028in 60 s",
        dashboard_url="https://pay.example.com/dashboard/agents/a-1",
        to="admin@acme.test",
    )
    assert isolated("bot\u202eevil") in email.html and isolated("Acme\u202eResearch") in email.html
    assert hidden_characters(outside_isolation(email.html)) == []
    assert 'AgentPay\'s circuit breaker blocked the agent "bot<U+202E>evil".' in email.text.splitlines()
    assert hidden_characters(email.text) == []
    assert email.subject == 'Agent "bot<U+202E>evil" was blocked by the circuit breaker'


# Local outbox --------------------------------------------------------------------------------------------------------
def local_settings(tmp_path: Path) -> Settings:
    settings = load_settings(agentpay_env="local", agentpay_home=tmp_path)
    assert settings.is_local and not settings.resend_api_key
    return settings


def test_local_mode_writes_one_json_file_per_email(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = local_settings(tmp_path)
    email = approval_email()
    with caplog.at_level("INFO", logger="agentpay.email"):
        name = send_email(email, settings=settings, idempotency_key="approval-email/tx-1")
    files = list(settings.outbox_dir.iterdir())
    assert [f.name for f in files] == [name]
    assert json.loads(files[0].read_text()) == {
        "to": email.to,
        "subject": email.subject,
        "text": email.text,
        "html": email.html,
    }
    [record] = [r for r in caplog.records if r.name == "agentpay.email"]
    assert record.getMessage() == "approval email written"
    fields = record.fields  # type: ignore[attr-defined]
    assert fields["path"] == str(files[0])
    assert fields["links"] == [APPROVE_URL, DECLINE_URL]


def test_local_mode_a_duplicate_job_overwrites_the_same_file(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    first = send_email(approval_email(), settings=settings, idempotency_key="approval-email/tx-1")
    second = send_email(approval_email(), settings=settings, idempotency_key="approval-email/tx-1")
    assert first == second
    assert [f.name for f in settings.outbox_dir.iterdir()] == [first]
    send_email(approval_email(), settings=settings, idempotency_key="approval-email/tx-2")
    assert len(list(settings.outbox_dir.iterdir())) == 2


def test_outbox_file_names_are_safe_and_distinct(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    names = {send_email(approval_email(), settings=settings, idempotency_key=key) for key in ("a/b", "a_b", "../../x")}
    assert len(names) == 3
    assert all("/" not in name and not name.startswith(".") for name in names)
    assert sorted(f.name for f in settings.outbox_dir.iterdir()) == sorted(names)


# Resend, through a fake speaking its wire format ---------------------------------------------------------------------
class FakeResend:
    """A loopback HTTP server answering like Resend's POST /emails; it records what it received."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.status = 200
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)})
                answer: dict[str, Any]
                if fake.status == 200:
                    answer = {"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}
                else:
                    answer = {"statusCode": fake.status, "name": "internal_server_error", "message": "boom"}
                payload = json.dumps(answer).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeResend:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_resend(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeResend]:
    with FakeResend() as fake:
        monkeypatch.setattr(resend, "api_url", fake.url)  # the SDK builds every URL from this module global
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        yield fake


def resend_settings(tmp_path: Path) -> Settings:
    return load_settings(
        agentpay_env="local",
        agentpay_home=tmp_path,
        resend_api_key="re_test_123",
        email_from="AgentPay <approvals@agentpay.example>",
    )


def test_resend_receives_the_email_with_our_idempotency_key(tmp_path: Path, fake_resend: FakeResend) -> None:
    email = approval_email()
    sent_id = send_email(email, settings=resend_settings(tmp_path), idempotency_key="approval-email/tx-1")
    assert sent_id == "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"
    [request] = fake_resend.requests
    assert request["path"] == "/emails"
    assert request["headers"]["Authorization"] == "Bearer re_test_123"
    assert request["headers"]["Idempotency-Key"] == "approval-email/tx-1"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["body"] == {
        "from": "AgentPay <approvals@agentpay.example>",
        "to": ["admin@acme.test"],
        "subject": email.subject,
        "html": email.html,
        "text": email.text,
    }
    assert not (tmp_path / "outbox").exists()  # with a key configured nothing goes to the outbox


def test_resend_failure_raises_email_delivery_failed(tmp_path: Path, fake_resend: FakeResend) -> None:
    fake_resend.status = 500
    with pytest.raises(EmailDeliveryFailed) as caught:
        send_email(approval_email(), settings=resend_settings(tmp_path), idempotency_key="approval-email/tx-1")
    assert isinstance(caught.value.__cause__, resend.exceptions.ResendError)
    assert caught.value.retryable and caught.value.status == 500
    assert caught.value.http_status == 503


def test_resend_validation_error_is_not_worth_retrying(tmp_path: Path, fake_resend: FakeResend) -> None:
    fake_resend.status = 422
    with pytest.raises(EmailDeliveryFailed) as caught:
        send_email(approval_email(), settings=resend_settings(tmp_path), idempotency_key="approval-email/tx-1")
    assert not caught.value.retryable


def test_resend_unreachable_raises_email_delivery_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeResend() as fake:
        url = fake.url
    monkeypatch.setattr(resend, "api_url", url)  # the port is closed now
    with pytest.raises(EmailDeliveryFailed):
        send_email(approval_email(), settings=resend_settings(tmp_path), idempotency_key="k")


# The approval pages --------------------------------------------------------------------------------------------------
class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


@pytest.mark.parametrize("action", ["approve", "decline"])
def test_confirm_page_has_one_form_that_posts_to_the_link(action: str) -> None:
    html = confirm_page(action)
    page = parse(html)
    assert page.find("form") == [{"method": "post", "action": f"/v1/{action}/tok.en-1"}]
    assert [b.get("type") for b in page.find("button")] == ["submit"]
    assert "<script" not in html.lower()
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)
    assert not any("style" in attrs for _, attrs in page.tags)  # the CSP admits our <style> block only
    assert {"name": "viewport", "content": "width=device-width, initial-scale=1"} in page.find("meta")
    assert page.find("link") == [] and "@import" not in html and "url(" not in html
    assert html.count("<style>") == 1
    assert "Opening this page does not change anything; the button does." in html
    for shown in ("buyer", "$1,250.00", "api.example.com", "GPU hours", "Tue 24 Nov 2026, 17:05 CET", "OPS-12"):
        assert shown in html


def test_decline_page_has_a_labelled_optional_reason_and_approve_page_has_none() -> None:
    decline = parse(confirm_page("decline"))
    [textarea] = decline.find("textarea")
    assert textarea["name"] == "reason"
    assert [label for label in decline.find("label") if label.get("for") == textarea["id"]]
    assert "Reason (optional)" in confirm_page("decline")
    assert parse(confirm_page("approve")).find("textarea") == []


def test_confirm_page_escapes_agent_supplied_values() -> None:
    html = confirm_page(
        "approve",
        purpose="<script>alert(1)</script>",
        merchant="<img src=x onerror=alert(1)>",
        context={"x": "</style><script>"},
        post_url='/v1/approve/t"><script>',
    )
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_result_pages_escape_and_show_details() -> None:
    html = render_result_page(
        title="<b>Approved</b>",
        message="<script>alert(1)</script>",
        tone="success",
        details={"Merchant": "<i>shop</i>", "Amount": "$12.50"},
    )
    assert "<script" not in html and "<b>Approved</b>" not in html and "<i>shop</i>" not in html
    assert "&lt;b&gt;Approved&lt;/b&gt;" in html and "&lt;i&gt;shop&lt;/i&gt;" in html and "$12.50" in html
    assert parse(html).find("form") == []


@pytest.mark.parametrize("action", ["approve", "decline"])
def test_confirm_page_isolates_every_value_the_agent_sent(action: str) -> None:
    html = confirm_page(
        action,
        agent_name="bot\u202eevil",
        merchant="shop\u200b.example",
        purpose="invoice\u202egnp.exe",
        context={"file\u202e": "gnp.exe\u202e"},
    )
    for shown in ("bot\u202eevil", "shop\u200b.example", "invoice\u202egnp.exe", "file\u202e", "gnp.exe\u202e"):
        assert isolated(shown) in html, shown
    assert hidden_characters(outside_isolation(html)) == []


def test_result_page_isolates_its_details() -> None:
    html = render_result_page(
        title="Payment declined", message="Done.", tone="neutral", details={"Merchant": "evil\u202emoc.elgoog"}
    )
    assert isolated("evil\u202emoc.elgoog") in html and "evil&lt;U+202E&gt;moc.elgoog" in html
    assert hidden_characters(outside_isolation(html)) == []


@pytest.mark.parametrize("tone", ["success", "neutral", "error"])
def test_result_page_for_every_tone(tone: Any) -> None:
    html = render_result_page(title="This link has expired", message="Nothing was charged.", tone=tone)
    assert f"tone-{tone}" in html and "This link has expired" in html and "Nothing was charged." in html
    assert "<script" not in html.lower()


def test_page_csp_admits_exactly_our_inline_style() -> None:
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha256(page_css().encode()).digest()).decode()
    headers = page_security_headers()
    assert f"style-src 'sha256-{digest}'" in headers["Content-Security-Policy"]
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert f"<style>{page_css()}</style>" in confirm_page("approve")
