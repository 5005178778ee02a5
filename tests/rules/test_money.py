from datetime import date, datetime
from decimal import Decimal

import pytest

from zoho_whatsapp.rules.money import format_amount, format_due_date, parse_amount


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (48500, Decimal(48500)),
        (48500.0, Decimal("48500.0")),
        (0.1, Decimal("0.1")),  # not 0.1000000000000000055511151231257827...
        (22000.35, Decimal("22000.35")),
        ("22000.00", Decimal("22000.00")),
        (" 1250.5 ", Decimal("1250.5")),
        (Decimal("148500.00"), Decimal("148500.00")),
        (-500, Decimal(-500)),  # credit notes / overpayments: the caller decides
        ("-12.50", Decimal("-12.50")),
        (0, Decimal(0)),
    ],
)
def test_parse_amount_accepts_numbers(value: object, expected: Decimal) -> None:
    result = parse_amount(value)
    assert result == expected
    assert str(result) == str(expected)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "abc",
        "",
        "  ",
        float("nan"),
        float("inf"),
        "NaN",
        "-Infinity",
        Decimal("NaN"),
        True,
        False,
        "1,48,500",
        "1_000",
        "₹500",
        [1],
        object(),
    ],
)
def test_parse_amount_rejects_non_numbers_naming_the_field(value: object) -> None:
    with pytest.raises(ValueError, match="^balance: "):
        parse_amount(value, "balance")


def test_parse_amount_default_field_name() -> None:
    with pytest.raises(ValueError, match="^amount: "):
        parse_amount(None)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal(148500), "INR", "₹1,48,500.00"),
        (Decimal(22000), "INR", "₹22,000.00"),
        (Decimal("999.5"), "INR", "₹999.50"),
        (Decimal(100000), "INR", "₹1,00,000.00"),  # one lakh
        (Decimal(10000000), "INR", "₹1,00,00,000.00"),  # one crore
        (Decimal("123456789.99"), "INR", "₹12,34,56,789.99"),
        (
            Decimal("0.125"),
            "INR",
            "₹0.13",
        ),  # half-up, as on an invoice (babel alone: ₹0.12)
        (Decimal("-1234.5"), "INR", "-₹1,234.50"),
        (
            Decimal(1250),
            "USD",
            "$1,250.00",
        ),  # babel's en_IN symbol for USD is a bare "$"
        (
            Decimal(148500),
            "USD",
            "$1,48,500.00",
        ),  # grouping follows the locale, not the currency
        (Decimal(1250), "usd", "$1,250.00"),
        (Decimal(1250), "EUR", "€1,250.00"),
        (Decimal("1250.4"), "JPY", "JP¥1,250"),  # zero minor units
    ],
)
def test_format_amount_en_in(amount: Decimal, currency: str, expected: str) -> None:
    assert format_amount(amount, currency) == expected


def test_format_amount_other_locale() -> None:
    assert format_amount(Decimal(1250), "USD", locale="en_US") == "$1,250.00"
    assert format_amount(Decimal(148500), "INR", locale="en_US") == "₹148,500.00"


@pytest.mark.parametrize("code", ["XYZ", "", "RUPEES", "₹"])
def test_format_amount_rejects_unknown_currency(code: str) -> None:
    with pytest.raises(ValueError, match="currency"):
        format_amount(Decimal(1), code)


def test_format_amount_accepts_plain_numbers_through_parse_amount() -> None:
    assert format_amount(48500.0, "INR") == "₹48,500.00"  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        format_amount(None, "INR")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2026, 6, 20), "20 June 2026"),
        (date(2026, 7, 7), "7 July 2026"),
        (datetime(2026, 12, 31, 23, 59), "31 December 2026"),
        ("2026-06-20", "20 June 2026"),
    ],
)
def test_format_due_date(value: date | str, expected: str) -> None:
    assert format_due_date(value) == expected


@pytest.mark.parametrize("bad", ["20/06/2026", "", "tomorrow", None, 20260620])
def test_format_due_date_rejects_non_dates(bad: object) -> None:
    with pytest.raises(ValueError, match="due_date"):
        format_due_date(bad)  # type: ignore[arg-type]
