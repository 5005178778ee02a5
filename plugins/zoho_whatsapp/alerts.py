"""The steps of the instant-alert DAG (``zoho_books_invoice_alerts``): one webhook event → WhatsApp.

A run handles the inbox events its asset events name (one per webhook the triggerer saw), or,
when started by hand or with ``dag.test()``, the ``event_ids`` param or else every pending event.
Each event is planned and sent through the same send ledger, claims and error classification as
the reminder DAG: one ledger row per (organization, invoice, kind, occasion), where the occasion
is the invoice id for ``invoice_created`` and the payment id for ``payment_received``. So Zoho's
retried deliveries, re-announced events and concurrent runs still send each alert once.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from zoho_whatsapp.ledger import RunInfo, SendLedger
from zoho_whatsapp.ledger.ledger import DEFAULT_CONN_ID, OPEN
from zoho_whatsapp.rules.money import format_amount, format_due_date, parse_amount
from zoho_whatsapp.rules.phone import UnusableNumber, mask_phone
from zoho_whatsapp.rules.reminders import choose_recipient
from zoho_whatsapp.rules.templates import TemplateError, TemplateSpec, build_template_message, load_templates
from zoho_whatsapp.webhooks.inbox import HANDLED, WebhookInbox
from zoho_whatsapp.webhooks.payloads import INVOICE_CREATED, PAYMENT_RECEIVED, UNANNOUNCED_STATUSES, AlertEvent

log = logging.getLogger(__name__)

TEMPLATE_FOR = {INVOICE_CREATED: "invoice_created", PAYMENT_RECEIVED: "payment_received"}
NOT_FOUND = 1002  # Zoho: "... does not exist."
MAX_PENDING_PER_RUN = 500


def event_ids_from_asset_events(triggering_asset_events: Mapping[Any, Iterable[Any]] | None) -> list[int]:
    """Inbox ids named by the asset events that started this run (the trigger's payloads), in order."""
    ids: list[int] = []
    for events in (triggering_asset_events or {}).values():
        for event in events:
            extra = getattr(event, "extra", None) or (event.get("extra") if isinstance(event, Mapping) else None) or {}
            payload = extra.get("payload") if isinstance(extra, Mapping) else None
            event_id = payload.get("event_id") if isinstance(payload, Mapping) else None
            if isinstance(event_id, int) and not isinstance(event_id, bool) and event_id not in ids:
                ids.append(event_id)
    return ids


def take_events(
    *, announced: list[int], requested: list[int] | None = None, ledger_conn_id: str = DEFAULT_CONN_ID
) -> list[dict[str, Any]]:
    """Which inbox events this run handles: those its asset events announced, else ``requested``,
    else (a run started by hand) every event still pending. Returns small references for XCom."""
    inbox = WebhookInbox.from_connection(ledger_conn_id)
    try:
        if announced:
            source, rows = "asset events", inbox.get(announced)
            missing = sorted(set(announced) - {r["id"] for r in rows})
            if missing:
                log.warning("asset events name inbox event(s) %s that the inbox does not hold", missing)
        elif requested:
            source, rows = "the event_ids param", inbox.get(requested)
            missing = sorted(set(requested) - {r["id"] for r in rows})
            if missing:
                raise AirflowFailException(f"event_ids {missing} are not in the webhook inbox")
        else:
            source, rows = "the pending inbox", inbox.pending(limit=MAX_PENDING_PER_RUN)
    finally:
        inbox.dispose()
    refs = [{"event_id": r["id"], "event_key": r["event_key"], "kind": r["kind"]} for r in rows]
    log.info(
        "handling %d webhook event(s) from %s: %s",
        len(refs), source, ", ".join(f"#{r['event_id']} {r['event_key']}" for r in refs) or "none",
    )
    return refs


@dataclass
class _Message:
    """One alert to record in the ledger, and either its plan or why it is skipped."""

    invoice_id: str
    invoice_number: str
    customer_id: str | None
    customer_name: str
    source: dict[str, Any]
    parameters: dict[str, str] | None = None
    recipient: str | None = None
    phone_masked: str | None = None
    skip: tuple[str, str] | None = None  # (reason, detail)


class _Resolver:
    """The Zoho lookups an event may need, each made at most once."""

    def __init__(self, hook: Any, country_code: str) -> None:
        self.hook = hook
        self.region = country_code
        self._contacts: dict[str, dict[str, Any]] = {}
        self._invoices: dict[str, dict[str, Any]] = {}

    def invoice(self, invoice_id: str) -> dict[str, Any]:
        if invoice_id not in self._invoices:
            self._invoices[invoice_id] = self.hook.get_invoice(invoice_id)
        return self._invoices[invoice_id]

    def invoice_by_number(self, number: str) -> dict[str, Any] | None:
        rows = self.hook.request("GET", "invoices", params={"invoice_number": number}).get("invoices") or []
        match = [r for r in rows if str(r.get("invoice_number")) == number]
        return match[0] if match else None

    def contact_numbers(self, customer_id: str | None) -> tuple[str, ...]:
        if not customer_id:
            return ()
        if customer_id not in self._contacts:
            from zoho_whatsapp.reminder_run import _contact_numbers

            self._contacts[customer_id] = _contact_numbers(self.hook.get_contact(customer_id))
        numbers = self._contacts[customer_id]
        return tuple(str(n).strip() for n in (numbers.get("mobile"), numbers.get("phone")) if n and str(n).strip())

    def recipient(self, payload_phones: tuple[str, ...], customer: Callable[[], str | None]) -> tuple[str, str]:
        """The payload's number when one is usable; otherwise the contact's (a Zoho call or two).

        Raises :class:`UnusableNumber` for the first candidate when none is usable, as the
        reminder DAG does, so the recorded reason describes the number a person looks at first.
        """
        if payload_phones:
            try:
                number = choose_recipient(payload_phones, self.region)
                return number, mask_phone(number)
            except UnusableNumber:
                pass
        candidates = tuple(dict.fromkeys(payload_phones + self.contact_numbers(customer())))
        number = choose_recipient(candidates, self.region)
        return number, mask_phone(number)


class _NothingToAlert(Exception):
    """Zoho has no record to alert about (deleted since the webhook, or never applied)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def handle_event(
    ref: dict[str, Any],
    *,
    run: RunInfo,
    messages_per_second: float = 20.0,
    zoho_conn_id: str = "zoho_books_default",
    whatsapp_conn_id: str = "whatsapp_default",
    ledger_conn_id: str = DEFAULT_CONN_ID,
) -> dict[str, Any]:
    """Plan and send the alert(s) of one inbox event; mark it handled once every message is settled.

    The payment's remaining balance is read from Zoho here, right before the send, never taken
    from the webhook body.
    """
    inbox = WebhookInbox.from_connection(ledger_conn_id)
    ledger = inbox.ledger
    try:
        rows = inbox.get([ref["event_id"]])
        if not rows:
            raise AirflowFailException(f"webhook event #{ref['event_id']} is not in the inbox")
        row = rows[0]
        summary: dict[str, Any] = {"event_id": row["id"], "event_key": row["event_key"], "kind": row["kind"]}
        if row["status"] == HANDLED:
            log.info("webhook event #%s %s was already handled by %s: nothing to do",
                     row["id"], row["event_key"], row["run_id"])
            return {**summary, "status": "already_handled", "handled_by": row["run_id"]}
        event = AlertEvent.from_json(row["payload"])
        log.info("webhook event #%s: %s (%s payload, %d deliveries, received %s)",
                 row["id"], row["event_key"], event.payload_format, row["deliveries"], row["received_at"])

        from zoho_whatsapp.zoho import ZohoBooksHook

        hook = ZohoBooksHook(zoho_conn_id)
        org = hook.get_organization()
        org_id = org.organization_id
        if event.organization_id and event.organization_id != org_id:
            outcome = {**summary, "status": "skipped", "reason": "other_organization",
                       "detail": f"the event is for organization {event.organization_id}, connection "
                                 f"{zoho_conn_id!r} is for {org_id}"}
            log.warning("%s", outcome["detail"])
            inbox.mark_handled(row["id"], dag_id=run.dag_id, run_id=run.run_id, outcome=outcome)
            return outcome

        templates = load_templates()
        spec = templates.get(TEMPLATE_FOR[event.kind])
        if spec is None:
            raise AirflowFailException(
                f"template {TEMPLATE_FOR[event.kind]!r} is not configured; add it to include/templates/whatsapp_templates.yaml"
            )
        resolver = _Resolver(hook, org.country_code)
        try:
            if event.kind == INVOICE_CREATED:
                occasion, messages = _invoice_created(event, resolver, org.currency_code)
            else:
                occasion, messages = _payment_received(event, resolver, org.currency_code)
        except _NothingToAlert as nothing:  # no ledger row can be keyed: the inbox records why
            outcome = {**summary, "status": "skipped", "reason": nothing.reason, "detail": str(nothing)}
            log.warning("webhook event #%s: %s", row["id"], nothing)
            inbox.mark_handled(row["id"], dag_id=run.dag_id, run_id=run.run_id, outcome=outcome)
            return outcome
        for message in messages:
            if message.skip is None:
                _plan(message, spec)
        summary["occasion"] = occasion
        settled = _record_plan_send(
            ledger, event.kind, org_id, occasion, messages, spec, run, messages_per_second,
            whatsapp_conn_id=whatsapp_conn_id,
        )
        summary.update(settled)
        if settled["open"]:
            log.warning("webhook event #%s: %d message(s) are still being sent by another run; it will mark "
                        "the event handled", row["id"], settled["open"])
            return {**summary, "status": "in_flight"}
        inbox.mark_handled(row["id"], dag_id=run.dag_id, run_id=run.run_id, outcome=summary)
        return {**summary, "status": "handled"}
    finally:
        inbox.dispose()


def _invoice_created(event: AlertEvent, resolver: _Resolver, org_currency: str) -> tuple[str, list[_Message]]:
    invoice_id = event.invoice_id
    live: dict[str, Any] | None = None
    if invoice_id is None:  # the flat payload carries the number: the ledger keys on Zoho's id
        live = resolver.invoice_by_number(str(event.invoice_number))
        if live is None:
            raise _NothingToAlert("invoice_not_found", f"Zoho has no invoice numbered {event.invoice_number}")
        invoice_id = str(live["invoice_id"])
    customer_id = event.customer_id or (str(live["customer_id"]) if live and live.get("customer_id") else None)
    message = _Message(
        invoice_id=invoice_id,
        invoice_number=str(event.invoice_number or (live or {}).get("invoice_number") or invoice_id),
        customer_id=customer_id,
        customer_name=str(event.customer_name),
        source={"event": event.event_key, "payload_format": event.payload_format, "status": event.status,
                "total": event.total, "due_date": event.due_date, "currency_code": event.currency_code},
    )
    status = str(event.status or (live or {}).get("status") or "").lower()
    if status in UNANNOUNCED_STATUSES:
        message.skip = (f"invoice_{status}", f"{message.invoice_number} is {status}: customers hear of issued invoices only")
        return invoice_id, [message]
    currency = event.currency_code or str((live or {}).get("currency_code") or org_currency)
    try:
        message.parameters = {
            "party_name": str(event.customer_name),
            "invoice_number": message.invoice_number,
            "invoice_amount": format_amount(Decimal(str(event.total)), currency),
            "due_date": format_due_date(str(event.due_date)),
        }
    except ValueError as exc:
        message.skip = ("invalid_invoice", f"{message.invoice_number}: {exc}")
        return invoice_id, [message]
    _choose_number(message, resolver, event.phones, lambda: customer_id or _customer_of(resolver, invoice_id))
    return invoice_id, [message]


def _payment_received(event: AlertEvent, resolver: _Resolver, org_currency: str) -> tuple[str, list[_Message]]:
    from zoho_whatsapp.zoho.errors import ZohoApiError

    payment_id = str(event.payment_id)
    try:
        payment = resolver.hook.get_customer_payment(payment_id)
    except ZohoApiError as exc:
        if exc.code != NOT_FOUND:
            raise
        payment = {}
    if not payment:
        raise _NothingToAlert("payment_not_found", f"Zoho has no customer payment {payment_id} (deleted since the webhook?)")
    customer_id = str(payment.get("customer_id") or event.customer_id or "") or None
    applied = [a for a in payment.get("invoices") or [] if a.get("invoice_id")]
    if not applied:
        raise _NothingToAlert("not_applied", f"payment {payment.get('payment_number') or payment_id} is not applied to any invoice")
    messages: list[_Message] = []
    for entry in applied:
        invoice_id = str(entry["invoice_id"])
        invoice = resolver.invoice(invoice_id)  # the live balance, read now rather than trusted from the body
        number = str(invoice.get("invoice_number") or entry.get("invoice_number") or invoice_id)
        party = str(invoice.get("customer_name") or payment.get("customer_name") or event.customer_name or "")
        message = _Message(
            invoice_id=invoice_id,
            invoice_number=number,
            customer_id=customer_id,
            customer_name=party,
            source={"event": event.event_key, "payload_format": event.payload_format, "payment_id": payment_id,
                    "payment_number": payment.get("payment_number"), "amount_applied": entry.get("amount_applied"),
                    "live_balance": invoice.get("balance"), "payload_amount": event.amount},
        )
        currency = str(invoice.get("currency_code") or payment.get("currency_code") or event.currency_code or org_currency)
        try:
            received = parse_amount(entry.get("amount_applied", payment.get("amount")), "amount_applied")
            balance = parse_amount(invoice.get("balance"), "balance")
            message.parameters = {
                "party_name": party,
                "amount_received": format_amount(received, currency),
                "invoice_number": number,
                "balance_due": format_amount(max(balance, Decimal(0)), currency),
            }
        except ValueError as exc:
            message.skip = ("invalid_invoice", f"{number}: {exc}")
            messages.append(message)
            continue
        _choose_number(message, resolver, event.phones, lambda: customer_id)
        messages.append(message)
    return payment_id, messages


def _customer_of(resolver: _Resolver, invoice_id: str) -> str | None:
    customer = resolver.invoice(invoice_id).get("customer_id")
    return str(customer) if customer else None


def _choose_number(
    message: _Message, resolver: _Resolver, phones: tuple[str, ...], customer: Callable[[], str | None]
) -> None:
    try:
        message.recipient, message.phone_masked = resolver.recipient(phones, customer)
    except UnusableNumber as exc:
        message.skip = (exc.reason, str(exc))


def _plan(message: _Message, spec: TemplateSpec) -> None:
    """Build the body now, exactly as the send will: a message that cannot be sent is skipped here."""
    try:
        params = {name: (message.parameters or {})[name] for name in spec.parameters}
        build_template_message(spec, str(message.recipient), params, language=spec.language)
        message.parameters = params
    except (TemplateError, KeyError, ValueError) as exc:
        message.skip = ("template_error", f"{message.invoice_number}: {exc}")


def _record_plan_send(
    ledger: SendLedger,
    kind: str,
    org_id: str,
    occasion: str,
    messages: list[_Message],
    spec: TemplateSpec,
    run: RunInfo,
    messages_per_second: float,
    *,
    whatsapp_conn_id: str,
) -> dict[str, Any]:
    from zoho_whatsapp.whatsapp.batch import BatchRef, BatchSender
    from zoho_whatsapp.whatsapp.hook import WhatsAppHook

    records = [
        {"invoice_id": m.invoice_id, "invoice_number": m.invoice_number, "customer_id": m.customer_id,
         "customer_name": m.customer_name, **m.source}
        for m in messages
    ]
    ledger.record_fetched(organization_id=org_id, kind=kind, occasion=occasion, invoices=records, run=run)
    by_invoice = {m.invoice_id: m for m in messages}
    fetched = ledger.rows(organization_id=org_id, kind=kind, occasion=occasion, status=("fetched",))
    plans, skips = [], []
    for row in fetched:
        message = by_invoice.get(row["invoice_id"])
        if message is None:
            continue
        if message.skip is not None:
            skips.append({"id": row["id"], "reason": message.skip[0], "detail": message.skip[1],
                          "phone_masked": message.phone_masked})
        else:
            plans.append({"id": row["id"], "recipient": message.recipient, "phone_masked": message.phone_masked,
                          "template_name": spec.name, "template_language": spec.language,
                          "parameters": message.parameters})
    ledger.plan_many(plans, skips)
    batches = ledger.assign_batches(organization_id=org_id, kind=kind, occasion=occasion, batch_size=1000)
    counts: dict[str, int] = {}
    # Rows left "sending" by an earlier, dead try of this task sit in batch 0 too: the sender
    # turns them into "unknown" rather than resending them.
    for batch in sorted(set(batches) | {0}):
        sender = BatchSender(
            WhatsAppHook(whatsapp_conn_id), ledger, load_templates(), run,
            messages_per_second=messages_per_second, max_workers=2, min_days_between=0,
        )
        counts.update(sender.send(BatchRef(organization_id=org_id, kind=kind, occasion=occasion, batch=batch)).as_dict())
    rows = ledger.rows(organization_id=org_id, kind=kind, occasion=occasion)
    status = Counter(r["status"] for r in rows)
    report = {
        "sent": status.get("sent", 0),
        "skipped": status.get("skipped", 0),
        "failed": status.get("failed", 0),
        "unknown": status.get("unknown", 0),
        "open": sum(status.get(s, 0) for s in OPEN),
        "messages": [
            {"invoice_number": r["invoice_number"], "status": r["status"], "reason": r["reason"],
             "to": r["phone_masked"], "error_code": r["error_code"]}
            for r in rows
        ],
    }
    for r in rows:
        if r["status"] == "sent":
            log.info("%s alert for %s sent to %s (%s)", kind, r["invoice_number"], r["phone_masked"],
                     json.loads(r["parameters"] or "{}"))
        elif r["status"] in ("skipped", "failed", "unknown"):
            log.warning("%s alert for %s: %s %s %s", kind, r["invoice_number"], r["status"], r["reason"] or "",
                        r["error_message"] or "")
    if counts:
        log.info("send counts: %s", counts)
    return report
