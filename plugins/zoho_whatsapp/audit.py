"""Who was reminded about what, when, and did it go out? Prints the send ledger for a date range.

Usage::

    make audit ARGS="--from 2026-11-01 --to 2026-11-25"
    make audit ARGS="--from 2026-11-01 --csv reminders.csv"
    python -m zoho_whatsapp.audit --status unknown        # what needs a person's check

A message's time (``at_ist``) is when it went out or was tried (claimed), else when it was settled,
else when it was recorded; ``--from``/``--to`` are India-time calendar days of that time, so
reminders and instant alerts filter alike. Phone numbers are shown masked. The CSV has the table's
columns plus ``ledger_id`` and ``run_id``; it leaves out the WhatsApp message id (wamid), which
embeds the recipient's full number (``ledger_id`` finds the row, and its wamid, in the ledger).
Cells that a spreadsheet would read as a formula are neutralised.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from zoho_whatsapp.ledger import SendLedger
from zoho_whatsapp.ledger.ledger import DEFAULT_CONN_ID
from zoho_whatsapp.ledger.schema import messages

IST = ZoneInfo("Asia/Kolkata")
TABLE_COLUMNS = (
    "at_ist", "kind", "occasion", "invoice_number", "customer_name", "phone_masked", "status", "reason",
    "error_code", "attempts",
)
# message_id: the ledger_id of the message that carried the invoice (a customer's statement carries
# several); stage: the reminder stage it reached with it (days from the due date).
COLUMNS = ("ledger_id", *TABLE_COLUMNS, "run_id", "message_id", "stage")
STATUSES = ("fetched", "planned", "sending", "sent", "skipped", "failed", "unknown")
# OWASP, "CSV Injection": a spreadsheet runs a cell starting with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

_AT = sa.func.coalesce(messages.c.claimed_at, messages.c.settled_at, messages.c.created_at)


def audit_rows(ledger: SendLedger, start: date | None, end: date | None, status: str | None) -> list[dict[str, Any]]:
    """The ledger's messages whose time falls on the IST days ``start``..``end`` (both included), oldest first."""
    query = sa.select(
        messages.c.id.label("ledger_id"), _AT.label("at"), messages.c.kind, messages.c.occasion,
        messages.c.invoice_number, messages.c.customer_name, messages.c.phone_masked, messages.c.status,
        messages.c.reason, messages.c.error_code, messages.c.attempts, messages.c.run_id, messages.c.message_id,
        messages.c.stage,
    ).order_by(_AT, messages.c.id)
    if start:
        query = query.where(_AT >= _ist_midnight(start))
    if end:
        query = query.where(_AT < _ist_midnight(end + timedelta(days=1)))
    if status:
        query = query.where(messages.c.status == status)
    with ledger.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
    for row in rows:
        row["at_ist"] = _in_ist(row.pop("at"))
    return rows


def print_table(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    cells = [[_printable(_text(r.get(c))) for c in TABLE_COLUMNS] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(TABLE_COLUMNS)]
    widths = [min(w, 28) for w in widths]
    out.write("  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths, strict=True)) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        out.write("  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=True)) + "\n")
    totals = Counter(r["status"] for r in rows)
    out.write(f"\n{len(rows)} message(s): " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())) + "\n")


def write_csv(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: csv_cell(row.get(c)) for c in COLUMNS})


def csv_cell(value: Any) -> str:
    """``value`` as a CSV cell no spreadsheet runs: a leading ``'`` before a formula character (OWASP)."""
    text = _text(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return str(value)


def _printable(text: str) -> str:
    # Names come from Zoho, where anyone can type them: no escape sequence reaches the terminal.
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def _ist_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, IST).astimezone(UTC)


def _in_ist(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:  # SQLite returns the UTC it stored, without the zone
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _read(args: argparse.Namespace) -> list[dict[str, Any]]:
    previous = logging.root.manager.disable
    if args.csv == "-":  # Airflow logs to standard output: not one log line may land in the CSV
        logging.disable(logging.WARNING)
    try:
        ledger = SendLedger.from_connection(args.conn_id)
        try:
            return audit_rows(ledger, args.start, args.end, args.status)
        finally:
            ledger.dispose()
    finally:
        logging.disable(previous)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoho_whatsapp.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="start", type=_day, help="first day, India time (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", type=_day, help="last day, India time (YYYY-MM-DD), included")
    parser.add_argument("--status", choices=STATUSES)
    parser.add_argument("--csv", metavar="FILE", help="write CSV to FILE ('-' for standard output)")
    parser.add_argument("--conn-id", default=DEFAULT_CONN_ID, help="ledger connection (default %(default)s)")
    args = parser.parse_args(argv)
    rows = _read(args)
    if args.csv == "-":
        write_csv(rows, sys.stdout)
    elif args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            write_csv(rows, handle)
        print(f"wrote {len(rows)} row(s) to {args.csv}")
    else:
        print_table(rows, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
