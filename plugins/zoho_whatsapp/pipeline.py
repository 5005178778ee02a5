"""The one send pipeline both DAGs use: record → plan or skip → batch → send → tally.

Every step works on one :class:`SendKey` (this kind of message, on this occasion, in this
organization) and goes through the send ledger: each message is recorded, then planned or skipped
with a reason, claimed before its request and settled after it. The reminder DAG runs the steps as
tasks (``reminder_run``: fetch records, ``plan_reminders`` plans and batches, mapped
``WhatsAppOperator`` tasks send, ``account_for_every_invoice`` tallies); an alert runs them all in
one task (:func:`send_now`).

Numbers that must not be messaged (the customer replied STOP; WhatsApp said the number is not on
WhatsApp, within ``not_on_whatsapp_days``) are skipped at planning and checked again by each claim,
so a STOP that arrives mid-run still stops the message. The tally first turns ``unknown`` rows that
Meta's receipts proved sent into ``sent``, and reports what the receipts say happened next.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from zoho_whatsapp.ledger import RecipientCap, RunInfo, SendKey, SendLedger
from zoho_whatsapp.ledger.delivery import (
    DEFAULT_UNKNOWN_AFTER,
    delivery_summary,
    resolve_unknown_by_receipts,
    suppressed_recipients,
    suppression_detail,
)
from zoho_whatsapp.ledger.ledger import DEFAULT_NOT_ON_WHATSAPP_DAYS, FINAL, OPEN
from zoho_whatsapp.rules.messages import Planned, Skip
from zoho_whatsapp.rules.templates import load_templates
from zoho_whatsapp.whatsapp.batch import BatchRef, BatchResult, BatchSender
from zoho_whatsapp.whatsapp.batching import assign_batches, batch_size_for
from zoho_whatsapp.whatsapp.hook import WhatsAppHook

__all__ = ["BatchRef", "SendKey", "batch", "plan", "send_batch", "send_now", "tally"]

log = logging.getLogger(__name__)

MAX_BATCHES = 1000  # stays under Airflow's default max_map_length of 1024

Decide = Callable[[dict[str, Any]], Planned | Skip | None]


def plan(
    ledger: SendLedger,
    key: SendKey,
    decide: Decide,
    *,
    chunk_size: int = 1000,
    not_on_whatsapp_days: float = DEFAULT_NOT_ON_WHATSAPP_DAYS,
) -> Counter[str]:
    """Turn every ``fetched`` row of ``key`` into a planned message or a recorded skip; count the skips.

    ``decide`` gets each row (its ``source`` is what was recorded) and returns ``None`` for a row
    that is not its to decide. A message to a suppressed number is skipped with the suppression's
    reason (``opted_out``, ``not_on_whatsapp``). Rows are read and written ``chunk_size`` at a time,
    so memory does not grow with their number.
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
            _store_plans(ledger, plans, skips, skipped, not_on_whatsapp_days)
            plans, skips = [], []
    _store_plans(ledger, plans, skips, skipped, not_on_whatsapp_days)
    return skipped


def store_plans(ledger: SendLedger, plans: list[dict[str, Any]], skips: list[dict[str, Any]],
                not_on_whatsapp_days: float, *, chunk_size: int = 1000) -> Counter[str]:
    """Record decisions made all at once (:meth:`SendLedger.plan_many`'s items), ``chunk_size`` rows a
    transaction; plans to suppressed numbers become skips. Returns the skips by reason."""
    skipped: Counter[str] = Counter(s["reason"] for s in skips)
    for start in range(0, max(len(plans), len(skips)), chunk_size):
        _store_plans(ledger, plans[start:start + chunk_size], skips[start:start + chunk_size], skipped,
                     not_on_whatsapp_days)
    return skipped


def _store_plans(ledger: SendLedger, plans: list[dict[str, Any]], skips: list[dict[str, Any]],
                 skipped: Counter[str], not_on_whatsapp_days: float) -> None:
    """Record a chunk of decisions, turning the plans to suppressed numbers into skips."""
    if plans:
        with ledger.engine.connect() as conn:
            suppressed = suppressed_recipients(conn, [p["recipient"] for p in plans], now=ledger.now(),
                                               not_on_whatsapp_days=not_on_whatsapp_days)
        for p in [p for p in plans if p["recipient"] in suppressed]:
            reason = suppressed[p["recipient"]]
            skipped[reason] += 1
            skips.append({"id": p["id"], "reason": reason, "phone_masked": p["phone_masked"],
                          "detail": suppression_detail(reason, not_on_whatsapp_days)})
        plans = [p for p in plans if p["recipient"] not in suppressed]
    ledger.plan_many(plans, skips)


def batch(
    ledger: SendLedger,
    key: SendKey,
    *,
    batch_size: int,
    max_batches: int = MAX_BATCHES,
    parallel: int = 1,
    not_on_whatsapp_days: float = DEFAULT_NOT_ON_WHATSAPP_DAYS,
    send_policy: Mapping[str, Any] | None = None,
) -> list[BatchRef]:
    """Cut ``key``'s planned messages into batches; returns where each batch is, for the send tasks.

    The batches come in whole waves of ``parallel`` (the most send tasks that run at once) of
    equal size, and each batch sends at ``1/parallel`` of the rate: together they use the whole
    rate from the first wave to the last, and never more than it, whichever batches of whichever
    runs happen to overlap. Each reference carries ``not_on_whatsapp_days``, the window planning
    used, for its claims, and ``send_policy`` (see :class:`BatchRef`). A message carrying several
    invoices counts once.
    """
    planned = ledger.planned_recipients(key)
    size = batch_size_for(len(planned), batch_size, max_batches, parallel)
    if size > batch_size:
        log.info("raised batch_size to %d to stay within %d mapped tasks", size, max_batches)
    numbers = assign_batches(planned, size)
    ledger.store_batches(numbers)
    sizes = Counter(numbers.values())
    refs = [BatchRef(key, n, max(1, parallel), sizes[n], len(sizes), not_on_whatsapp_days=not_on_whatsapp_days,
                     **dict(send_policy or {}))
            for n in sorted(sizes)]
    log.info("%s %s: %d message(s) planned, in %d batch(es) of up to %d", key.kind, key.occasion, len(planned),
             len(refs), size)
    return refs


# How long a message holds a send thread: Meta's answer (~150 ms) plus its claim and settle. A batch
# needs its share of the rate times this in threads, or the threads and not the cap bound its rate
# (measured, batch_size 1000, 1,000/s cap: 4 batches of 32 threads sent 460 msg/s, of 64 threads 588).
THREAD_HOLD_SECONDS = 0.25
MOST_SEND_THREADS = 128


def send_threads(messages_per_second: float, at_least: int) -> int:
    """Threads for a batch sending at ``messages_per_second``: ``at_least``, more when its rate needs them.

    >>> send_threads(20, 32), send_threads(250, 32)
    (32, 63)
    """
    return max(at_least, min(MOST_SEND_THREADS, math.ceil(messages_per_second * THREAD_HOLD_SECONDS)))


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
    stop_at: datetime | None = None,
) -> BatchResult:
    """Claim, send and settle the planned rows of one batch, at its share of ``messages_per_second``.

    From ``stop_at`` on (the send window's close) nothing more is claimed: the rest stays planned.
    ``max_workers`` is the fewest threads; a batch whose share of the rate needs more gets them."""
    share = messages_per_second / max(1, ref.parallel_share)
    threads = send_threads(share, max_workers)
    hook = WhatsAppHook(whatsapp_conn_id)
    sender = BatchSender(
        hook,
        ledger,
        load_templates(),
        run,
        messages_per_second=share,
        max_workers=threads,
        min_days_between=min_days_between,
        recipient_cap=recipient_cap,
        dry_run=dry_run,
        before_claim=None if dry_run else _live_balance(ledger, ref),
    )
    try:
        return sender.send(ref, stop_at=stop_at)
    finally:
        hook.close()


def _live_balance(ledger: SendLedger, ref: BatchRef) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
    # A reminder sent late (a retry, a deferred window, a cleared batch) re-reads the balance first.
    from zoho_whatsapp.reminder_run import live_balance_check  # it builds on this module

    return live_balance_check(ledger, ref)


def tally(
    ledger: SendLedger,
    key: SendKey,
    *,
    run_id: str | None = None,
    unknown_after: timedelta = DEFAULT_UNKNOWN_AFTER,
) -> dict[str, Any]:
    """What became of every message of ``key``: the report both DAGs log and return.

    The counts are ``key``'s totals (every run's); with ``run_id``, ``this_run`` holds what that
    run did itself (a re-run of a date already sent: nothing). ``delivery`` is what Meta's
    receipts say: sent (no receipt yet) / delivered / read / failed by error class, and the
    ``unknown`` rows split into those a receipt may still settle (``unknown_waiting``) and those
    older than ``unknown_after`` (``unknown_to_check``: the only ones a person needs to look at).
    """
    with ledger.transaction() as conn:
        resolved = resolve_unknown_by_receipts(conn, now=ledger.now())
    if resolved:
        log.info("%d message(s) recorded unknown were confirmed sent by Meta's receipts", resolved)
    report = _counts(ledger.account(key))
    with ledger.engine.connect() as conn:
        report["delivery"] = delivery_summary(conn, now=ledger.now(), unknown_after=unknown_after, **asdict(key))
    if run_id is not None:
        report["this_run"] = {k: v for k, v in _counts(ledger.account(key, run_id=run_id)).items()
                              if k not in ("recorded", "open")}
    return report


def _counts(account: Mapping[str, Any]) -> dict[str, Any]:
    by_status = account["by_status"]
    return {
        "recorded": account["total"],
        **{status: by_status.get(status, 0) for status in FINAL},
        "planned": by_status.get("planned", 0),
        "open": sum(by_status.get(status, 0) for status in OPEN),
        "skipped_by_reason": account["skipped_by_reason"],
        "failed_by_code": account["failed_by_code"],
        # Messages, as the customers receive them: a statement of several invoices is one.
        "messages": {status: account["messages_by_status"].get(status, 0)
                     for status in ("sent", "failed", "unknown", "planned")},
        "sent_by_stage": account["sent_by_stage"],
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
    not_on_whatsapp_days: float = DEFAULT_NOT_ON_WHATSAPP_DAYS,
) -> dict[str, Any]:
    """Every step at once for a few messages decided in advance: ``(record, decision)`` pairs."""
    messages = list(messages)
    decisions = {str(record["invoice_id"]): decision for record, decision in messages}
    ledger.record_fetched(key, [record for record, _ in messages], run)
    plan(ledger, key, lambda row: decisions.get(row["invoice_id"]), not_on_whatsapp_days=not_on_whatsapp_days)
    refs = set(batch(ledger, key, batch_size=MAX_BATCHES, not_on_whatsapp_days=not_on_whatsapp_days))
    # Rows left "sending" by an earlier, dead try of this task sit in batch 0 too: the sender
    # turns them into "unknown" rather than resending them.
    for ref in sorted(refs | {BatchRef(key, 0, not_on_whatsapp_days=not_on_whatsapp_days)}, key=lambda r: r.batch):
        send_batch(ledger, ref, run, whatsapp_conn_id=whatsapp_conn_id, messages_per_second=messages_per_second,
                   max_workers=2, recipient_cap=recipient_cap)
    return tally(ledger, key, run_id=run.run_id)
