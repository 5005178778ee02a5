"""The one send pipeline both DAGs use: record → plan or skip → batch → send → tally.

Every step works on one :class:`SendKey` (this kind of message, on this occasion, in this
organization) and goes through the send ledger: each message is recorded, then planned or skipped
with a reason, claimed before its request and settled after it. The reminder DAG runs the steps as
tasks (``reminder_run``: fetch records, ``plan_reminders`` plans and batches, mapped
``WhatsAppOperator`` tasks send, ``account_for_every_invoice`` tallies); an alert runs them all in
one task (:func:`send_now`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from zoho_whatsapp.ledger import RecipientCap, RunInfo, SendKey, SendLedger
from zoho_whatsapp.ledger.ledger import FINAL, OPEN
from zoho_whatsapp.rules.messages import Planned, Skip
from zoho_whatsapp.rules.templates import load_templates
from zoho_whatsapp.whatsapp.batch import BatchRef, BatchResult, BatchSender
from zoho_whatsapp.whatsapp.batching import assign_batches, batch_size_for
from zoho_whatsapp.whatsapp.hook import WhatsAppHook

__all__ = ["BatchRef", "SendKey", "batch", "plan", "send_batch", "send_now", "tally"]

log = logging.getLogger(__name__)

MAX_BATCHES = 1000  # stays under Airflow's default max_map_length of 1024

Decide = Callable[[dict[str, Any]], Planned | Skip | None]


def plan(ledger: SendLedger, key: SendKey, decide: Decide, *, chunk_size: int = 1000) -> Counter[str]:
    """Turn every ``fetched`` row of ``key`` into a planned message or a recorded skip; count the skips.

    ``decide`` gets each row (its ``source`` is what was recorded) and returns ``None`` for a row
    that is not its to decide. Rows are read and written ``chunk_size`` at a time, so memory does
    not grow with their number.
    """
    skipped: Counter[str] = Counter()
    plans: list[dict[str, Any]] = []
    skips: list[dict[str, Any]] = []
    for row in ledger.iter_rows(key=key, status=("fetched",), chunk_size=chunk_size):
        decision = decide(row)
        if isinstance(decision, Skip):
            skipped[decision.reason] += 1
            skips.append({"id": row["id"], "reason": decision.reason, "detail": decision.detail,
                          "phone_masked": decision.phone_masked})
        elif decision is not None:
            plans.append({"id": row["id"], "recipient": decision.recipient, "phone_masked": decision.phone_masked,
                          "template_name": decision.template, "template_language": decision.language,
                          "parameters": decision.parameters})
        if len(plans) + len(skips) >= chunk_size:
            ledger.plan_many(plans, skips)
            plans, skips = [], []
    ledger.plan_many(plans, skips)
    return skipped


def batch(
    ledger: SendLedger, key: SendKey, *, batch_size: int, max_batches: int = MAX_BATCHES, parallel: int = 1
) -> list[BatchRef]:
    """Cut ``key``'s planned messages into batches; returns where each batch is, for the send tasks.

    The batches come in whole waves of ``parallel`` (the most send tasks that run at once) of
    equal size, and each batch sends at ``1/parallel`` of the rate: together they use the whole
    rate from the first wave to the last, and never more than it, whichever batches of whichever
    runs happen to overlap.
    """
    planned = ledger.planned_recipients(key)
    size = batch_size_for(len(planned), batch_size, max_batches, parallel)
    if size > batch_size:
        log.info("raised batch_size to %d to stay within %d mapped tasks", size, max_batches)
    numbers = assign_batches(planned, size)
    ledger.store_batches(numbers)
    refs = [BatchRef(key, n, max(1, parallel)) for n in sorted(set(numbers.values()))]
    log.info("%s %s: %d message(s) planned, in %d batch(es) of up to %d", key.kind, key.occasion, len(planned),
             len(refs), size)
    return refs


def send_batch(
    ledger: SendLedger,
    ref: BatchRef,
    run: RunInfo,
    *,
    whatsapp_conn_id: str,
    messages_per_second: float,
    max_workers: int,
    min_days_between: int = 0,
    recipient_cap: RecipientCap | None = None,
    dry_run: bool = False,
) -> BatchResult:
    """Claim, send and settle the planned rows of one batch, at its share of ``messages_per_second``."""
    sender = BatchSender(
        WhatsAppHook(whatsapp_conn_id, pool_size=max_workers),
        ledger,
        load_templates(),
        run,
        messages_per_second=messages_per_second / max(1, ref.parallel_share),
        max_workers=max_workers,
        min_days_between=min_days_between,
        recipient_cap=recipient_cap,
        dry_run=dry_run,
    )
    return sender.send(ref)


def tally(ledger: SendLedger, key: SendKey) -> dict[str, Any]:
    """What became of every message of ``key``: the report both DAGs log and return."""
    account = ledger.account(key)
    by_status = account["by_status"]
    return {
        "recorded": account["total"],
        **{status: by_status.get(status, 0) for status in FINAL},
        "planned": by_status.get("planned", 0),
        "open": sum(by_status.get(status, 0) for status in OPEN),
        "skipped_by_reason": account["skipped_by_reason"],
        "failed_by_code": account["failed_by_code"],
    }


def send_now(
    ledger: SendLedger,
    key: SendKey,
    messages: Iterable[tuple[Mapping[str, Any], Planned | Skip]],
    run: RunInfo,
    *,
    whatsapp_conn_id: str,
    messages_per_second: float,
    recipient_cap: RecipientCap | None = None,
) -> dict[str, Any]:
    """Every step at once for a few messages decided in advance: ``(record, decision)`` pairs."""
    messages = list(messages)
    decisions = {str(record["invoice_id"]): decision for record, decision in messages}
    ledger.record_fetched(key, [record for record, _ in messages], run)
    plan(ledger, key, lambda row: decisions.get(row["invoice_id"]))
    refs = set(batch(ledger, key, batch_size=MAX_BATCHES))
    # Rows left "sending" by an earlier, dead try of this task sit in batch 0 too: the sender
    # turns them into "unknown" rather than resending them.
    for ref in sorted(refs | {BatchRef(key, 0)}, key=lambda r: r.batch):
        send_batch(ledger, ref, run, whatsapp_conn_id=whatsapp_conn_id, messages_per_second=messages_per_second,
                   max_workers=2, recipient_cap=recipient_cap)
    return tally(ledger, key)
