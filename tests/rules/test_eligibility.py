"""Promises to pay, switched-off reminders, minimum balances and the customer cadence."""

from __future__ import annotations

import doctest
from datetime import date, timedelta
from decimal import Decimal

import pytest

import zoho_whatsapp.rules.eligibility
from zoho_whatsapp.rules.eligibility import (
    BELOW_MINIMUM,
    CADENCE,
    PROMISED_PAYMENT_DATE,
    REMINDERS_DISABLED,
    Hold,
    below_minimum,
    check_invoice,
    custom_field_value,
    customer_next_allowed_day,
    promised_payment_date,
    reminders_disabled,
)
from zoho_whatsapp.rules.policy import CollectionsPolicy, CustomFieldSwitch

POLICY = CollectionsPolicy()
TODAY = date(2026, 7, 7)
FIELD = {
    "customfield_id": 982000000099001,
    "label": "WhatsApp reminders",
    "api_name": "cf_whatsapp_reminders",
    "data_type": "dropdown",
}


def row(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"invoice_id": "1", "payment_expected_date": "", "custom_fields": []}
    return base | fields


def with_field(value: object, **entry: object) -> dict[str, object]:
    return row(custom_fields=[dict(FIELD, value=value, **entry)])


# --- promised payment date ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "held_until"),
    [
        ("2026-07-08", date(2026, 7, 8)),
        ("2026-07-07", date(2026, 7, 7)),  # a promise for today still holds today
        ("2026-07-06", None),  # broken yesterday: remind
        ("2026-07-07T00:00:00+0530", date(2026, 7, 7)),
        (" 2026-12-31 ", date(2026, 12, 31)),
        ("", None),
        (" ", None),  # Zoho's own example for "no promise"
        (None, None),
        ("soon", None),  # not a date: no promise, reminders are not silenced by accident
        ("07/08/2026", None),
        (20260708, None),
    ],
)
def test_promised_payment_date(raw: object, held_until: date | None) -> None:
    assert promised_payment_date(row(payment_expected_date=raw), TODAY) == held_until


def test_no_promise_field_at_all() -> None:
    assert promised_payment_date({}, TODAY) is None


def test_a_promise_holds_until_it_passes() -> None:
    invoice = row(payment_expected_date="2026-07-09")
    held = [TODAY + timedelta(days=n) for n in range(5) if promised_payment_date(invoice, TODAY + timedelta(days=n))]
    assert held == [date(2026, 7, 7), date(2026, 7, 8), date(2026, 7, 9)]


# --- reminders switched off ------------------------------------------------------------------------------


@pytest.mark.parametrize("off", [False, "false", "False", " FALSE ", "0", "no", "off"])
def test_invoice_switch_off(off: object) -> None:
    detail = reminders_disabled(row(payment_reminder_enabled=off), None, POLICY)
    assert detail == "payment reminders are disabled on the invoice in Zoho Books"


@pytest.mark.parametrize("on", [True, "true", None, "", 1, "yes"])
def test_invoice_switch_on_or_absent(on: object) -> None:
    assert reminders_disabled(row(payment_reminder_enabled=on), None, POLICY) is None


def test_customer_switch_off() -> None:
    detail = reminders_disabled(row(), {"payment_reminder_enabled": False}, POLICY)
    assert detail == "payment reminders are disabled for the customer in Zoho Books"
    assert reminders_disabled(row(), {"payment_reminder_enabled": True}, POLICY) is None
    assert reminders_disabled(row(), {}, POLICY) is None
    # the invoice's own switch is named first
    both = reminders_disabled(row(payment_reminder_enabled=False), {"payment_reminder_enabled": False}, POLICY)
    assert "on the invoice" in both


@pytest.mark.parametrize("value", ["Off", "off", " OFF ", "No", "false", "Disabled", "STOP", "0", "n", False])
def test_custom_field_off(value: object) -> None:
    detail = reminders_disabled(with_field(value), None, POLICY)
    assert detail == f"custom field cf_whatsapp_reminders is {value!r}"


@pytest.mark.parametrize("value", ["On", "Yes", "", None, True, "offline", 0])
def test_custom_field_not_off(value: object) -> None:
    assert reminders_disabled(with_field(value), None, POLICY) is None


def test_custom_field_matched_by_api_name_label_id_or_flat_key() -> None:
    by_label = CollectionsPolicy(reminders_field=CustomFieldSwitch("whatsapp REMINDERS"))
    by_id = CollectionsPolicy(reminders_field=CustomFieldSwitch("982000000099001"))
    assert reminders_disabled(with_field("Off"), None, by_label) is not None
    assert reminders_disabled(with_field("Off"), None, by_id) is not None
    flat = row(cf_whatsapp_reminders="Off")  # list rows may carry custom fields flat as cf_<api_name>
    assert reminders_disabled(flat, None, POLICY) is not None
    other = CollectionsPolicy(reminders_field=CustomFieldSwitch("cf_collections_hold"))
    assert reminders_disabled(with_field("Off"), None, other) is None


def test_custom_field_value_lookup() -> None:
    switch = CustomFieldSwitch()
    assert custom_field_value(with_field("Off"), switch) == "Off"
    assert custom_field_value(row(), switch) is None
    assert custom_field_value(row(custom_fields=None), switch) is None
    assert custom_field_value(row(custom_fields=["junk", None, {"value": "Off"}]), switch) is None
    # the first matching entry wins; a later flat key is not consulted
    two = row(custom_fields=[dict(FIELD, value="On")], cf_whatsapp_reminders="Off")
    assert custom_field_value(two, switch) == "On"


def test_custom_field_switch_can_be_off_or_reworded() -> None:
    no_field = CollectionsPolicy(reminders_field=None)
    assert reminders_disabled(with_field("Off"), None, no_field) is None
    assert reminders_disabled(row(payment_reminder_enabled=False), None, no_field) is not None
    worded = CollectionsPolicy(reminders_field=CustomFieldSwitch(off_values=frozenset({"Do Not Remind"})))
    assert reminders_disabled(with_field("do not remind"), None, worded) is not None
    assert reminders_disabled(with_field("Off"), None, worded) is None


# --- minimum balance -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("balance", "below"),
    [("0.99", True), ("0.50", True), ("0", True), ("1", False), ("1.00", False), ("1.01", False)],
)
def test_default_minimum_is_one(balance: str, below: bool) -> None:
    assert below_minimum(Decimal(balance), "INR", POLICY) is below
    assert below_minimum(Decimal(balance), "USD", POLICY) is below


def test_minimum_per_currency() -> None:
    policy = CollectionsPolicy(default_minimum=Decimal(5), minimums={"INR": Decimal(100), "usd": Decimal(2)})
    assert below_minimum(Decimal("99.99"), "INR", policy)
    assert not below_minimum(Decimal("100"), "INR", policy)
    assert not below_minimum(Decimal("2"), "USD", policy)
    assert below_minimum(Decimal("1.99"), "usd", policy)
    assert below_minimum(Decimal("4.99"), "EUR", policy)  # unlisted: the default
    assert not below_minimum(Decimal("5"), "EUR", policy)


# --- all three, in order -----------------------------------------------------------------------------------------


def check(invoice: dict[str, object], balance: str = "5000", contact: dict[str, object] | None = None) -> Hold | None:
    return check_invoice(
        invoice, balance=Decimal(balance), currency_code="INR", today=TODAY, policy=POLICY, contact=contact
    )


def test_check_invoice_passes_an_ordinary_invoice() -> None:
    assert check(row()) is None
    assert check(row(payment_expected_date="2026-07-06"), "1") is None


def test_check_invoice_reasons_and_their_order() -> None:
    promised = row(payment_expected_date="2026-07-10")
    assert check(promised) == Hold(
        PROMISED_PAYMENT_DATE, "the customer promised to pay by 2026-07-10", date(2026, 7, 11)
    )
    small = check(row(), "0.99")
    assert small == Hold(BELOW_MINIMUM, "balance 0.99 INR is below the minimum of 1")
    assert check(promised, "0.99").reason == PROMISED_PAYMENT_DATE
    off = row(payment_expected_date="2026-07-10", payment_reminder_enabled=False)
    assert check(off, "0.99") == Hold(REMINDERS_DISABLED, "payment reminders are disabled on the invoice in Zoho Books")
    assert check(promised, contact={"payment_reminder_enabled": False}).reason == REMINDERS_DISABLED
    assert check(with_field("Off"), "0.5").reason == REMINDERS_DISABLED


# --- customer cadence ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "min_days", "allowed_from"),
    [
        (None, 3, None),
        (TODAY - timedelta(days=3), 3, None),
        (TODAY - timedelta(days=10), 3, None),
        (TODAY - timedelta(days=2), 3, TODAY + timedelta(days=1)),
        (TODAY - timedelta(days=1), 3, TODAY + timedelta(days=2)),
        (TODAY, 3, TODAY + timedelta(days=3)),
        (TODAY + timedelta(days=2), 3, TODAY + timedelta(days=5)),  # a later run already messaged them
        (TODAY - timedelta(days=1), 1, None),
        (TODAY, 1, TODAY + timedelta(days=1)),
        (TODAY - timedelta(days=1), 0, None),
        (TODAY, 0, TODAY + timedelta(days=1)),  # no cadence still means one message a day
        (TODAY + timedelta(days=1), 0, TODAY + timedelta(days=2)),
    ],
)
def test_customer_next_allowed_day(last: date | None, min_days: int, allowed_from: date | None) -> None:
    assert customer_next_allowed_day(last, TODAY, min_days) == allowed_from


def test_invoices_falling_due_meanwhile_ride_on_the_next_message() -> None:
    """Messaged on day 0 with cadence 3: days 1 and 2 are held, day 3 may carry everything due."""
    allowed = [n for n in range(6) if customer_next_allowed_day(TODAY, TODAY + timedelta(days=n), 3) is None]
    assert allowed == [3, 4, 5]
    assert CADENCE == "cadence"  # the ledger's existing reason, so audits read one word for it


def test_docstring_examples() -> None:
    result = doctest.testmod(zoho_whatsapp.rules.eligibility)
    assert result.attempted > 0
    assert result.failed == 0
