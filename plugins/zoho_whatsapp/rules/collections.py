"""One reminder day, decided: which invoices go into which customer's message, and why the others do not.

Pure: the ledger supplies what already happened (the stages each invoice reached, the messages
each customer got lately) and this applies the rules in the order a person reads them:

1. the invoice itself (valid, something owed, a WhatsApp number: ``rules.reminders``), then its
   number (the customer replied STOP: ``opted_out``; WhatsApp said it is not on WhatsApp);
2. what Zoho says holds it (switched off, a promise to pay, below the minimum: ``rules.eligibility``);
3. the stage it is due today, if any (``rules.stages``; otherwise the wait's reason);
4. the customer's cadence: nobody is messaged again within ``min_days_between_reminders``
   (``cadence``; the invoice rides on the customer's next message);
5. one message per customer, currency and number (``rules.statement``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from zoho_whatsapp.rules.eligibility import CADENCE, check_invoice, customer_next_allowed_day
from zoho_whatsapp.rules.messages import Skip
from zoho_whatsapp.rules.phone import mask_phone
from zoho_whatsapp.rules.policy import CollectionsPolicy
from zoho_whatsapp.rules.reminders import InvalidInvoice, OverdueInvoice, cannot_remind
from zoho_whatsapp.rules.stages import StageWait, decide_stage
from zoho_whatsapp.rules.statement import CustomerMessage, build_statements
from zoho_whatsapp.rules.templates import TemplateSpec

__all__ = ["CustomerMessaged", "DayPlan", "last_messaged_on", "plan_day"]

# (IST day the message was claimed, its occasion, its currency): what the cadence reads.
CustomerMessaged = tuple[str, str, "str | None"]


@dataclass(frozen=True)
class DayPlan:
    """The messages to send today and, per invoice id, why every other invoice gets none."""

    messages: tuple[CustomerMessage, ...]
    skips: Mapping[str, Skip]


def last_messaged_on(messaged: Sequence[CustomerMessaged], occasion: str, currency: str) -> date | None:
    """The latest day the customer got a message the cadence counts against ``currency`` on ``occasion``.

    The same occasion's message in another currency is not a repeat: a customer owing in two
    currencies gets one statement in each.
    """
    days = [
        date.fromisoformat(claimed_on)
        for claimed_on, other_occasion, other_currency in messaged
        if not (other_occasion == occasion and other_currency != currency)
    ]
    return max(days) if days else None


def plan_day(
    records: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    today: date,
    cadence_today: date,
    occasion: str,
    policy: CollectionsPolicy,
    templates: Mapping[str, TemplateSpec],
    reached: Mapping[str, Mapping[int, date]],
    messaged: Mapping[str, Sequence[CustomerMessaged]],
    suppressed: Mapping[str, Skip] | None = None,
) -> DayPlan:
    """Decide the day for ``records`` (``(invoice id, recorded invoice)``).

    ``today`` is the reminder date the stages are decided for; ``cadence_today`` the IST day the
    messages would be sent on (the cadence counts real days: a backfill does not message a customer
    again today for each past date). ``reached``: invoice id -> {stage offset: day reached};
    ``messaged``: customer id -> their recent messages; ``suppressed``: number -> the skip its
    suppression means.
    """
    skips: dict[str, Skip] = {}
    due: list[OverdueInvoice] = []
    for invoice_id, record in records:
        try:
            invoice = OverdueInvoice.from_record(record)
        except InvalidInvoice as exc:
            skips[invoice_id] = Skip("invalid_invoice", str(exc))
            continue
        masked = mask_phone(invoice.recipient) if invoice.recipient else None
        unusable = cannot_remind(invoice)
        if unusable is not None:
            skips[invoice_id] = unusable
            continue
        if suppressed and invoice.recipient in suppressed:
            skips[invoice_id] = suppressed[invoice.recipient]
            continue
        contact = None
        if record.get("contact_payment_reminder_enabled") is not None:
            contact = {"payment_reminder_enabled": record["contact_payment_reminder_enabled"]}
        hold = check_invoice(record, balance=invoice.balance, currency_code=invoice.currency_code, today=today,
                             policy=policy, contact=contact)
        if hold is not None:
            skips[invoice_id] = Skip(hold.reason, hold.detail, masked)
            continue
        decision = decide_stage(invoice.due_date, today, reached.get(invoice.invoice_id, {}), policy)
        if isinstance(decision, StageWait):
            detail = decision.detail + (f"; next stage from {decision.next_on}" if decision.next_on else "")
            skips[invoice_id] = Skip(decision.reason, detail, masked)
            continue
        last = last_messaged_on(messaged.get(invoice.customer_id, ()), occasion, invoice.currency_code)
        allowed = customer_next_allowed_day(last, cadence_today, policy.min_days_between_reminders)
        if allowed is not None:
            skips[invoice_id] = Skip(CADENCE, f"stage {decision.key} due; the customer was messaged on {last}, "
                                              f"next message from {allowed}", masked)
            continue
        due.append(replace(invoice, decision=decision))
    statements = build_statements(due, policy, templates)
    for group in statements.skipped:
        for invoice_id in group.invoice_ids:
            skips[invoice_id] = Skip(group.reason, group.detail, mask_phone(group.recipient))
    return DayPlan(statements.messages, skips)
