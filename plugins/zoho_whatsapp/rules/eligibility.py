"""Respect what Zoho Books already knows: promises to pay, reminders switched off, tiny balances.

And the customer-level cadence: a customer is not messaged again within
``min_days_between_reminders`` IST days; invoices that fall due meanwhile ride on the next message.
Pure functions over Zoho's own rows; nothing here trusts a value it cannot parse.

>>> promised_payment_date({"payment_expected_date": "2026-07-10"}, date(2026, 7, 9))
datetime.date(2026, 7, 10)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from zoho_whatsapp.rules.policy import CollectionsPolicy, CustomFieldSwitch

__all__ = [
    "BELOW_MINIMUM",
    "CADENCE",
    "PROMISED_PAYMENT_DATE",
    "REMINDERS_DISABLED",
    "Hold",
    "below_minimum",
    "check_invoice",
    "custom_field_value",
    "customer_next_allowed_day",
    "promised_payment_date",
    "reminders_disabled",
]

PROMISED_PAYMENT_DATE = "promised_payment_date"
REMINDERS_DISABLED = "reminders_disabled"
BELOW_MINIMUM = "below_minimum"
CADENCE = "cadence"  # the ledger's existing reason for "reminded too recently"

_FALSE_TEXT = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class Hold:
    """An invoice that gets no reminder today: ``reason`` (the ledger's skip reason) and why.

    ``until`` is the first IST day the hold may lift by itself (a promise that passes), if known.
    """

    reason: str
    detail: str
    until: date | None = None


def promised_payment_date(invoice: Mapping[str, Any], today: date) -> date | None:
    """The customer's promised payment date when it holds reminders on ``today`` (today or later).

    Zoho's ``payment_expected_date`` is ``""`` (or a blank) when there is no promise; a value that
    is not a date is no promise either: it must not silence reminders by accident.
    """
    raw = invoice.get("payment_expected_date")
    if not isinstance(raw, str):
        return None
    try:  # a blank is no promise: fromisoformat("") fails like any other non-date
        promised = date.fromisoformat(raw.strip()[:10])
    except ValueError:
        return None
    return promised if promised >= today else None


def _switched_off(value: Any) -> bool:
    """Zoho's ``payment_reminder_enabled``: only an explicit false turns reminders off."""
    if isinstance(value, bool):
        return value is False
    return isinstance(value, str) and value.strip().casefold() in _FALSE_TEXT


def custom_field_value(invoice: Mapping[str, Any], switch: CustomFieldSwitch) -> Any:
    """The value of ``switch``'s custom field on an invoice row, or ``None`` if it is not there.

    Matches an entry of ``custom_fields`` by ``api_name``, ``label`` (case-insensitive) or
    ``customfield_id``; list rows may also carry the field flat, as ``cf_<api_name>``.
    """
    wanted = switch.name.strip()
    folded = wanted.casefold()
    for entry in invoice.get("custom_fields") or ():
        if not isinstance(entry, Mapping):
            continue
        if (
            entry.get("api_name") == wanted
            or str(entry.get("label", "")).strip().casefold() == folded
            or str(entry.get("customfield_id")) == wanted
        ):
            return entry.get("value")
    return invoice.get(wanted)


def reminders_disabled(
    invoice: Mapping[str, Any], contact: Mapping[str, Any] | None, policy: CollectionsPolicy
) -> str | None:
    """Which switch turns WhatsApp reminders off for this invoice, or ``None`` if none does.

    ``payment_reminder_enabled`` false on the invoice or on its customer (detail objects only),
    or the policy's custom field set to an off value (or boolean false).
    """
    if _switched_off(invoice.get("payment_reminder_enabled")):
        return "payment reminders are disabled on the invoice in Zoho Books"
    if contact is not None and _switched_off(contact.get("payment_reminder_enabled")):
        return "payment reminders are disabled for the customer in Zoho Books"
    switch = policy.reminders_field
    if switch is None:
        return None
    value = custom_field_value(invoice, switch)
    if value is False or (isinstance(value, str) and value.strip().casefold() in switch.off_values):
        return f"custom field {switch.name} is {value!r}"
    return None


def below_minimum(balance: Decimal, currency_code: str, policy: CollectionsPolicy) -> bool:
    """Whether ``balance`` is less than the policy's minimum for ``currency_code`` (equal is enough)."""
    return balance < policy.minimum_for(currency_code)


def check_invoice(
    invoice: Mapping[str, Any],
    *,
    balance: Decimal,
    currency_code: str,
    today: date,
    policy: CollectionsPolicy,
    contact: Mapping[str, Any] | None = None,
) -> Hold | None:
    """The first reason this invoice gets no reminder today, or ``None``.

    Checked in the order a person would want to read: a switch someone flipped in Zoho, then a
    promise, then a balance too small to chase. Zero and negative balances, numbers and the
    invoice's own validity are ``rules.reminders``' concern and are checked before this.
    """
    disabled = reminders_disabled(invoice, contact, policy)
    if disabled is not None:
        return Hold(REMINDERS_DISABLED, disabled)
    promised = promised_payment_date(invoice, today)
    if promised is not None:
        return Hold(PROMISED_PAYMENT_DATE, f"the customer promised to pay by {promised}", promised + timedelta(days=1))
    if below_minimum(balance, currency_code, policy):
        minimum = policy.minimum_for(currency_code)
        return Hold(BELOW_MINIMUM, f"balance {balance} {currency_code} is below the minimum of {minimum}")
    return None


def customer_next_allowed_day(last_messaged_on: date | None, today: date, min_days: int) -> date | None:
    """``None`` when the customer may be messaged on ``today``, else the first IST day they may.

    A customer last messaged on day L may be messaged again from L + ``min_days`` (the ledger's
    cadence: nothing within ``min_days`` IST days of the last claim). A last message dated after
    ``today`` (a backfill behind a later run) blocks ``today`` too.
    """
    if last_messaged_on is None:
        return None
    # Even with no cadence a customer gets one message a day (per currency, in one run).
    allowed_from = last_messaged_on + timedelta(days=max(min_days, 1))
    return None if today >= allowed_from else allowed_from
