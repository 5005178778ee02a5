"""Who was reminded about what, when, and did it go out? Prints the send ledger for a date range.

Usage::

    make audit ARGS="--from 2026-11-01 --to 2026-11-25"
    make audit ARGS="--from 2026-11-01 --csv reminders.csv"
    python -m zoho_whatsapp.audit --status unknown        # what needs a person's check

Phone numbers are shown masked; the CSV has the same columns as the table plus the wamid.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import date
from typing import Any, TextIO

import sqlalchemy as sa

from zoho_whatsapp.ledger import SendLedger
from zoho_whatsapp.ledger.ledger import DEFAULT_CONN_ID
from zoho_whatsapp.ledger.schema import messages

COLUMNS = (
    "occasion", "kind", "invoice_number", "customer_name", "phone_masked", "status", "reason",
    "error_code", "attempts", "claimed_at", "wamid", "run_id",
)
TABLE_COLUMNS = COLUMNS[:9]


def audit_rows(ledger: SendLedger, start: str | None, end: str | None, status: str | None) -> list[dict[str, Any]]:
    query = sa.select(messages).order_by(messages.c.occasion, messages.c.kind, messages.c.invoice_number)
    if start:
        query = query.where(messages.c.occasion >= start)
    if end:
        query = query.where(messages.c.occasion <= end)
    if status:
        query = query.where(messages.c.status == status)
    with ledger.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def print_table(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    cells = [[_cell(r.get(c)) for c in TABLE_COLUMNS] for r in rows]
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
        writer.writerow({c: _cell(row.get(c)) for c in COLUMNS})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="seconds")
    return str(value)


def _day(text: str) -> str:
    return date.fromisoformat(text).isoformat()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoho_whatsapp.audit", description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="start", type=_day, help="first reminder date (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", type=_day, help="last reminder date (YYYY-MM-DD)")
    parser.add_argument("--status", choices=("fetched", "planned", "sending", "sent", "skipped", "failed", "unknown"))
    parser.add_argument("--csv", metavar="FILE", help="write CSV to FILE ('-' for standard output)")
    parser.add_argument("--conn-id", default=DEFAULT_CONN_ID, help="ledger connection (default %(default)s)")
    args = parser.parse_args(argv)
    ledger = SendLedger.from_connection(args.conn_id)
    rows = audit_rows(ledger, args.start, args.end, args.status)
    ledger.dispose()
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
