"""The audit page's tables as CSV, exactly what is on screen, safe to open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets (CSV injection): such text gets a leading ``'``. Numbers stay
numbers. Phone numbers are the masked ones the page shows; no wamid, recipient or Zoho row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet evaluates.

    >>> safe_cell("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> safe_cell(-12), safe_cell("+91 98XXXXXX45")
    (-12, "'+91 98XXXXXX45")
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        value = "; ".join(f"{k}: {v}" for k, v in value.items())
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(row.get(c)) for c in columns])
    return out.getvalue()


def _daily(summary: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    columns = ["day", "family", "sent", "delivered", "read", "failed", "failed_by_code", "skipped",
               "skipped_by_reason", "unknown", "open"]
    rows = []
    for day in summary["daily"]["days"]:
        for family in ("reminders", "alerts"):
            counts = day[family]
            if counts["total"]:
                rows.append({"day": day["day"], "family": family, **counts})
    return columns, rows


def _ageing(summary: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    columns = ["bucket_days_overdue", "reminders", "currency", "amount"]
    rows = []
    for bucket in summary["ageing"]:
        for amount in bucket["amounts"] or [{"currency": None, "amount": None}]:
            rows.append({"bucket_days_overdue": bucket["bucket"], "reminders": bucket["reminders"],
                         "currency": amount["currency"], "amount": amount["amount"]})
    return columns, rows


def _collections(summary: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    columns = ["invoice_number", "customer_name", "reminded_on", "paid_on", "days", "how", "currency", "amount"]
    return columns, list(summary["collections"]["paid"])


def _row_cells(row: Mapping[str, Any]) -> dict[str, Any]:
    delivery = row.get("delivery") or {}
    links = row.get("links") or {}
    return {**row, "delivered_at": delivery.get("delivered_at"), "read_at": delivery.get("read_at"),
            "run_url": links.get("run"), "task_url": links.get("task")}


MESSAGE_COLUMNS = ["at", "kind", "occasion", "invoice_number", "customer_name", "phone", "amount", "status",
                   "reason", "error_code", "error_class", "fix", "error", "delivered_at", "read_at", "run_id",
                   "map_index", "run_url", "task_url"]


def _attention(summary: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    attention = summary["attention"]
    rows = [{"needs": "unknown", **_row_cells(r)} for r in attention["unknown"]]
    rows += [{"needs": "failed", **_row_cells(r)} for r in attention["failed"]]
    rows += [{"needs": "reply", **r} for r in attention["replies"]]
    rows += [{"needs": "opt_out", **r} for r in attention["opt_outs"]]
    return ["needs", *MESSAGE_COLUMNS, "text"], rows


def _messages(summary: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    return MESSAGE_COLUMNS, [_row_cells(r) for r in summary["messages"]]


def _timeline(timeline: Mapping[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    return ["type", *MESSAGE_COLUMNS, "text"], [_row_cells(e) for e in timeline["events"]]


SECTIONS: dict[str, Callable[[Mapping[str, Any]], tuple[list[str], list[dict[str, Any]]]]] = {
    "daily": _daily,
    "ageing": _ageing,
    "collections": _collections,
    "attention": _attention,
    "messages": _messages,
    "timeline": _timeline,
}


def section_csv(section: str, data: Mapping[str, Any]) -> str:
    """CSV of one table of the page; ``data`` is the summary (or, for ``timeline``, the timeline)."""
    columns, rows = SECTIONS[section](data)
    return write_csv(columns, rows)
