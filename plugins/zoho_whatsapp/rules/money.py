"""Amounts and dates as Zoho sends them and as an Indian customer expects to read them.

>>> format_amount(Decimal("148500"), "INR")
'₹1,48,500.00'
>>> format_due_date(date(2026, 6, 20))
'20 June 2026'
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from babel.dates import format_date
from babel.numbers import format_currency, get_currency_precision, is_currency

__all__ = ["format_amount", "format_due_date", "parse_amount"]


def parse_amount(value: object, field: str = "amount") -> Decimal:
    """Parse a Zoho amount (JSON number or numeric string) into a ``Decimal``.

    Negative values are returned as-is: whether they make sense is the caller's call.
    Raises ``ValueError`` naming ``field`` for bool, None, NaN, infinities and non-numbers.

    >>> parse_amount(48500.1)
    Decimal('48500.1')
    >>> parse_amount(" 22000.00 ")
    Decimal('22000.00')
    """
    # bool is an int subclass; True as an amount is always a data bug, never "1".
    if value is None or isinstance(value, bool):
        raise ValueError(f"{field}: expected a number, got {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        # str() first: Decimal(0.1) would carry the binary noise 0.1000000000000000055...
        result = Decimal(str(value))
    elif isinstance(value, str):
        text = value.strip()
        # Decimal() accepts "1_000"; a grouped or underscored string is ambiguous input, not a number.
        if not text or "_" in text:
            raise ValueError(f"{field}: expected a number, got {value!r}")
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"{field}: expected a number, got {value!r}") from None
    else:
        # ValueError, not TypeError: callers catch one exception for any bad amount in a payload.
        message = f"{field}: expected a number, got {type(value).__name__} {value!r}"
        raise ValueError(message)  # noqa: TRY004
    if not result.is_finite():
        raise ValueError(f"{field}: expected a finite number, got {value!r}")
    return result


def format_amount(amount: Decimal, currency_code: str, locale: str = "en_IN") -> str:
    """Format ``amount`` in ``currency_code`` for ``locale`` (Indian grouping for en_IN).

    Rounds half-up to the currency's minor unit, as an invoice does (babel alone would
    round half-even). Raises ``ValueError`` for an unknown currency code.

    >>> format_amount(Decimal("10000000"), "INR")
    '₹1,00,00,000.00'
    >>> format_amount(Decimal("1250"), "USD")
    '$1,250.00'
    """
    code = currency_code.strip().upper() if isinstance(currency_code, str) else ""
    if not code or not is_currency(code):
        raise ValueError(f"currency_code: unknown currency {currency_code!r}")
    value = parse_amount(amount, "amount")
    exponent = Decimal(1).scaleb(-get_currency_precision(code))
    value = value.quantize(exponent, rounding=ROUND_HALF_UP)
    return format_currency(value, code, locale=locale)


def format_due_date(d: date | str, locale: str = "en_IN") -> str:
    """Format a due date as a customer reads it: ``'20 June 2026'``.

    Accepts a ``date`` (or ``datetime``) or an ISO ``'YYYY-MM-DD'`` string as Zoho sends it.

    >>> format_due_date("2026-07-07")
    '7 July 2026'
    """
    if isinstance(d, str):
        try:
            d = date.fromisoformat(d.strip())
        except ValueError:
            raise ValueError(f"due_date: expected YYYY-MM-DD, got {d!r}") from None
    if not isinstance(d, date):
        # ValueError, like every other bad due date, so callers need a single except clause.
        raise ValueError(f"due_date: expected a date, got {type(d).__name__} {d!r}")  # noqa: TRY004
    return format_date(d, "d MMMM y", locale=locale)
