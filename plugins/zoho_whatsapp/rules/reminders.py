"""Who gets a payment reminder, and what it says. Pure functions: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from zoho_whatsapp.rules.money import format_amount, format_due_date, parse_amount
from zoho_whatsapp.rules.phone import UnusableNumber, mask_phone, to_whatsapp_number
from zoho_whatsapp.rules.templates import TemplateError, TemplateSpec, build_template_message, render_text

REMINDER_KIND = "payment_reminder"


class InvalidInvoice(ValueError):
    """A Zoho invoice row lacks a field the reminder needs, or holds an impossible value."""


@dataclass(frozen=True)
class ReminderPolicy:
    """The rules a reminder run applies; every field is a DAG param."""

    template: str = "payment_reminder"
    language: str = "en"
    default_region: str = "IN"  # the organization's country_code: how bare numbers are read
    locale: str = "en_IN"  # Indian digit grouping: ₹1,48,500.00
    min_days_between_reminders: int = 3


@dataclass(frozen=True)
class OverdueInvoice:
    invoice_id: str
    invoice_number: str
    customer_id: str
    customer_name: str
    currency_code: str
    balance: Decimal
    due_date: date
    phone_candidates: tuple[str, ...]  # most trusted first: the invoice's own, then the contact's

    @classmethod
    def from_zoho(cls, row: dict[str, Any], contact: dict[str, Any] | None = None) -> OverdueInvoice:
        """Build from an invoice list row and (optionally) its customer's contact row."""
        missing = [f for f in ("invoice_id", "invoice_number", "customer_name", "due_date") if not row.get(f)]
        if missing:
            raise InvalidInvoice(f"invoice {row.get('invoice_number') or row.get('invoice_id')!r} has no {', '.join(missing)}")
        try:
            due = date.fromisoformat(str(row["due_date"])[:10])
        except ValueError:
            raise InvalidInvoice(f"invoice {row['invoice_number']}: due_date {row['due_date']!r} is not a date") from None
        try:
            balance = parse_amount(row.get("balance"), "balance")
        except ValueError as exc:
            raise InvalidInvoice(f"invoice {row['invoice_number']}: {exc}") from None
        return cls(
            invoice_id=str(row["invoice_id"]),
            invoice_number=str(row["invoice_number"]),
            customer_id=str(row.get("customer_id") or ""),
            customer_name=str(row["customer_name"]),
            currency_code=str(row.get("currency_code") or "INR").upper(),
            balance=balance,
            due_date=due,
            phone_candidates=phone_candidates(row, contact),
        )


def phone_candidates(invoice: dict[str, Any], contact: dict[str, Any] | None) -> tuple[str, ...]:
    """Numbers to try, in order: the invoice's own mobile/phone, then the contact's.

    Invoices carry no reliable phone field, but when one is there it was typed for this invoice.
    """
    contact = contact or {}
    found = [
        invoice.get("mobile"),
        invoice.get("phone"),
        (invoice.get("billing_address") or {}).get("phone") if isinstance(invoice.get("billing_address"), dict) else None,
        contact.get("mobile"),
        contact.get("phone"),
    ]
    seen: list[str] = []
    for value in found:
        text = str(value).strip() if value is not None else ""
        if text and text not in seen:
            seen.append(text)
    return tuple(seen)


def choose_recipient(candidates: tuple[str, ...], default_region: str) -> str:
    """The first candidate that is a WhatsApp-able mobile, in E.164.

    Raises the first candidate's :class:`UnusableNumber` when none is usable, so the recorded
    reason describes the number a person would look at first.
    """
    if not candidates:
        raise UnusableNumber("no_mobile", None, "neither the invoice nor the contact has a number")
    first_error: UnusableNumber | None = None
    for raw in candidates:
        try:
            return to_whatsapp_number(raw, default_region)
        except UnusableNumber as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


@dataclass(frozen=True)
class Reminder:
    recipient: str
    phone_masked: str
    parameters: dict[str, str]
    text: str


@dataclass(frozen=True)
class Skip:
    reason: str  # no_mobile, invalid_mobile, not_mobile, zero_balance, negative_balance, invalid_invoice, template_error
    detail: str
    phone_masked: str | None = None


def plan_reminder(invoice: OverdueInvoice, policy: ReminderPolicy, spec: TemplateSpec) -> Reminder | Skip:
    """Decide one invoice: a reminder to send, or a skip with its reason. Never guesses a number.

    >>> plan_reminder(invoice, ReminderPolicy(), templates["payment_reminder"])  # doctest: +SKIP
    Reminder(recipient='+919820012345', ...)
    """
    if invoice.balance == 0:
        return Skip("zero_balance", f"{invoice.invoice_number} has nothing left to pay")
    if invoice.balance < 0:
        return Skip("negative_balance", f"{invoice.invoice_number} has a balance of {invoice.balance}")
    try:
        recipient = choose_recipient(invoice.phone_candidates, policy.default_region)
    except UnusableNumber as exc:
        return Skip(exc.reason, str(exc))
    masked = mask_phone(recipient)
    try:
        params = {
            "party_name": invoice.customer_name,
            "invoice_number": invoice.invoice_number,
            "amount_due": format_amount(invoice.balance, invoice.currency_code, policy.locale),
            "due_date": format_due_date(invoice.due_date, policy.locale),
        }
        params = {name: params[name] for name in spec.parameters}
        # Building the body validates every parameter exactly as the send will.
        build_template_message(spec, recipient, params, language=policy.language)
        text = render_text(spec, params)
    except (TemplateError, KeyError, ValueError) as exc:
        return Skip("template_error", f"{invoice.invoice_number}: {exc}", masked)
    return Reminder(recipient=recipient, phone_masked=masked, parameters=params, text=text)
