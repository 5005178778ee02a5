"""The money side of the audit: receivables reminded by age, and what was paid after a reminder.

Pure functions over rows the queries already read (no I/O), so the rules are easy to check:

* **ageing**: each reminder sent is put in a bucket by how many days past due the invoice was on
  the reminder's day (``not yet due``, ``0–30``, ``31–60``, ``61–90``, ``90+``), with the balance
  the reminder was about, summed per currency (never across currencies).
* **collections**: an invoice reminded in the period counts as paid on the first day we have
  evidence of it: a reminder run no longer listed it as owed (the first run after the last one
  that listed it), a row of it was retired as ``no_longer_overdue`` / ``paid_since_fetch``, or a
  ``payment_received`` webhook came for it. Days to payment are counted from the latest reminder
  on or before that day; what was paid within 7 and 14 days is summed, and the median reported.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from zoho_whatsapp.rules.money import format_amount, parse_amount

BUCKETS = ("not yet due", "0–30", "31–60", "61–90", "90+")
NO_DUE_DATE = "unknown due date"
COLLECTION_DAYS = (7, 14)
MAX_PAID_LISTED = 100


def amount_of(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_amount(value)
    except ValueError:
        return None


def days_between(later: str | None, earlier: str | None) -> int | None:
    try:
        return (date.fromisoformat(str(later)[:10]) - date.fromisoformat(str(earlier)[:10])).days
    except ValueError:
        return None


def bucket_of(days_overdue: int | None) -> str:
    """The ageing bucket of an invoice ``days_overdue`` days past due on the reminder's day.

    >>> bucket_of(-3), bucket_of(0), bucket_of(30), bucket_of(31), bucket_of(91)
    ('not yet due', '0–30', '0–30', '31–60', '90+')
    """
    if days_overdue is None:
        return NO_DUE_DATE
    if days_overdue < 0:
        return BUCKETS[0]
    if days_overdue <= 30:
        return BUCKETS[1]
    if days_overdue <= 60:
        return BUCKETS[2]
    if days_overdue <= 90:
        return BUCKETS[3]
    return BUCKETS[4]


def currency_of(row: Mapping[str, Any]) -> str:
    return str(row.get("currency_code") or "INR").upper()


def money(amounts: Mapping[str, Decimal]) -> list[dict[str, Any]]:
    """Per-currency sums as the page shows them: ``[{"currency": "INR", "amount": "1500.00", "text": "₹1,500.00"}]``."""
    out = []
    for currency, amount in sorted(amounts.items(), key=lambda kv: (kv[0] != "INR", kv[0])):
        try:
            text = format_amount(amount, currency)
        except ValueError:
            text = f"{amount:,.2f} {currency}"
        out.append({"currency": currency, "amount": str(amount.quantize(Decimal("0.01"))), "text": text})
    return out


def ageing(groups: Iterable[tuple[int | None, str | None, int, int | None]]) -> list[dict[str, Any]]:
    """Reminders sent per bucket, with the balances they were about.

    ``groups``: ``(days past due on the reminder's day, currency, reminders, sum of balances in
    thousandths)`` as the database grouped them (thousandths keep the sum exact for every currency).
    """
    counts: Counter[str] = Counter()
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for days, currency, n, milli in groups:
        bucket = bucket_of(None if days is None else int(days))
        counts[bucket] += int(n)
        if milli is not None:
            sums[bucket][str(currency or "INR").upper()] += Decimal(int(milli)) / 1000
    order = list(BUCKETS) + sorted(set(counts) - set(BUCKETS))
    return [{"bucket": b, "reminders": counts.get(b, 0), "amounts": money(sums.get(b, {}))} for b in order]


@dataclass(frozen=True)
class Paid:
    """An invoice paid after a reminder: when, how we know, and the reminder it is counted against."""

    invoice_id: str
    reminded_on: str  # the latest reminder on or before the payment
    paid_on: str
    days: int
    how: str
    amount: Decimal | None  # what a payment webhook said was applied; None: the balance at the reminder


def paid_after_reminders(
    reminded: Iterable[tuple[str, str]],
    *,
    last_seen: Mapping[str, tuple[str | None, str | None]],
    run_days: Sequence[str],
    payments: Mapping[str, Sequence[tuple[str, Decimal | None]]],
) -> list[Paid]:
    """Invoices paid within 14 days of a reminder.

    ``reminded``: ``(invoice_id, reminder date)`` of the reminders sent in the period;
    ``last_seen``: per invoice, the last reminder date any run listed it and the first date a row
    of it was retired as paid; ``run_days``: the dates reminder runs happened (sorted);
    ``payments``: per invoice, ``(IST day, amount applied)`` of ``payment_received`` webhooks.
    """
    by_invoice: dict[str, list[str]] = defaultdict(list)
    for invoice_id, occasion in reminded:
        by_invoice[invoice_id].append(occasion)
    paid: list[Paid] = []
    for invoice_id, days in by_invoice.items():
        days.sort()
        found = _paid_on(days[0], last_seen.get(invoice_id, (None, None)), run_days, payments.get(invoice_id, ()))
        if found is None:
            continue
        paid_on, how, amount = found
        before = [d for d in days if d <= paid_on]
        waited = days_between(paid_on, before[-1]) if before else None
        if waited is not None and waited <= max(COLLECTION_DAYS):
            paid.append(Paid(invoice_id, before[-1], paid_on, waited, how, amount))
    return paid


def collections(
    paid: Sequence[Paid],
    reminders: Mapping[tuple[str, str], Mapping[str, Any]],
    *,
    reminded_invoices: int,
    as_of: str | None,
) -> dict[str, Any]:
    """What was paid within 7 and 14 days, per currency, and the median days to payment.

    ``reminders``: the reminder each payment is counted against, by ``(invoice_id, date)``: its
    ``invoice_number``, ``customer_id``, ``customer_name``, ``balance`` and ``currency_code``.
    """
    listed = []
    for p in paid:
        row = reminders.get((p.invoice_id, p.reminded_on), {})
        amount = p.amount if p.amount is not None else amount_of(row.get("balance"))
        listed.append({"invoice_number": row.get("invoice_number"), "customer_id": row.get("customer_id"),
                       "customer_name": row.get("customer_name"), "reminded_on": p.reminded_on,
                       "paid_on": p.paid_on, "days": p.days, "how": p.how, "currency": currency_of(row),
                       "amount": amount})
    windows = []
    for limit in COLLECTION_DAYS:
        within = [p for p in listed if p["days"] <= limit]
        sums: dict[str, Decimal] = defaultdict(Decimal)
        for p in within:
            if p["amount"] is not None:
                sums[p["currency"]] += p["amount"]
        windows.append({"days": limit, "invoices": len(within), "amounts": money(sums)})
    listed.sort(key=lambda p: (p["paid_on"], p["invoice_number"] or ""), reverse=True)
    shown = listed[:MAX_PAID_LISTED]
    for p in shown:
        p["amount_text"] = money({p["currency"]: p["amount"]})[0]["text"] if p["amount"] is not None else None
        p["amount"] = str(p["amount"]) if p["amount"] is not None else None
    return {
        "reminded_invoices": reminded_invoices,
        "windows": windows,
        "median_days": statistics.median([p["days"] for p in listed]) if listed else None,
        "paid": shown,
        "paid_total": len(listed),
        "as_of": as_of,
    }


def _paid_on(
    first_reminder: str,
    seen: tuple[str | None, str | None],
    run_days: Sequence[str],
    payments: Iterable[tuple[str, Decimal | None]],
) -> tuple[str, str, Decimal | None] | None:
    """The earliest evidence of payment after ``first_reminder``: (day, how, amount if a webhook said)."""
    last_listed, retired_on = seen
    evidence: list[tuple[str, str, Decimal | None]] = []
    if retired_on and retired_on > first_reminder:
        evidence.append((retired_on, "retired: no longer owed", None))
    if last_listed:
        after = bisect.bisect_right(run_days, last_listed)
        if after < len(run_days):
            evidence.append((run_days[after], "no longer listed as owed", None))
    for day, amount in payments:
        if day and day >= first_reminder:
            evidence.append((day, "payment received (webhook)", amount))
    if not evidence:
        return None
    # The same day from the overdue list and from a webhook: the list's full balance is what was settled.
    return min(evidence, key=lambda e: (e[0], e[2] is not None))
