"""The steps of one reminder run, each the body of a task in the reminder DAG.

They pass only small dicts between them (XCom); the invoices and messages live in the ledger.
Planning, batching and the tally are the send pipeline's (:mod:`zoho_whatsapp.pipeline`); what is
reminder-specific here is where the invoices come from and the rules they are planned by.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from zoho_whatsapp import pipeline
from zoho_whatsapp.ledger import RunInfo, SendKey, SendLedger
from zoho_whatsapp.ledger.delivery import DEFAULT_UNKNOWN_AFTER
from zoho_whatsapp.ledger.ledger import DEFAULT_NOT_ON_WHATSAPP_DAYS, IST, OPEN
from zoho_whatsapp.rules.messages import Skip
from zoho_whatsapp.rules.money import parse_amount
from zoho_whatsapp.rules.reminders import (
    REMINDER_KIND,
    InvalidInvoice,
    OverdueInvoice,
    ReminderPolicy,
    overdue_record,
    plan_reminder,
)
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


def organization(zoho_conn_id: str = ZohoBooksHook.default_conn_name) -> dict[str, Any]:
    """Make sure a token valid for the whole run is cached, and resolve the organization."""
    hook = ZohoBooksHook(zoho_conn_id)
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
) -> dict[str, Any]:
    """Fetch every overdue invoice and its customer's numbers; record them for this date.

    The listing is spooled to a temporary file page by page, not held in memory (50,000 invoices
    are ~110 MB as Python dicts), and only then written to the ledger in one transaction: the
    ledger's retirement of invoices no longer overdue needs the complete listing, and the ledger
    is not kept locked while Zoho answers.
    """
    ledger = SendLedger.from_connection(ledger_conn_id)  # unreachable ledger: fail before any Zoho call
    hook = ZohoBooksHook(zoho_conn_id)
    hook.use_organization(Organization(**org))
    key = SendKey(org["organization_id"], REMINDER_KIND, reminder_date(logical_date))
    # One paginated pass over the customers with overdue invoices, kept as just the numbers.
    numbers = {cid: contact_numbers(c) for cid, c in hook.list_overdue_contacts().items()}
    missing: set[str] = set()
    listed = 0
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for inv in hook.iter_overdue_invoices():
            listed += 1
            if _needs_contact_lookup(inv, numbers):
                missing.add(str(inv.get("customer_id")))
            spool.write(json.dumps(inv, default=str, ensure_ascii=False) + "\n")
        log.info("Zoho lists %d overdue invoice(s) for organization %s", listed, key.organization_id)
        for customer_id in sorted(missing):  # rare: a contact the Invoice.OverDue filter did not return
            numbers[customer_id] = hook.get_contact_numbers(customer_id)
        if missing:
            log.info("looked up %d contact(s) missing from the overdue-contacts listing one by one", len(missing))
        spool.seek(0)
        records = (
            overdue_record(inv, numbers.get(str(inv.get("customer_id")), ()), org["country_code"])
            for inv in map(json.loads, spool)
        )
        seen, retired = ledger.record_fetched(key, records, RunInfo(dag_id=dag_id, run_id=run_id))
    if retired:
        log.info("%d invoice(s) planned earlier for %s are no longer overdue: skipped", retired, key.occasion)
    ledger.dispose()
    log.info(
        "recorded %d overdue invoice(s) for %s using %d Zoho API call(s) and %d token request(s)",
        seen, key.occasion, hook.api_calls, hook.token_requests,
    )
    return {
        **org,
        "occasion": key.occasion,
        "overdue_invoices": seen,
        "retired": retired,
        "zoho_api_calls": hook.api_calls,
        "zoho_token_requests": hook.token_requests,
    }


def _needs_contact_lookup(invoice: dict[str, Any], numbers: dict[str, Any]) -> bool:
    """Only a reminder we would send is worth a Zoho call: something owed and no number at hand."""
    customer_id = str(invoice.get("customer_id") or "")
    if not customer_id or customer_id in numbers or invoice.get("mobile") or invoice.get("phone"):
        return False
    try:
        return parse_amount(invoice.get("balance"), "balance") > 0
    except ValueError:
        return False


def plan_batches(
    fetched: dict[str, Any],
    *,
    params: dict[str, Any],
    max_batches: int,
    max_parallel: int,
    ledger_conn_id: str = LEDGER_CONN_ID,
    chunk_size: int = 1000,
) -> list[dict[str, Any]]:
    """Plan or skip every fetched invoice, then cut the planned messages into batches (see :func:`pipeline.batch`)."""
    ledger = SendLedger.from_connection(ledger_conn_id)
    key = run_key(fetched)
    policy = ReminderPolicy(
        template=params.get("template_name") or "payment_reminder",
        language=params.get("template_language") or "en",
        min_days_between_reminders=int(params.get("min_days_between_reminders", 3)),
    )
    templates = load_templates()
    if policy.template not in templates:
        raise AirflowFailException(
            f"template {policy.template!r} is not configured (known: {', '.join(sorted(templates))}); "
            "add it to include/templates/whatsapp_templates.yaml"
        )
    spec = templates[policy.template]
    if params.get("resend_unknown"):
        reopened = ledger.reopen_unknown(key)
        log.warning("resend_unknown: %d message(s) with an unknown outcome will be sent again", reopened)
    recent = ledger.recently_reminded(key, min_days_between=policy.min_days_between_reminders)

    def decide(row: dict[str, Any]) -> Any:
        if row["invoice_id"] in recent:
            return Skip("cadence", "reminded within the cadence window")
        try:
            invoice = OverdueInvoice.from_record(json.loads(row["source"] or "{}"))
        except InvalidInvoice as exc:
            return Skip("invalid_invoice", str(exc))
        return plan_reminder(invoice, policy, spec)

    not_on_whatsapp_days = float(params.get("not_on_whatsapp_days", DEFAULT_NOT_ON_WHATSAPP_DAYS))
    skipped = pipeline.plan(ledger, key, decide, chunk_size=chunk_size, not_on_whatsapp_days=not_on_whatsapp_days)
    refs = pipeline.batch(ledger, key, batch_size=int(params.get("batch_size", 100)), max_batches=max_batches,
                          parallel=max_parallel, not_on_whatsapp_days=not_on_whatsapp_days)
    ledger.dispose()
    log.info("skipped %d: %s", sum(skipped.values()), dict(skipped) or "none")
    return [ref.to_dict() for ref in refs]


def account_for_run(
    fetched: dict[str, Any],
    *,
    run_id: str,
    dry_run: bool,
    unknown_after_minutes: float = DEFAULT_UNKNOWN_AFTER.total_seconds() / 60,
    ledger_conn_id: str = LEDGER_CONN_ID,
) -> dict[str, Any]:
    """Report what this run did and, apart, every overdue invoice's fate for the date; fail if any is open.

    ``this_run``: what this run sent, skipped, failed or left unknown (a dry run: ``would_send``);
    a re-run of a date already sent reports ``sent 0`` there. ``date_totals``: every run of the
    date together. ``delivery``: what Meta's receipts say about the date's messages so far.
    """
    ledger = SendLedger.from_connection(ledger_conn_id)
    key = run_key(fetched)
    dead = 0 if dry_run else ledger.close_dead_claims(key, run_id=run_id)
    tally = pipeline.tally(ledger, key, run_id=run_id, unknown_after=timedelta(minutes=unknown_after_minutes))
    sample = list(islice(ledger.iter_rows(key=key, status=OPEN, chunk_size=10), 10)) if tally["open"] else []
    ledger.dispose()
    this_run, delivery = tally.pop("this_run"), tally.pop("delivery")
    this_run["retired"] = fetched.get("retired", 0)
    if dry_run:
        this_run["would_send"] = this_run["planned"]
    totals = {"overdue_invoices": fetched["overdue_invoices"], **tally}
    report = {
        "occasion": key.occasion,
        "run_id": run_id,
        "dry_run": dry_run,
        "this_run": this_run,
        "date_totals": totals,
        "delivery": delivery,
        "zoho_api_calls": fetched.get("zoho_api_calls"),
    }
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
    if totals["recorded"] < fetched["overdue_invoices"]:
        raise AirflowFailException(
            f"the ledger holds {totals['recorded']} row(s) for {key.occasion} but Zoho listed "
            f"{fetched['overdue_invoices']} overdue invoice(s)"
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
