"""The invoices a reminder run considers, and whether one can be reminded at all. Pure functions: no I/O.

Which stage an invoice is due (``rules.stages``), what Zoho says holds it (``rules.eligibility``) and
the one message a customer gets for all of them (``rules.statement``) build on :class:`OverdueInvoice`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from zoho_whatsapp.rules.messages import Skip, choose_recipient
from zoho_whatsapp.rules.money import parse_amount
from zoho_whatsapp.rules.phone import UnusableNumber
from zoho_whatsapp.rules.stages import StageDecision

REMINDER_KIND = "payment_reminder"
# What the ledger keeps of an invoice (its ``source``): what a reminder says, what Zoho says may hold it
# (a promise to pay, reminders switched off), and for the audit its status and total. Not Zoho's
# payment link (``invoice_url``), nor the numbers as typed.
RECORD_FIELDS = (
    "invoice_id", "invoice_number", "customer_id", "customer_name", "status", "due_date", "currency_code",
    "total", "balance", "payment_expected_date", "payment_reminder_enabled",
)
# Of each custom field, only what names it and its value (the reminders switch is matched on these).
CUSTOM_FIELD_KEYS = ("api_name", "label", "customfield_id", "value")


class InvalidInvoice(ValueError):
    """A Zoho invoice row lacks a field the reminder needs, or holds an impossible value."""


def overdue_record(
    invoice: Mapping[str, Any], contact_numbers: Sequence[str], region: str, contact: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """What the ledger records of one overdue invoice: :data:`RECORD_FIELDS` and the number a reminder goes to.

    The number is chosen here, while the numbers typed into Zoho are at hand, so the ledger keeps
    only the E.164 ``recipient`` (or, masked, why there is none). ``region`` is the organization's
    ``country_code``: how numbers without a country code are read. ``contact``'s
    ``payment_reminder_enabled``, when the listing carries it, is kept as
    ``contact_payment_reminder_enabled``.
    """
    record = {name: invoice[name] for name in RECORD_FIELDS if invoice.get(name) is not None}
    fields = [{k: f[k] for k in CUSTOM_FIELD_KEYS if k in f} for f in invoice.get("custom_fields") or ()
              if isinstance(f, Mapping)]
    if fields:
        record["custom_fields"] = fields
    if contact is not None and contact.get("payment_reminder_enabled") is not None:
        record["contact_payment_reminder_enabled"] = contact["payment_reminder_enabled"]
    try:
        record["recipient"] = choose_recipient(phone_candidates(invoice, contact_numbers), region)
    except UnusableNumber as exc:
        record["unusable_number"] = {"reason": exc.reason, "detail": exc.masked}
    return record


def phone_candidates(invoice: Mapping[str, Any], contact_numbers: Sequence[str]) -> tuple[str, ...]:
    """Numbers to try, in order: the invoice's own mobile/phone, then the contact's.

    Invoices carry no reliable phone field, but when one is there it was typed for this invoice.
    """
    billing = invoice.get("billing_address")
    found = [
        invoice.get("mobile"),
        invoice.get("phone"),
        billing.get("phone") if isinstance(billing, Mapping) else None,
        *contact_numbers,
    ]
    return tuple(dict.fromkeys(str(v).strip() for v in found if v is not None and str(v).strip()))


@dataclass(frozen=True)
class OverdueInvoice:
    """An open invoice as a reminder sees it (overdue, or due soon for a pre-due stage).

    ``decision`` is the stage it is due today once the stage rules have said so: only such an
    invoice goes into a message (``rules.statement``).
    """

    invoice_id: str
    invoice_number: str
    customer_id: str
    customer_name: str
    currency_code: str
    balance: Decimal
    due_date: date
    recipient: str | None  # E.164, or None with the reason in ``unusable_number``
    decision: StageDecision | None = None
    unusable_number: Skip | None = None

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> OverdueInvoice:
        """Build from what :func:`overdue_record` recorded."""
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
        unusable = row.get("unusable_number") or {}  # pragma: no mutate - None and {} are both "usable"
        return cls(
            invoice_id=str(row["invoice_id"]),
            invoice_number=str(row["invoice_number"]),
            customer_id=str(row.get("customer_id") or ""),
            customer_name=str(row["customer_name"]),
            currency_code=str(row.get("currency_code") or "INR").upper(),
            balance=balance,
            due_date=due,
            recipient=row.get("recipient"),
            unusable_number=Skip(unusable["reason"], unusable["detail"]) if unusable else None,
        )


def cannot_remind(invoice: OverdueInvoice) -> Skip | None:
    """Why this invoice can never be reminded as it is (nothing owed, no number), or ``None``."""
    if invoice.balance == 0:
        return Skip("zero_balance", f"{invoice.invoice_number} has nothing left to pay")
    if invoice.balance < 0:  # pragma: no mutate - <= is the same rule: a zero balance returned above
        return Skip("negative_balance", f"{invoice.invoice_number} has a balance of {invoice.balance}")
    if invoice.recipient is None:
        return invoice.unusable_number or Skip("no_mobile", f"{invoice.invoice_number}: no number recorded")
    return None
