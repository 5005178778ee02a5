"""One message per customer per currency per day: the statement a collections team would send.

All of a customer's invoices due a reminder today go in one message: how many, the total in
their currency (never a sum across currencies), the oldest due date and the invoice numbers -
all of them while the body fits Meta's limit, else "INV-1, INV-2 and 9 more". The template is
that of the most advanced stage among them; one invoice gets the single-invoice wording.

>>> list_invoice_numbers(["INV-1", "INV-2", "INV-3", "INV-4"], 23)
('INV-1, INV-2 and 2 more', 2)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from zoho_whatsapp.rules.money import format_amount, format_due_date
from zoho_whatsapp.rules.phone import mask_phone
from zoho_whatsapp.rules.policy import CollectionsPolicy
from zoho_whatsapp.rules.reminders import OverdueInvoice
from zoho_whatsapp.rules.stages import StageDecision
from zoho_whatsapp.rules.templates import (
    MAX_PARAMETER_CHARS,
    TemplateError,
    TemplateSpec,
    build_template_message,
    render_text,
)

__all__ = [
    "MAX_RENDERED_BODY_CHARS",
    "CustomerMessage",
    "DueInvoice",
    "GroupSkip",
    "Statements",
    "build_customer_message",
    "build_statements",
    "group_key",
    "list_invoice_numbers",
]

# Meta: a template body holds at most 1,024 characters, and that counts the text the parameters
# put in, not just the template as approved (Meta's template guidelines as relayed by BSP docs:
# docs.bird.com "Text templates" - body "max 1024 characters", variables included; Messangi
# "Creating & Sending WhatsApp Text Message Template" - "when sending the message template, the
# total number of characters may not exceed 1024"). A longer message is refused, so the
# invoice list is cut to fit the rendered body, not just the 1,024-character parameter cap.
MAX_RENDERED_BODY_CHARS = 1024
TEMPLATE_ERROR = "template_error"


# An invoice that passed every rule and is due ``decision``'s stage today: the reminders' one invoice
# type, with its ``decision`` and ``recipient`` set.
DueInvoice = OverdueInvoice


@dataclass(frozen=True)
class CustomerMessage:
    """One WhatsApp message: a customer's due invoices in one currency, to one number."""

    customer_id: str
    customer_name: str
    recipient: str
    phone_masked: str
    currency_code: str
    invoice_ids: tuple[str, ...]  # oldest due first, as listed in the message
    invoice_numbers: tuple[str, ...]
    invoice_stages: Mapping[str, int]  # invoice_id -> the stage offset that invoice reaches
    stage: StageDecision  # the most advanced: its template is used
    template_name: str
    language: str
    parameters: Mapping[str, str]
    text: str  # as the customer reads it
    total: Decimal
    oldest_due_date: date
    listed: int  # how many invoice numbers the text names; the rest are "and N more"

    @property
    def invoice_count(self) -> int:
        return len(self.invoice_ids)


@dataclass(frozen=True)
class GroupSkip:
    """Invoices that could not be put into a message (the ledger records each as skipped)."""

    customer_id: str
    currency_code: str
    recipient: str
    invoice_ids: tuple[str, ...]
    reason: str
    detail: str


@dataclass(frozen=True)
class Statements:
    messages: tuple[CustomerMessage, ...]
    skipped: tuple[GroupSkip, ...]


def group_key(invoice: DueInvoice) -> tuple[str, str]:
    """Invoices sharing this key go in one message: customer and currency (one message per customer a
    day; never a sum of two currencies). An invoice that carries its own number (typed for that invoice,
    see ``rules.reminders.phone_candidates``) still rides on its customer's message: see
    :func:`message_recipient`."""
    return invoice.customer_id, invoice.currency_code.strip().upper()


def message_recipient(invoices: Sequence[DueInvoice]) -> str:
    """The number a customer's message goes to: the one most of its invoices resolve to; on a tie, the
    oldest invoice's (``invoices`` in due-date order)."""
    counts = Counter(i.recipient for i in invoices)
    return str(max(invoices, key=lambda i: counts[i.recipient]).recipient)


def _order(invoice: DueInvoice) -> tuple[date, str, str]:
    return invoice.due_date, invoice.invoice_number, invoice.invoice_id


def list_invoice_numbers(numbers: Sequence[str], max_chars: int) -> tuple[str, int]:
    """All ``numbers`` comma-separated if that fits in ``max_chars``, else as many as fit and
    "and N more"; returns the text and how many numbers it names.

    Raises ``TemplateError`` if not even "N invoices" fits.
    """
    total = len(numbers)
    if total == 0:
        raise ValueError("no invoice numbers to list")
    # Length of ", ".join(numbers[:k]) for every k, without building each string.
    joined = [0] * (total + 1)
    for k, number in enumerate(numbers, start=1):
        joined[k] = joined[k - 1] + len(number) + (2 if k > 1 else 0)
    if joined[total] <= max_chars:
        return ", ".join(numbers), total
    for k in range(total - 1, 0, -1):
        tail = f" and {total - k} more"
        if joined[k] + len(tail) <= max_chars:
            return ", ".join(numbers[:k]) + tail, k
    fallback = f"{total} invoices"
    if len(fallback) <= max_chars:
        return fallback, 0
    raise TemplateError(f"no room for the invoice list ({max_chars} characters left)", parameters=("invoice_numbers",))


def build_customer_message(
    invoices: Sequence[DueInvoice], policy: CollectionsPolicy, templates: Mapping[str, TemplateSpec]
) -> CustomerMessage:
    """The message for one group (see ``group_key``); raises ``TemplateError`` or ``ValueError``."""
    if not invoices:
        raise ValueError("a message needs at least one invoice")
    keys = {group_key(i) for i in invoices}
    if len(keys) > 1:
        raise ValueError(f"one message cannot mix customers or currencies: {sorted(keys)}")
    ids = [i.invoice_id for i in invoices]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise ValueError(f"invoice(s) listed twice: {', '.join(twice)}")
    not_owed = [i.invoice_number for i in invoices if i.balance <= 0]
    if not_owed:
        raise ValueError(f"invoice(s) with nothing to pay cannot be reminded: {', '.join(not_owed)}")
    undecided = [i.invoice_number for i in invoices if i.decision is None or not i.recipient]
    if undecided:
        raise ValueError(f"invoice(s) with no stage due or no number cannot be reminded: {', '.join(undecided)}")

    ordered = sorted(invoices, key=_order)
    first = ordered[0]
    customer_id, currency = group_key(first)
    recipient = message_recipient(ordered)
    stage = max((i.decision for i in ordered), key=lambda d: d.offset)
    single = len(ordered) == 1
    template_name = stage.stage.template if single else stage.stage.template_multi
    spec = templates.get(template_name)
    if spec is None:
        raise TemplateError(f"stage {stage.stage.key} names a template that is not defined", template=template_name)

    total = sum((i.balance for i in ordered), Decimal(0))
    numbers = [i.invoice_number for i in ordered]
    values = {
        "party_name": first.customer_name,
        "invoice_number": first.invoice_number,
        "amount_due": format_amount(first.balance, currency, policy.locale),
        "due_date": format_due_date(first.due_date, policy.locale),
        "invoice_count": str(len(ordered)),
        "total_due": format_amount(total, currency, policy.locale),
        "oldest_due_date": format_due_date(first.due_date, policy.locale),
    }
    unknown = [p for p in spec.parameters if p not in values and p != "invoice_numbers"]
    if unknown:
        raise TemplateError(f"asks for values a reminder does not have: {', '.join(unknown)}", template=spec.name)
    listed = 0
    if "invoice_numbers" in spec.parameters:
        others = {p: values[p] for p in spec.parameters if p != "invoice_numbers"}
        fixed = len(render_text(spec, {**others, "invoice_numbers": "#"})) - 1
        room = min(MAX_PARAMETER_CHARS, MAX_RENDERED_BODY_CHARS - fixed)
        values["invoice_numbers"], listed = list_invoice_numbers(numbers, room)
    elif "invoice_number" in spec.parameters:
        listed = 1
    parameters = {p: values[p] for p in spec.parameters}
    build_template_message(spec, recipient, parameters, language=policy.language)  # validates as the send will
    text = render_text(spec, parameters)
    if len(text) > MAX_RENDERED_BODY_CHARS:
        raise TemplateError(
            f"the message is {len(text)} characters, Meta allows {MAX_RENDERED_BODY_CHARS}", template=spec.name
        )
    return CustomerMessage(
        customer_id=customer_id,
        customer_name=first.customer_name,
        recipient=recipient,
        phone_masked=mask_phone(recipient),
        currency_code=currency,
        invoice_ids=tuple(i.invoice_id for i in ordered),
        invoice_numbers=tuple(numbers),
        invoice_stages={i.invoice_id: i.decision.offset for i in ordered},
        stage=stage,
        template_name=spec.name,
        language=policy.language,
        parameters=parameters,
        text=text,
        total=total,
        oldest_due_date=first.due_date,
        listed=listed,
    )


def build_statements(
    invoices: Iterable[DueInvoice], policy: CollectionsPolicy, templates: Mapping[str, TemplateSpec]
) -> Statements:
    """Group due invoices into customer messages; a group that cannot be built is skipped whole.

    Messages come ordered by customer name, customer id and currency, so a run is reproducible.
    """
    groups: dict[tuple[str, str], list[DueInvoice]] = {}
    seen: set[str] = set()
    for invoice in invoices:
        if invoice.invoice_id in seen:
            raise ValueError(f"invoice {invoice.invoice_number} ({invoice.invoice_id}) given twice")
        seen.add(invoice.invoice_id)
        groups.setdefault(group_key(invoice), []).append(invoice)
    messages: list[CustomerMessage] = []
    skipped: list[GroupSkip] = []
    for key in sorted(groups, key=lambda k: (min(i.customer_name for i in groups[k]), k)):
        group = groups[key]
        try:
            messages.append(build_customer_message(group, policy, templates))
        except (TemplateError, ValueError) as exc:
            ids = tuple(i.invoice_id for i in sorted(group, key=_order))
            recipient = message_recipient(sorted(group, key=_order)) if all(i.recipient for i in group) else ""
            skipped.append(GroupSkip(key[0], key[1], recipient, ids, TEMPLATE_ERROR, str(exc)))
    return Statements(tuple(messages), tuple(skipped))
