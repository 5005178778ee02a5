"""The steps of the instant-alert DAG (``zoho_books_invoice_alerts``): one webhook event → WhatsApp.

A run handles the inbox events its asset events name (one per webhook the triggerer saw), or,
when started by hand or with ``dag.test()``, the ``event_ids`` param or else every pending event.

A webhook is a notification, not an instruction: only its identifiers are used (invoice id or
number, payment id, organization id). What an alert says and the number it goes to are read from
Zoho Books with the organization's token, and an event naming a record Zoho does not have sends
nothing (``not_in_zoho``). The messages then go through the send pipeline like reminders: one
ledger row per (organization, invoice, kind, occasion), where the occasion is the invoice id for
``invoice_created`` and the payment id for ``payment_received``, so Zoho's retried deliveries,
re-announced events and concurrent runs still send each alert once; and at most
``max_per_recipient_hour`` alerts reach one number in a rolling hour.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException

from zoho_whatsapp import pipeline
from zoho_whatsapp.ledger import RecipientCap, RunInfo, SendKey
from zoho_whatsapp.ledger.ledger import DEFAULT_CONN_ID, DEFAULT_NOT_ON_WHATSAPP_DAYS
from zoho_whatsapp.ledger.schema import webhook_events
from zoho_whatsapp.rules import alerts as rules
from zoho_whatsapp.rules.templates import load_templates
from zoho_whatsapp.webhooks.inbox import HANDLED, RECEIVED, WebhookInbox
from zoho_whatsapp.webhooks.payloads import AlertEvent
from zoho_whatsapp.zoho import Organization, ZohoBooksHook
from zoho_whatsapp.zoho.errors import ZohoNotFound

log = logging.getLogger(__name__)

MAX_PENDING_PER_RUN = 500
MAX_PARALLEL_GROUPS = 4  # send_alert tasks of one run: its max_active_tis_per_dagrun


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
    *,
    announced: list[int],
    requested: list[int] | None = None,
    run: RunInfo | None = None,
    ledger_conn_id: str = DEFAULT_CONN_ID,
    zoho_conn_id: str = ZohoBooksHook.default_conn_name,
) -> list[dict[str, Any]]:
    """Which inbox events this run handles: those its asset events announced, else ``requested``,
    else (a run started by hand) every event still pending. Returns small references for XCom,
    each with the connected organization, resolved once for the run.

    A run started by asset events (``run`` given) also takes every pending event that no run has taken
    yet (:func:`_take_untaken`): an event the scheduler left out of every run is handled by the next
    run instead of waiting for its re-announcement, and a backlog is handled by the first run to start.
    """
    inbox = WebhookInbox.from_connection(ledger_conn_id)
    try:
        if announced and run is not None:
            source, rows = "asset events and untaken pending events", _take_untaken(inbox, announced, run)
        elif announced:
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
    log.info(
        "handling %d webhook event(s) from %s: %s",
        len(rows), source, ", ".join(f"#{r['id']} {r['event_key']}" for r in rows) or "none",
    )
    if not rows:
        return []
    org = asdict(ZohoBooksHook(zoho_conn_id).get_organization())
    return [{"event_id": r["id"], "event_key": r["event_key"], "kind": r["kind"], "organization": org} for r in rows]


def _take_untaken(inbox: WebhookInbox, announced: list[int], run: RunInfo) -> list[dict[str, Any]]:
    """Stamp ``run`` on every pending event no run has taken, and on a re-announced one it was announced.

    Why: Airflow keeps one ``asset_dag_run_queue`` row per asset and DAG. An asset event registered while
    the scheduler is creating a run from that row finds the row there (nothing is queued), is not in the
    run (its timestamp is after the row's), and the row is then deleted: no run names the event, which
    would wait ``redeliver_after`` (600 s) for its re-announcement. It is in the inbox before that run
    starts, though, and nobody has taken it: this run takes it. The stamp (the ``run_id`` column, which
    the handling run overwrites) is a conditional update, so two runs never both take an untaken event:
    under a backlog the first run takes it all and the runs started for the other events find them taken
    (no work twice). A re-announced event (its first run failed) is taken again by the run it was
    announced to. Two runs handling one event would still send once: the ledger's claim decides.
    """
    table = webhook_events
    reannounced = sa.and_(table.c.id.in_(announced), table.c.announcements > 1)
    mine = sa.or_(table.c.run_id.is_(None), table.c.run_id == run.run_id, reannounced)  # run_id: a retry's own
    taken: list[int] = []
    with inbox.engine.connect() as conn:
        candidates = conn.execute(sa.select(table.c.id).where(table.c.status == RECEIVED, mine)
                                  .order_by(table.c.id).limit(MAX_PENDING_PER_RUN)).scalars().all()
    with inbox.engine.begin() as conn:  # a write transaction from its start (see WebhookInbox.announce)
        for event_id in candidates:
            stamped = conn.execute(table.update().where(table.c.id == event_id, table.c.status == RECEIVED, mine)
                                   .values(dag_id=run.dag_id, run_id=run.run_id)).rowcount
            if stamped == 1:
                taken.append(event_id)
    others = sorted(set(taken) - set(announced))
    if others:
        log.info("also taking pending event(s) no run had taken: %s", others)
    return inbox.get(taken)


def group_events(refs: list[dict[str, Any]], groups: int) -> list[list[dict[str, Any]]]:
    """``refs`` dealt into at most ``groups`` groups, oldest first in each: one task per group.

    Why: each Airflow task costs seconds of a worker's time before it does anything, so under a backlog
    (a reminder run keeping the workers busy, a burst of webhooks) one task per event would build the queue
    it is meant to drain. One event makes one group, so an alert alone is still one task, named after it.
    """
    count = min(len(refs), max(1, groups))
    return [refs[i::count] for i in range(count)]


def group_name(refs: list[dict[str, Any]]) -> str:
    """How the Airflow UI names a group's task: its first event, and how many more."""
    first = f"#{refs[0]['event_id']} {refs[0]['event_key']}" if refs else "no event"
    return first + (f" (+{len(refs) - 1} more)" if len(refs) > 1 else "")


def handle_events(refs: list[dict[str, Any]], **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`handle_event` for each event of a group; one event's error is raised after the others were
    handled (a retry then finds those handled and does nothing for them)."""
    outcomes, errors = [], []
    for ref in refs:
        try:
            outcomes.append(handle_event(ref, **kwargs))
        except Exception as exc:
            log.error("webhook event #%s: %s", ref.get("event_id"), exc)
            errors.append(exc)
    if errors:  # a retry helps the events that can still be sent: prefer an error Airflow retries
        raise next((e for e in errors if not isinstance(e, AirflowFailException)), errors[0])
    return outcomes


class _Zoho:
    """What Zoho Books has for an event's identifiers, each asked for at most once; ``None``: no such record."""

    def __init__(self, hook: ZohoBooksHook) -> None:
        self.hook = hook
        self._found: dict[tuple[str, str], Any] = {}

    def _get(self, what: str, ident: str, call: Any) -> Any:
        if (what, ident) not in self._found:
            try:
                self._found[(what, ident)] = call(ident) or None
            except ZohoNotFound:
                self._found[(what, ident)] = None
        return self._found[(what, ident)]

    def invoice(self, event: AlertEvent) -> dict[str, Any] | None:
        if event.invoice_id:
            return self._get("invoice", event.invoice_id, self.hook.get_invoice)
        return self._get("invoice_number", str(event.invoice_number), self.hook.find_invoice)

    def payment(self, payment_id: str) -> dict[str, Any] | None:
        return self._get("payment", payment_id, self.hook.get_customer_payment)

    def applied_invoices(self, payment: Mapping[str, Any] | None) -> dict[str, dict[str, Any] | None]:
        ids = [str(a["invoice_id"]) for a in (payment or {}).get("invoices") or [] if a.get("invoice_id")]
        return {i: self._get("invoice", i, self.hook.get_invoice) for i in ids}

    def numbers(self, customer_id: Any) -> tuple[str, ...]:
        return self._get("contact", str(customer_id), self.hook.get_contact_numbers) or () if customer_id else ()


def handle_event(
    ref: dict[str, Any],
    *,
    run: RunInfo,
    messages_per_second: float = 20.0,
    max_per_recipient_hour: int = rules.DEFAULT_HOURLY_CAP,
    not_on_whatsapp_days: float = DEFAULT_NOT_ON_WHATSAPP_DAYS,
    zoho_conn_id: str = ZohoBooksHook.default_conn_name,
    whatsapp_conn_id: str = "whatsapp_default",
    ledger_conn_id: str = DEFAULT_CONN_ID,
) -> dict[str, Any]:
    """Read the event's records from Zoho, send its alert(s); mark it handled once every message is settled.

    A number that opted out (or failed as not on WhatsApp within ``not_on_whatsapp_days``) is skipped
    with that reason, like a reminder.
    """
    inbox = WebhookInbox.from_connection(ledger_conn_id)
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

        hook = ZohoBooksHook(zoho_conn_id)
        if ref.get("organization"):
            hook.use_organization(Organization(**ref["organization"]))
        org = hook.get_organization()
        try:
            if event.organization_id and event.organization_id != org.organization_id:
                raise rules.NothingToAlert(
                    "other_organization", f"the event is for organization {event.organization_id}, "
                    f"connection {zoho_conn_id!r} is for {org.organization_id}")
            occasion, alerts = _alerts_for(event, _Zoho(hook), rules.AlertContext(org.country_code, org.currency_code))
        except rules.NothingToAlert as nothing:  # no ledger row can be keyed: the inbox records why
            outcome = {**summary, "status": "skipped", "reason": nothing.reason, "detail": str(nothing),
                       "zoho_api_calls": hook.api_calls}
            log.warning("webhook event #%s: %s (%s)", row["id"], nothing, nothing.reason)
            inbox.mark_handled(row["id"], dag_id=run.dag_id, run_id=run.run_id, outcome=outcome)
            return outcome
        key = SendKey(org.organization_id, event.kind, occasion)
        tally = pipeline.send_now(
            inbox.ledger, key, [({**a.record, "event": event.event_key}, a.decision) for a in alerts], run,
            whatsapp_conn_id=whatsapp_conn_id, messages_per_second=messages_per_second,
            recipient_cap=RecipientCap(max_per_recipient_hour, rules.ALERT_KINDS),
            not_on_whatsapp_days=not_on_whatsapp_days,
        )
        # "messages": each message's fate (the inbox outcome's list), in place of the tally's counts by status
        summary.update({**tally, "occasion": occasion, "messages": _report(inbox, key),
                        "zoho_api_calls": hook.api_calls})
        if tally["open"]:
            log.warning("webhook event #%s: %d message(s) are still being sent by another run; it will mark "
                        "the event handled", row["id"], tally["open"])
            return {**summary, "status": "in_flight"}
        inbox.mark_handled(row["id"], dag_id=run.dag_id, run_id=run.run_id, outcome=summary)
        return {**summary, "status": "handled"}
    finally:
        inbox.dispose()


def _alerts_for(event: AlertEvent, zoho: _Zoho, org: rules.AlertContext) -> tuple[str, list[rules.Alert]]:
    """The occasion (Zoho's invoice or payment id) and the alerts of one event, all from Zoho's records."""
    spec = _template(event.kind)
    if event.kind == rules.INVOICE_CREATED:
        invoice = zoho.invoice(event)
        named = event.invoice_id or f"numbered {event.invoice_number}"
        alert = rules.invoice_created(invoice, lambda: zoho.numbers((invoice or {}).get("customer_id")), spec, org,
                                      named=named)
        return alert.record["invoice_id"], [alert]
    payment = zoho.payment(str(event.payment_id))
    alerts = rules.payment_received(payment, zoho.applied_invoices(payment),
                                    lambda: zoho.numbers((payment or {}).get("customer_id")), spec, org,
                                    named=str(event.payment_id))
    return str(event.payment_id), alerts


def _template(kind: str) -> Any:
    spec = load_templates().get(rules.TEMPLATE_FOR[kind])
    if spec is None:
        raise AirflowFailException(
            f"template {rules.TEMPLATE_FOR[kind]!r} is not configured; add it to include/templates/whatsapp_templates.yaml"
        )
    return spec


def _report(inbox: WebhookInbox, key: SendKey) -> list[dict[str, Any]]:
    """Each message's fate, logged (numbers masked) and kept in the event's outcome."""
    rows = inbox.ledger.rows(key=key)
    for r in rows:
        if r["status"] == "sent":
            log.info("%s alert for %s sent to %s (%s)", key.kind, r["invoice_number"], r["phone_masked"],
                     json.loads(r["parameters"] or "{}"))
        elif r["status"] in ("skipped", "failed", "unknown"):
            log.warning("%s alert for %s: %s %s %s", key.kind, r["invoice_number"], r["status"], r["reason"] or "",
                        r["error_message"] or "")
    return [{"invoice_number": r["invoice_number"], "status": r["status"], "reason": r["reason"],
             "to": r["phone_masked"], "error_code": r["error_code"]} for r in rows]
