"""The one rendering module: the Jinja environment of emails, approval pages and the dashboard, with its money and
time filters and the one-line form of what agents send. Jinja loads on first use, so a function that never renders
never pays for it."""

from __future__ import annotations

import functools
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.platform import display_text

if TYPE_CHECKING:
    import jinja2

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"

# Money ---------------------------------------------------------------------------------------------------------------
_CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}
_ZERO_DECIMAL_CURRENCIES = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "vnd", "xaf", "xof"}


def format_money(cents: int, currency: str = "usd") -> str:
    """An amount in the currency's smallest unit, for people: 1250, "usd" -> "$12.50". Integer arithmetic only."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"money is an integer number of cents, not {type(cents).__name__}")
    code = currency.lower()
    sign = "-" if cents < 0 else ""
    if code in _ZERO_DECIMAL_CURRENCIES:
        number = f"{abs(cents):,}"
    else:
        units, rest = divmod(abs(cents), 100)
        number = f"{units:,}.{rest:02d}"
    symbol = _CURRENCY_SYMBOLS.get(code)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {code.upper()}"


def _money_filter(cents: int | None, currency: str = "usd") -> str:
    # Tables show an empty cell for no amount; the database hands back Decimal for SUM(), hence int().
    return "" if cents is None else format_money(int(cents), currency)


# Agent-supplied text ------------------------------------------------------------------------------------------------
# Emails and the approval pages show what an agent sent the same way: on one line, its context as rows.
_WHITESPACE = re.compile(r"\s+")
_VALUE_CHARS = 80
_KEY_CHARS = 48
_LIST_ITEMS = 5


def one_line(value: str, limit: int | None = None) -> str:
    """Agent-supplied text on one line (so it can never stand alone on a line of the text part), cut with "…"."""
    flat = _WHITESPACE.sub(" ", value).strip()
    if limit is not None and len(flat) > limit:
        return flat[: limit - 1].rstrip() + "…"
    return flat


def summarize_context(context: dict[str, Any], *, limit: int = 12) -> list[tuple[str, str]]:
    """The agent's context as readable key/value rows: nested keys dotted, lists shortened, long values cut."""
    rows: list[tuple[str, str]] = []
    _flatten(context, "", rows)
    if len(rows) > limit:
        hidden = len(rows) - limit
        rows = [*rows[:limit], ("", f"and {hidden} more")]
    return rows


def _flatten(value: Any, prefix: str, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            name = one_line(str(key)) or '""'
            _flatten(item, f"{prefix}.{name}" if prefix else name, rows)
        return
    if prefix:
        rows.append((one_line(prefix, _KEY_CHARS), one_line(_describe(value), _VALUE_CHARS)))


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "(empty)"
    if isinstance(value, list | tuple):
        if not value:
            return "(none)"
        if any(isinstance(item, dict | list | tuple) for item in value):
            return f"{len(value)} item{'s' if len(value) != 1 else ''}"
        shown = ", ".join(_scalar(item) for item in value[:_LIST_ITEMS])
        more = len(value) - _LIST_ITEMS
        return f"{shown} (+{more} more)" if more > 0 else shown
    return _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Time ----------------------------------------------------------------------------------------------------------------
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _zone(timezone: str) -> Any:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC  # the label then says UTC, so the time shown is still true


def _label(local: datetime) -> str:
    label = local.tzname() or "UTC"
    if label[:1] in "+-":  # zones without a letter abbreviation ("+04"): say what the number means
        label = "UTC" + _offset(local.utcoffset())
    return label


def _offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta()).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours:02d}:{rest:02d}"


def _aware(moment: datetime | str) -> datetime:
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    # The database hands back aware values; a naive one is UTC by convention.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def format_local_time(moment: datetime, timezone: str) -> str:
    """A moment for an email or an approval page: "Tue 24 Nov 2026, 17:05 CET" (English, whatever the locale)."""
    local = _aware(moment).astimezone(_zone(timezone))
    return (
        f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}, {local:%H:%M} {_label(local)}"
    )


def local_time(moment: datetime | str | None, timezone: str) -> str:
    """A moment in a dashboard table: "Nov 24, 2026, 17:05 CET"; nothing for no moment."""
    if moment is None:
        return ""
    local = _aware(moment).astimezone(_zone(timezone))
    return f"{_MONTHS[local.month - 1]} {local.day}, {local.year}, {local:%H:%M} {_label(local)}"


# The environment -----------------------------------------------------------------------------------------------------
def _json_filter(indent: int | None) -> Any:
    # JSON a user sent (context, audit details) stays JSON, with its hidden and bidi characters as \u escapes.
    return lambda value: display_text.json_escapes(json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=False))


@functools.cache
def environment() -> jinja2.Environment:
    """Templates under shared/templates: .html autoescaped, plain text not, a missing name false or an error."""
    import jinja2  # here, not at the top: loading Jinja adds about 25 ms to a cold start that renders nothing

    class OptionalUndefined(jinja2.StrictUndefined):
        """A name the page did not pass is false in `{% if name %}`, and an error anywhere else (printed, looped,
        compared), so an optional notice needs no placeholder while a misspelt value never renders as nothing."""

        def __bool__(self) -> bool:  # type: ignore[override]  # StrictUndefined raises here; this one answers
            return False

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=OptionalUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["money"] = _money_filter
    env.filters["local_time"] = local_time
    env.filters["pretty_json"] = _json_filter(2)
    env.filters["compact_json"] = _json_filter(None)
    display_text.register(env)
    return env


def render(name: str, /, **context: Any) -> str:
    """The template `name` (a path under shared/templates) rendered with `context`."""
    return environment().get_template(name).render(**context)
