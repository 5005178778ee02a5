"""The steps of one reminder run, each the body of a task in the reminder DAG.

They pass only small dicts between them (XCom); the invoices and messages live in the ledger.
Planning, batching and the tally are the send pipeline's (:mod:`zoho_whatsapp.pipeline`); what is
reminder-specific here is where the invoices come from and the rules they are planned by.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from zoho_whatsapp import pipeline
from zoho_whatsapp.ledger import RunInfo, SendKey, SendLedger
from zoho_whatsapp.ledger.delivery import DEFAULT_UNKNOWN_AFTER, suppressed_recipients, suppression_detail
from zoho_whatsapp.ledger.ledger import DEFAULT_NOT_ON_WHATSAPP_DAYS, IST, OPEN, ist_day
from zoho_whatsapp.reminder_notes import note_sent_reminders
from zoho_whatsapp.rules.collections import DayPlan, plan_day
from zoho_whatsapp.rules.messages import Skip
from zoho_whatsapp.rules.money import parse_amount
from zoho_whatsapp.rules.phone import mask_phone
from zoho_whatsapp.rules.policy import OVERRIDABLE, CollectionsPolicy, PolicyError, load_policy
from zoho_whatsapp.rules.reminders import REMINDER_KIND, OverdueInvoice, overdue_record
from zoho_whatsapp.rules.stages import StageWait, decide_stage, upcoming_due_dates
from zoho_whatsapp.rules.statement import build_customer_message
from zoho_whatsapp.rules.templates import load_templates
from zoho_whatsapp.zoho import Organization, ZohoBooksHook
from zoho_whatsapp.zoho.contacts import contact_numbers

log = logging.getLogger(__name__)

LEDGER_CONN_ID = "reminder_ledger_default"


def reminder_date(logical_date: datetime) -> str:
    """The run's logical date as an IST calendar day: the occasion a reminder is for."""
    return logical_date.astimezone(IST).date().isoformat()


def run_key(fetched: dict[str, Any]) -> SendKey:
    """The key of a run's reminders, from what the fetch task returned."""
    return SendKey(fetched["organization_id"], REMINDER_KIND, fetched["occasion"])


def organization(
    zoho_conn_id: str = ZohoBooksHook.default_conn_name, *, organization_id: str | None = None
) -> dict[str, Any]:
    """Make sure a token valid for the whole run is cached, and resolve the organization.

    ``organization_id`` picks one organization of the connection's Zoho login (several
    organizations' DAGs then share the connection and its cached token); ``None``: the connection's.
    """
    hook = ZohoBooksHook.for_organization(zoho_conn_id, organization_id) if organization_id else ZohoBooksHook(zoho_conn_id)
    hook.get_access_token(min_validity=30 * 60)
    return asdict(hook.get_organization())


def fetch_into_ledger(
    org: dict[str, Any],
    *,
    logical_date: datetime,
    dag_id: str,
    run_id: str,
    zoho_conn_id: str = ZohoBooksHook.default_conn_name,
    ledger_conn_id: str = LEDGER_CONN_ID,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fetch every overdue invoice, those a pre-due stage needs, and their customers' numbers; record
    them for this date.

    Three listings, each paginated 200 rows a call: ``status=overdue``; ``status=unpaid`` due from
    the reminder date to the earliest pre-due stage's day (:func:`upcoming_due_dates`; none when
    the policy has no stage before the day after the due date); the customers with unpaid invoices.

    The listing is spooled to a temporary file page by page, not held in memory (50,000 invoices
    are ~110 MB as Python dicts), and only then written to the ledger in one transaction: the
    ledger's retirement of invoices no longer overdue needs the complete listing, and the ledger
    is not kept locked while Zoho answers.
    """
    ledger = SendLedger.from_connection(ledger_conn_id)  # unreachable ledger: fail before any Zoho call
    hook = ZohoBooksHook(zoho_conn_id)
    hook.use_organization(Organization(**org))
    key = SendKey(org["organization_id"], REMINDER_KIND, reminder_date(logical_date))
    fetched_at = datetime.now(UTC)
    upcoming = _upcoming_range(params or {}, date.fromisoformat(key.occasion))
    # One paginated pass over the customers with unpaid invoices, kept as just the numbers (and the
    # reminders switch, where the listing carries it).
    contacts = hook.list_unpaid_contacts() if upcoming else hook.list_overdue_contacts()
    numbers = {cid: contact_numbers(c) for cid, c in contacts.items()}
    customers_listed = len(numbers)
    switches = {cid: {"payment_reminder_enabled": c["payment_reminder_enabled"]} for cid, c in contacts.items()
                if c.get("payment_reminder_enabled") is not None}
    del contacts
    missing: set[str] = set()
    listed = overdue = 0
    listings = [hook.iter_overdue_invoices()]
    if upcoming:
        listings.append(hook.iter_invoices_due_between(*upcoming))
    seen_ids: set[str] = set()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for number, listing in enumerate(listings):
            for inv in listing:
                if str(inv.get("invoice_id")) in seen_ids:  # an invoice that turned overdue between the two listings
                    continue
                seen_ids.add(str(inv.get("invoice_id")))
                listed += 1
                overdue += number == 0
                if _needs_contact_lookup(inv, numbers):
                    missing.add(str(inv.get("customer_id")))
                spool.write(json.dumps(inv, default=str, ensure_ascii=False) + "\n")
        del seen_ids
        log.info("Zoho lists %d overdue invoice(s) and %d due %s for organization %s", overdue, listed - overdue,
                 f"from {upcoming[0]} to {upcoming[1]}" if upcoming else "soon (no pre-due stage)", key.organization_id)
        for customer_id in sorted(missing):  # rare: a contact the Invoice.OverDue filter did not return
            numbers[customer_id] = hook.get_contact_numbers(customer_id)
        if missing:
            log.info("looked up %d contact(s) missing from the overdue-contacts listing one by one", len(missing))
        spool.seek(0)
        records = (
            overdue_record(inv, numbers.get(str(inv.get("customer_id")), ()), org["country_code"],
                           switches.get(str(inv.get("customer_id"))))
            for inv in map(json.loads, spool)
        )
        seen, retired = ledger.record_fetched(key, records, RunInfo(dag_id=dag_id, run_id=run_id))
    if retired:
        log.info("%d invoice(s) planned earlier for %s are no longer overdue: skipped", retired, key.occasion)
    ledger.dispose()
    log.info(
        "recorded %d invoice(s) for %s using %d Zoho API call(s) and %d token request(s)",
        seen, key.occasion, hook.api_calls, hook.token_requests,
    )
    return {
        **org,
        "occasion": key.occasion,
        "overdue_invoices": overdue,
        "upcoming_invoices": seen - overdue,
        "upcoming_listed": upcoming is not None,
        "customers_listed": customers_listed,
        "invoices": seen,
        "fetched_at": fetched_at.isoformat(),
        "zoho_conn_id": zoho_conn_id,
        "retired": retired,
        "zoho_api_calls": hook.api_calls,
        "zoho_token_requests": hook.token_requests,
    }


def _upcoming_range(params: dict[str, Any], today: date) -> tuple[date, date] | None:
    """The due dates a pre-due stage needs listed; a policy that cannot be read lists none here
    (``plan_reminders`` fails on it, naming the field)."""
    try:
        return upcoming_due_dates(load_policy(overrides=params), today)
    except PolicyError as exc:
        log.warning("reminder policy: %s; listing overdue invoices only", exc)
        return None


def _needs_contact_lookup(invoice: dict[str, Any], numbers: dict[str, Any]) -> bool:
    """Only a reminder we would send is worth a Zoho call: something owed and no number at hand."""
    customer_id = str(invoice.get("customer_id") or "")
    if not customer_id or customer_id in numbers or invoice.get("mobile") or invoice.get("phone"):
        return False
    try:
        return parse_amount(invoice.get("balance"), "balance") > 0
    except ValueError:
        return False


def reminder_policy(params: dict[str, Any]) -> CollectionsPolicy:
    """The policy file with this run's params applied; a bad value fails the task naming the field."""
    for retired in ("template_name", "template_language"):
        if params.get(retired):
            log.warning("param %s is no longer used: each stage's templates are named in the reminder policy "
                        "(include/config/reminder_policy.yaml)", retired)
    try:
        policy = load_policy(overrides=params)
        policy.check_templates(load_templates())
    except PolicyError as exc:
        raise AirflowFailException(f"reminder policy: {exc}") from None
    return policy


def plan_batches(
    fetched: dict[str, Any],
    *,
    params: dict[str, Any],
    max_batches: int,
    max_parallel: int,
    ledger_conn_id: str = LEDGER_CONN_ID,
    chunk_size: int = 1000,
) -> list[dict[str, Any]]:
    """Decide the day for every fetched invoice (one message per customer and currency, or a skip with
    its reason), then cut the messages into batches (see :func:`pipeline.batch`)."""
    policy = reminder_policy(params)
    ledger = SendLedger.from_connection(ledger_conn_id)
    key = run_key(fetched)
    if params.get("resend_unknown"):
        reopened = ledger.reopen_unknown(key)
        log.warning("resend_unknown: %d message(s) with an unknown outcome will be sent again", reopened)
    rows = {r["invoice_id"]: (r["id"], json.loads(r["source"] or "{}"))
            for r in ledger.iter_rows(key=key, status=("fetched",), chunk_size=chunk_size)}
    now_day = ist_day(ledger.now())
    cutoff = (date.fromisoformat(now_day) - timedelta(days=max(policy.min_days_between_reminders, 1))).isoformat()
    not_on_whatsapp_days = float(params.get("not_on_whatsapp_days", DEFAULT_NOT_ON_WHATSAPP_DAYS))
    day = plan_day(
        ((invoice_id, source) for invoice_id, (_, source) in rows.items()),
        today=date.fromisoformat(key.occasion),
        cadence_today=date.fromisoformat(now_day),
        occasion=key.occasion,
        policy=policy,
        templates=load_templates(),
        reached=ledger.stages_reached(key, rows),
        messaged=ledger.customers_messaged(key, since_day=cutoff),
        suppressed=_suppressed(ledger, {s.get("recipient") for _, s in rows.values()} - {None}, not_on_whatsapp_days),
    )
    plans, skips = _ledger_decisions(day, {invoice_id: row_id for invoice_id, (row_id, _) in rows.items()})
    skipped = pipeline.store_plans(ledger, plans, skips, not_on_whatsapp_days, chunk_size=chunk_size)
    refs = pipeline.batch(ledger, key, batch_size=int(params.get("batch_size", 100)), max_batches=max_batches,
                          parallel=max_parallel, not_on_whatsapp_days=not_on_whatsapp_days,
                          send_policy=send_policy(policy, params, fetched))
    ledger.dispose()
    log.info("%d message(s) for %d invoice(s); skipped %d invoice(s): %s", len(day.messages),
             sum(m.invoice_count for m in day.messages), sum(skipped.values()), dict(skipped) or "none")
    return [ref.to_dict() for ref in refs]


def _suppressed(ledger: SendLedger, recipients: set[str], not_on_whatsapp_days: float) -> dict[str, Skip]:
    """The numbers not to message (STOP, not on WhatsApp), as the skip each means."""
    found: dict[str, Skip] = {}
    numbers = sorted(recipients)
    with ledger.engine.connect() as conn:
        for start in range(0, len(numbers), 500):
            for number, reason in suppressed_recipients(conn, numbers[start:start + 500], now=ledger.now(),
                                                        not_on_whatsapp_days=not_on_whatsapp_days).items():
                found[number] = Skip(reason, suppression_detail(reason, not_on_whatsapp_days), mask_phone(number))
    return found


def send_policy(policy: CollectionsPolicy, params: dict[str, Any], fetched: dict[str, Any]) -> dict[str, Any]:
    """What the send tasks need of the policy, through the batch reference: the cadence their claims
    check, the overrides to rebuild the policy (send window, live balance) and when the invoices were read."""
    return {
        "min_days_between": max(policy.min_days_between_reminders, 1),  # one message a customer a day at most
        "policy_overrides": {k: v for k, v in params.items() if k in OVERRIDABLE and v is not None},
        "fetched_at": fetched.get("fetched_at"),
        "zoho_conn_id": fetched.get("zoho_conn_id") or ZohoBooksHook.default_conn_name,
    }


def _ledger_decisions(day: DayPlan, row_ids: dict[str, int]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The day's decisions as ledger rows: each message on its lead row (its oldest), the others pointing to it."""
    plans: list[dict[str, Any]] = []
    for message in day.messages:
        ids = {invoice_id: row_ids[invoice_id] for invoice_id in message.invoice_ids}
        lead = min(ids.values())
        for invoice_id, row_id in ids.items():
            plans.append({
                "id": row_id, "recipient": message.recipient, "phone_masked": message.phone_masked,
                "template_name": message.template_name, "template_language": message.language,
                "parameters": dict(message.parameters) if row_id == lead else None, "message_id": lead,
                "stage": message.invoice_stages[invoice_id], "currency_code": message.currency_code,
            })
    skips = [{"id": row_ids[invoice_id], "reason": skip.reason, "detail": skip.detail,
              "phone_masked": skip.phone_masked} for invoice_id, skip in day.skips.items()]
    return plans, skips


def account_for_run(
    fetched: dict[str, Any],
    *,
    run_id: str,
    dry_run: bool,
    unknown_after_minutes: float = DEFAULT_UNKNOWN_AFTER.total_seconds() / 60,
    params: dict[str, Any] | None = None,
    ledger_conn_id: str = LEDGER_CONN_ID,
) -> dict[str, Any]:
    """Report what this run did and, apart, every overdue invoice's fate for the date; fail if any is open.

    With the policy's opt-in ``zoho_notes``, the sent messages' notes are written in Zoho Books first
    (:mod:`zoho_whatsapp.reminder_notes`; ``zoho_notes`` in the report).

    ``this_run``: what this run sent, skipped, failed or left unknown (a dry run: ``would_send``);
    a re-run of a date already sent reports ``sent 0`` there. ``date_totals``: every run of the
    date together. ``delivery``: what Meta's receipts say about the date's messages so far.
    """
    ledger = SendLedger.from_connection(ledger_conn_id)
    key = run_key(fetched)
    dead = 0 if dry_run else ledger.close_dead_claims(key, run_id=run_id)
    tally = pipeline.tally(ledger, key, run_id=run_id, unknown_after=timedelta(minutes=unknown_after_minutes))
    sample = list(islice(ledger.iter_rows(key=key, status=OPEN, chunk_size=10), 10)) if tally["open"] else []
    notes = None if dry_run else note_sent_reminders(
        ledger, key, reminder_policy(params or {}).zoho_notes, zoho_conn_id=fetched.get("zoho_conn_id"),
        calls_used_before=int(fetched.get("zoho_api_calls") or 0))
    ledger.dispose()
    this_run, delivery = tally.pop("this_run"), tally.pop("delivery")
    this_run["retired"] = fetched.get("retired", 0)
    if dry_run:
        this_run["would_send"] = this_run["messages"]["planned"]  # messages; "planned" counts their invoices
    totals = {"overdue_invoices": fetched["overdue_invoices"], "invoices": fetched.get("invoices",
              fetched["overdue_invoices"]), "zoho_listing": {k: fetched.get(k) for k in (
                  "upcoming_invoices", "upcoming_listed", "customers_listed")}, **tally}
    report = {
        "occasion": key.occasion,
        "run_id": run_id,
        "dry_run": dry_run,
        "this_run": this_run,
        "date_totals": totals,
        "delivery": delivery,
        "zoho_api_calls": fetched.get("zoho_api_calls"),
    }
    if notes is not None:
        report["zoho_notes"] = notes
    _log_report(report, unknown_after_minutes)
    if dead:
        log.warning("%d message(s) were left mid-send by a dead task: recorded unknown, not resent", dead)
    if dry_run:
        return report
    if totals["open"]:
        listed = ", ".join(f"{r['invoice_number']} ({r['status']})" for r in sample)
        raise AirflowFailException(
            f"{totals['open']} overdue invoice(s) are unaccounted for (still planned or sending): {listed}. "
            "A send task failed or was stopped; see its log, fix the cause and clear the failed batches."
        )
    if totals["recorded"] < totals["invoices"]:
        raise AirflowFailException(
            f"the ledger holds {totals['recorded']} row(s) for {key.occasion} but Zoho listed "
            f"{totals['invoices']} invoice(s)"
        )
    return report


def _log_report(report: dict[str, Any], unknown_after_minutes: float) -> None:
    """The summary lines: this run first, then the date's totals, then the receipts; who needs to act."""
    run, totals, delivery = report["this_run"], report["date_totals"], report["delivery"]
    what = (f"this run sent {run['sent']} and would send {run['would_send']}" if report["dry_run"]
            else f"this run sent {run['sent']}")
    log.info(
        "%sreminders for %s: %s, skipped %d %s, failed %d %s, unknown %d | the date in total: %d overdue invoice(s), "
        "sent %d, skipped %d, failed %d, unknown %d, open %d",
        "DRY RUN (nothing sent) " if report["dry_run"] else "", report["occasion"], what, run["skipped"],
        run["skipped_by_reason"], run["failed"], run["failed_by_code"], run["unknown"], totals["overdue_invoices"],
        totals["sent"], totals["skipped"], totals["failed"], totals["unknown"], totals["open"],
    )
    received = delivery["by_delivery"]
    log.info(
        "receipts from WhatsApp for %s so far: delivered %d, read %d, no receipt yet %d, failed %d %s | unknown "
        "outcome: %d to check (no receipt after %g min), %d still waiting for a receipt",
        report["occasion"], received.get("delivered", 0), received.get("read", 0), received.get("sent", 0),
        received.get("failed", 0), delivery["failed_by_class"], delivery["unknown_to_check"], unknown_after_minutes,
        delivery["unknown_waiting"],
    )
    if delivery["unknown_to_check"]:
        log.warning(
            "%d message(s) still have an unknown outcome %g min after their send and no receipt from WhatsApp: "
            "these are the only ones a person needs to look at (`make audit ARGS=\"--status unknown\"`, WhatsApp "
            "Manager). Then trigger this date with resend_unknown=true to send those that did not arrive.",
            delivery["unknown_to_check"], unknown_after_minutes,
        )
    if delivery["unknown_waiting"]:
        log.info(
            "%d message(s) have an unknown outcome for now (the request may have reached WhatsApp): a receipt "
            "from WhatsApp settles them without resending; only those still unknown after %g min need a person",
            delivery["unknown_waiting"], unknown_after_minutes,
        )


PAID_SINCE_FETCH = "paid_since_fetch"


def live_balance_check(ledger: SendLedger, ref: Any) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
    """For a send that starts more than ``live_balance_after_minutes`` after its invoices were read:
    what re-reads each message's customer from Zoho right before the claim (see :func:`refresh_message`).

    ``None`` when the batch is not a reminder batch or is on time.
    """
    if ref.key.kind != REMINDER_KIND or not ref.fetched_at:
        return None
    try:
        policy = load_policy(overrides=ref.policy_overrides)
    except PolicyError as exc:
        raise AirflowFailException(f"reminder policy: {exc}") from None
    late = datetime.now(UTC) - datetime.fromisoformat(ref.fetched_at)
    if late <= timedelta(minutes=policy.live_balance_after_minutes):
        return None
    log.info("this send starts %d min after its invoices were read (over %d): each customer's open invoices are "
             "read again before their message", late.total_seconds() // 60, policy.live_balance_after_minutes)
    # The batch's organization, not the connection's: several organizations may share one connection.
    hook = ZohoBooksHook.for_organization(ref.zoho_conn_id, ref.key.organization_id)
    templates = load_templates()
    open_invoices: dict[str, dict[str, dict[str, Any]]] = {}
    lock = threading.Lock()

    def check(lead: dict[str, Any]) -> dict[str, Any] | None:
        customer_id = str(lead["customer_id"] or "")
        with lock:  # one read per customer, whichever of their messages comes first
            if customer_id not in open_invoices:
                open_invoices[customer_id] = {str(r["invoice_id"]): r for r in hook.list_open_invoices(customer_id)}
            current = open_invoices[customer_id]
        return refresh_message(ledger, lead, current, policy, templates)

    return check


def refresh_message(
    ledger: SendLedger, lead: dict[str, Any], current: dict[str, dict[str, Any]], policy: CollectionsPolicy,
    templates: dict[str, Any],
) -> dict[str, Any] | None:
    """Re-plan ``lead``'s message from the customer's open invoices as Zoho lists them now (``current``):
    an invoice paid since the fetch is skipped (``paid_since_fetch``), the rest are stated with their
    current balance. Returns the lead row to claim, or ``None`` when every invoice was paid."""
    rows = [r for r in ledger.rows(key=SendKey(lead["organization_id"], lead["kind"], lead["occasion"]))
            if r["id"] == lead["id"] or r["message_id"] == lead["id"]]
    today = date.fromisoformat(lead["occasion"])
    reached = ledger.stages_reached(SendKey(lead["organization_id"], lead["kind"], lead["occasion"]),
                                    [r["invoice_id"] for r in rows])
    dropped: dict[int, tuple[str, str]] = {}
    due: list[OverdueInvoice] = []
    ids: dict[str, int] = {}
    for row in rows:
        now_row = current.get(row["invoice_id"])
        source = json.loads(row["source"] or "{}")
        balance = parse_amount(now_row.get("balance"), "balance") if now_row else None
        if not balance or balance <= 0:
            dropped[row["id"]] = (PAID_SINCE_FETCH, f"{row['invoice_number']} was paid after the invoices were read")
            continue
        invoice = OverdueInvoice.from_record({**source, "balance": now_row["balance"]})
        decision = decide_stage(invoice.due_date, today, reached.get(invoice.invoice_id, {}), policy)
        if isinstance(decision, StageWait):
            dropped[row["id"]] = (decision.reason, decision.detail)
            continue
        due.append(replace(invoice, decision=decision))
        ids[invoice.invoice_id] = row["id"]
    if not dropped and all(str(r.get("balance")) == str(current[r["invoice_id"]].get("balance"))
                           for r in (json.loads(x["source"] or "{}") for x in rows)):
        return lead  # nothing changed: the planned message stands
    message = build_customer_message(due, policy, templates) if due else None
    new_lead = ledger.replan_message(
        lead["id"], {ids[i]: message.invoice_stages[i] for i in message.invoice_ids} if message else {}, dropped,
        template_name=message.template_name if message else "", parameters=message.parameters if message else {},
    )
    if message is None:
        log.info("%s: every invoice of the message was paid since the fetch; not sent", lead["phone_masked"])
        return None
    if new_lead is None:
        return lead  # it moved on meanwhile: the claim will say so
    log.info("%s: re-planned with the current balance (%d invoice(s) paid since the fetch)", lead["phone_masked"],
             len(dropped))
    return ledger.rows(id=new_lead)[0]
