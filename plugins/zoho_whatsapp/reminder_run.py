"""The steps of one reminder run, each the body of a task in the reminder DAG.

They pass only small dicts between them (XCom); the invoices and messages live in the ledger.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections import Counter
from datetime import datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from zoho_whatsapp.ledger import RunInfo, SendLedger
from zoho_whatsapp.ledger.ledger import IST, OPEN
from zoho_whatsapp.rules.money import parse_amount
from zoho_whatsapp.rules.reminders import (
    REMINDER_KIND,
    InvalidInvoice,
    OverdueInvoice,
    Reminder,
    ReminderPolicy,
    plan_reminder,
)
from zoho_whatsapp.rules.templates import load_templates
from zoho_whatsapp.whatsapp.batch import BatchRef
from zoho_whatsapp.zoho import Organization, ZohoBooksHook

log = logging.getLogger(__name__)

LEDGER_CONN_ID = "reminder_ledger_default"


def reminder_date(logical_date: datetime) -> str:
    """The run's logical date as an IST calendar day: the occasion a reminder is for."""
    return logical_date.astimezone(IST).date().isoformat()


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
    occasion = reminder_date(logical_date)
    # One paginated pass over the customers with overdue invoices, kept as just the numbers.
    contacts = {cid: _contact_numbers(c) for cid, c in hook.list_overdue_contacts().items()}
    missing: set[str] = set()
    listed = 0
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for inv in hook.iter_overdue_invoices():
            listed += 1
            if _needs_contact_lookup(inv, contacts):
                missing.add(str(inv.get("customer_id")))
            spool.write(json.dumps(inv, default=str, ensure_ascii=False) + "\n")
        log.info("Zoho lists %d overdue invoice(s) for organization %s", listed, org["organization_id"])
        for customer_id in sorted(missing):  # rare: a contact the Invoice.OverDue filter did not return
            contacts[customer_id] = _contact_numbers(hook.get_contact(customer_id))
        if missing:
            log.info("looked up %d contact(s) missing from the overdue-contacts listing one by one", len(missing))
        spool.seek(0)
        records = (_with_contact(json.loads(line), contacts) for line in spool)
        seen, retired = ledger.record_fetched(
            organization_id=org["organization_id"],
            kind=REMINDER_KIND,
            occasion=occasion,
            invoices=records,
            run=RunInfo(dag_id=dag_id, run_id=run_id),
        )
    if retired:
        log.info("%d invoice(s) planned earlier for %s are no longer overdue: skipped", retired, occasion)
    ledger.dispose()
    log.info(
        "recorded %d overdue invoice(s) for %s using %d Zoho API call(s) and %d token request(s)",
        seen, occasion, hook.api_calls, hook.token_requests,
    )
    return {
        **org,
        "occasion": occasion,
        "overdue_invoices": seen,
        "retired": retired,
        "zoho_api_calls": hook.api_calls,
        "zoho_token_requests": hook.token_requests,
    }


def _needs_contact_lookup(invoice: dict[str, Any], contacts: dict[str, Any]) -> bool:
    """Only a reminder we would send is worth a Zoho call: something owed and no number at hand."""
    customer_id = str(invoice.get("customer_id") or "")
    if not customer_id or customer_id in contacts or invoice.get("mobile") or invoice.get("phone"):
        return False
    try:
        return parse_amount(invoice.get("balance"), "balance") > 0
    except ValueError:
        return False


def _with_contact(invoice: dict[str, Any], contacts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    invoice["_contact"] = contacts.get(str(invoice.get("customer_id"))) or {}
    return invoice


def _contact_numbers(contact: dict[str, Any] | None) -> dict[str, Any]:
    if not contact:
        return {}
    persons = contact.get("contact_persons") or []
    primary = next((p for p in persons if p.get("is_primary_contact")), persons[0] if persons else {})
    return {
        "contact_name": contact.get("contact_name"),
        "mobile": contact.get("mobile") or primary.get("mobile"),
        "phone": contact.get("phone") or primary.get("phone"),
    }


def plan_batches(
    fetched: dict[str, Any],
    *,
    params: dict[str, Any],
    max_batches: int,
    max_parallel: int,
    ledger_conn_id: str = LEDGER_CONN_ID,
    chunk_size: int = 1000,
) -> list[dict[str, Any]]:
    """Plan or skip every fetched invoice, then cut the planned messages into batches.

    Rows are read and planned ``chunk_size`` at a time, so memory does not grow with the number
    of invoices. The batches come in whole waves of ``max_parallel`` (the most send tasks that
    run at once) of equal size, and each batch sends at ``1/max_parallel`` of the rate: together
    they use the whole rate from the first wave to the last, and never more than it, whichever
    batches of whichever runs happen to overlap.
    """
    ledger = SendLedger.from_connection(ledger_conn_id)
    org_id, occasion = fetched["organization_id"], fetched["occasion"]
    policy = ReminderPolicy(
        template=params.get("template_name") or "payment_reminder",
        language=params.get("template_language") or "en",
        default_region=fetched.get("country_code") or "IN",
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
        reopened = ledger.reopen_unknown(organization_id=org_id, kind=REMINDER_KIND, occasion=occasion)
        log.warning("resend_unknown: %d message(s) with an unknown outcome will be sent again", reopened)
    recent = ledger.recently_reminded(
        organization_id=org_id, kind=REMINDER_KIND, min_days_between=policy.min_days_between_reminders
    )
    skipped: Counter[str] = Counter()
    plans: list[dict[str, Any]] = []
    skips: list[dict[str, Any]] = []
    fetched_rows = ledger.iter_rows(
        organization_id=org_id, kind=REMINDER_KIND, occasion=occasion, status=("fetched",), chunk_size=chunk_size
    )
    for row in fetched_rows:
        source = json.loads(row["source"] or "{}")
        if row["invoice_id"] in recent:
            skips.append({"id": row["id"], "reason": "cadence", "detail": "reminded within the cadence window"})
        else:
            try:
                invoice = OverdueInvoice.from_zoho(source, source.get("_contact"))
            except InvalidInvoice as exc:
                skips.append({"id": row["id"], "reason": "invalid_invoice", "detail": str(exc)})
            else:
                decision = plan_reminder(invoice, policy, spec)
                if isinstance(decision, Reminder):
                    plans.append(
                        {
                            "id": row["id"],
                            "recipient": decision.recipient,
                            "phone_masked": decision.phone_masked,
                            "template_name": spec.name,
                            "template_language": policy.language,
                            "parameters": decision.parameters,
                        }
                    )
                else:
                    skips.append(
                        {"id": row["id"], "reason": decision.reason, "detail": decision.detail,
                         "phone_masked": decision.phone_masked}
                    )
        if len(plans) + len(skips) >= chunk_size:
            skipped.update(s["reason"] for s in skips)
            ledger.plan_many(plans, skips)
            plans, skips = [], []
    skipped.update(s["reason"] for s in skips)
    ledger.plan_many(plans, skips)
    key = {"organization_id": org_id, "kind": REMINDER_KIND, "occasion": occasion}
    planned = ledger.account(**key)["by_status"].get("planned", 0)
    size = batch_size_for(planned, int(params.get("batch_size", 100)), max_batches, max_parallel)
    if size > int(params.get("batch_size", 100)):
        log.info("raised batch_size to %d to stay within %d mapped tasks", size, max_batches)
    numbers = ledger.assign_batches(**key, batch_size=size)
    ledger.dispose()
    log.info(
        "planned %d message(s) in %d batch(es) of up to %d; skipped %d: %s",
        planned, len(numbers), size, sum(skipped.values()), dict(skipped) or "none",
    )
    share = max(1, max_parallel)
    return [
        BatchRef(organization_id=org_id, kind=REMINDER_KIND, occasion=occasion, batch=n, parallel_share=share).to_dict()
        for n in numbers
    ]


def batch_size_for(planned: int, batch_size: int, max_batches: int, max_parallel: int) -> int:
    """Messages per batch so that the batches fill whole waves of ``max_parallel`` equal batches.

    ``batch_size`` is the most a batch should hold; it is raised only when ``max_batches`` mapped
    tasks could not carry ``planned`` messages otherwise.

    >>> batch_size_for(5000, 1000, 1000, 4)  # 5 batches' worth -> 2 waves of 4 batches of 625
    625
    """
    if planned <= 0:
        return max(1, batch_size)
    parallel = max(1, max_parallel)
    waves = math.ceil(planned / (max(1, batch_size) * parallel))
    batches = waves * parallel
    if batches > max_batches:
        batches = max(parallel, max_batches - max_batches % parallel)
    return max(1, math.ceil(planned / batches))


def account_for_run(
    fetched: dict[str, Any], *, run_id: str, dry_run: bool, ledger_conn_id: str = LEDGER_CONN_ID
) -> dict[str, Any]:
    """Report every overdue invoice's fate for this date; fail if any is still open."""
    ledger = SendLedger.from_connection(ledger_conn_id)
    key = {"organization_id": fetched["organization_id"], "kind": REMINDER_KIND, "occasion": fetched["occasion"]}
    dead = 0 if dry_run else ledger.close_dead_claims(**key, run_id=run_id)
    account = ledger.account(**key)
    open_rows = ledger.rows(**key, status=OPEN)
    ledger.dispose()
    by_status = account["by_status"]
    report = {
        "occasion": fetched["occasion"],
        "overdue_invoices": fetched["overdue_invoices"],
        "recorded": account["total"],
        "sent": by_status.get("sent", 0),
        "skipped": by_status.get("skipped", 0),
        "failed": by_status.get("failed", 0),
        "unknown": by_status.get("unknown", 0),
        "open": len(open_rows),
        "skipped_by_reason": account["skipped_by_reason"],
        "failed_by_code": account["failed_by_code"],
        "zoho_api_calls": fetched.get("zoho_api_calls"),
        "dry_run": dry_run,
    }
    log.info(
        "reminders for %s: %d overdue invoice(s) | sent %d | skipped %d %s | failed %d %s | unknown %d | open %d",
        report["occasion"], report["overdue_invoices"], report["sent"], report["skipped"],
        report["skipped_by_reason"], report["failed"], report["failed_by_code"], report["unknown"], report["open"],
    )
    if dead:
        log.warning("%d message(s) were left mid-send by a dead task: recorded unknown, not resent", dead)
    if report["unknown"]:
        log.warning(
            "%d message(s) have an unknown outcome (the request may have reached WhatsApp). Check `make audit`, "
            "then trigger this date again with resend_unknown=true to send those that did not arrive.",
            report["unknown"],
        )
    if dry_run:
        report["would_send"] = sum(1 for r in open_rows if r["status"] == "planned")
        return report
    if open_rows:
        sample = ", ".join(f"{r['invoice_number']} ({r['status']})" for r in open_rows[:10])
        raise AirflowFailException(
            f"{len(open_rows)} overdue invoice(s) are unaccounted for (still planned or sending): {sample}. "
            "A send task failed or was stopped; see its log, fix the cause and clear the failed batches."
        )
    if account["total"] < fetched["overdue_invoices"]:
        raise AirflowFailException(
            f"the ledger holds {account['total']} row(s) for {fetched['occasion']} but Zoho listed "
            f"{fetched['overdue_invoices']} overdue invoice(s)"
        )
    return report
