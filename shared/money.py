"""Money for people: integer cents (the smallest unit of a currency) written as a person reads them."""

from __future__ import annotations

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
