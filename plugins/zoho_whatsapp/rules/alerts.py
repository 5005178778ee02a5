"""Which webhook event gets which alert, and what it says. Pure functions: no I/O.

A webhook only says that something happened; everything an alert says, and the number it goes
to, comes from the records Zoho Books returns for the event's identifiers. The caller reads them
(with the organization's token) and passes them in: ``None`` where Zoho has no such record, and
the customer's numbers as a function, called only when a message would go out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from zoho_whatsapp.rules.messages import Planned, Skip, choose_recipient, plan_message
from zoho_whatsapp.rules.money import format_amount, format_due_date, parse_amount
from zoho_whatsapp.rules.phone import UnusableNumber
from zoho_whatsapp.rules.templates import TemplateSpec

__all__ = [
    "ALERT_KINDS", "DEFAULT_HOURLY_CAP", "INVOICE_CREATED", "NOT_IN_ZOHO", "PAYMENT_RECEIVED", "TEMPLATE_FOR",
    "UNANNOUNCED_STATUSES", "Alert", "AlertContext", "NothingToAlert", "invoice_created", "payment_received",
]

INVOICE_CREATED = "invoice_created"
PAYMENT_RECEIVED = "payment_received"
ALERT_KINDS = (INVOICE_CREATED, PAYMENT_RECEIVED)
TEMPLATE_FOR = {INVOICE_CREATED: "invoice_created", PAYMENT_RECEIVED: "payment_received"}
# A "record created" rule also fires for drafts; a customer hears only of issued invoices.
UNANNOUNCED_STATUSES = frozenset({"draft", "void"})
# Alerts one number may receive in a rolling hour: a flood of events cannot become a flood of messages.
DEFAULT_HOURLY_CAP = 5
NOT_IN_ZOHO = "not_in_zoho"

Numbers = Callable[[], Sequence[str]]


class NothingToAlert(Exception):
    """The event names no record an alert could be about: recorded on the event, nothing sent."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class AlertContext:
    """The connected organization: how its numbers are read and which currency it bills in by default."""

    region: str
    currency: str
    locale: str = "en_IN"


@dataclass(frozen=True)
class Alert:
    """One alert: what the ledger records of it (Zoho's identifiers and facts) and what planning decided."""

    record: dict[str, Any]
    decision: Planned | Skip


def invoice_created(
    invoice: Mapping[str, Any] | None, numbers: Numbers, spec: TemplateSpec, org: AlertContext, *, named: str
) -> Alert:
    """The alert for an issued invoice; ``named`` is how the event named it (for the skip's detail)."""
    if not invoice or not invoice.get("invoice_id"):
        raise NothingToAlert(NOT_IN_ZOHO, f"Zoho Books has no invoice {named} in this organization")
    number = str(invoice.get("invoice_number") or invoice["invoice_id"])
    record = _record(invoice, number, status=invoice.get("status"), total=invoice.get("total"),
                     due_date=invoice.get("due_date"), currency_code=invoice.get("currency_code"))
    status = str(invoice.get("status") or "").lower()
    if status in UNANNOUNCED_STATUSES:
        return Alert(record, Skip(f"invoice_{status}", f"{number} is {status}: customers hear of issued invoices only"))
    try:
        params = {
            "party_name": str(invoice.get("customer_name") or ""),
            "invoice_number": number,
            "invoice_amount": format_amount(parse_amount(invoice.get("total"), "total"), _currency(org, invoice)),
            "due_date": format_due_date(str(invoice.get("due_date") or ""), org.locale),
        }
    except ValueError as exc:
        return Alert(record, Skip("invalid_invoice", f"{number}: {exc}"))
    return Alert(record, _to_customer(spec, org, numbers, params, number))


def payment_received(
    payment: Mapping[str, Any] | None,
    invoices: Mapping[str, Mapping[str, Any] | None],
    numbers: Numbers,
    spec: TemplateSpec,
    org: AlertContext,
    *,
    named: str,
) -> list[Alert]:
    """One alert per invoice the payment was applied to, each with that invoice's balance as Zoho has it now.

    ``invoices`` maps each applied invoice id to the invoice as read just now (``None``: not in Zoho).
    """
    if not payment or not payment.get("payment_id"):
        raise NothingToAlert(NOT_IN_ZOHO, f"Zoho Books has no customer payment {named} in this organization")
    label = payment.get("payment_number") or payment["payment_id"]
    applied = [entry for entry in payment.get("invoices") or [] if entry.get("invoice_id")]
    if not applied:
        raise NothingToAlert("not_applied", f"payment {label} is not applied to any invoice")
    alerts = []
    for entry in applied:
        invoice = invoices.get(str(entry["invoice_id"])) or {}
        number = str(invoice.get("invoice_number") or entry.get("invoice_number") or entry["invoice_id"])
        record = _record(
            {"invoice_id": entry["invoice_id"], "customer_id": payment.get("customer_id"),
             "customer_name": invoice.get("customer_name") or payment.get("customer_name")},
            number, payment_id=str(payment["payment_id"]), payment_number=payment.get("payment_number"),
            amount_applied=entry.get("amount_applied"), live_balance=invoice.get("balance"),
            currency_code=invoice.get("currency_code") or payment.get("currency_code"),
        )
        if not invoice:
            alerts.append(Alert(record, Skip(NOT_IN_ZOHO, f"{number} is no longer in Zoho Books")))
            continue
        currency = _currency(org, invoice, payment)
        try:
            params = {
                "party_name": str(record["customer_name"] or ""),
                "amount_received": format_amount(
                    parse_amount(entry.get("amount_applied", payment.get("amount")), "amount_applied"), currency),
                "invoice_number": number,
                "balance_due": format_amount(max(parse_amount(invoice.get("balance"), "balance"), Decimal(0)), currency),
            }
        except ValueError as exc:
            alerts.append(Alert(record, Skip("invalid_invoice", f"{number}: {exc}")))
            continue
        alerts.append(Alert(record, _to_customer(spec, org, numbers, params, number)))
    return alerts


def _record(source: Mapping[str, Any], number: str, **facts: Any) -> dict[str, Any]:
    record = {"invoice_id": str(source["invoice_id"]), "invoice_number": number,
              "customer_id": str(source["customer_id"]) if source.get("customer_id") else None,
              "customer_name": source.get("customer_name")}
    return {**record, **facts}


def _currency(org: AlertContext, *records: Mapping[str, Any]) -> str:
    return next((str(r["currency_code"]) for r in records if r.get("currency_code")), org.currency)


def _to_customer(spec: TemplateSpec, org: AlertContext, numbers: Numbers, params: dict[str, str], label: str) -> Planned | Skip:
    try:
        recipient = choose_recipient(numbers(), org.region)
    except UnusableNumber as exc:
        return Skip(exc.reason, f"{label}: {exc.masked}")
    return plan_message(spec, spec.language, recipient, params, label)
