"""`make audit` as a person uses it: the table it prints and the CSV it writes, over a real ledger.

The ledger is filled by the reminder DAG against the sandbox, or, for exact times, by plain SQL on
its ``messages`` table (reminders and alerts as the pipeline writes them).
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from zoho_whatsapp.audit import COLUMNS, TABLE_COLUMNS, main


def audit(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def table_rows(out: str) -> list[dict[str, str]]:
    """The printed table's rows, cut at the column positions its dashed line shows."""
    lines = out.splitlines()
    dashes = lines[1]
    spans, start = [], 0
    for width in (len(d) for d in dashes.split("  ")):
        spans.append((start, start + width))
        start += width + 2
    body = lines[2:lines.index("")]
    return [{c: line[a:b].strip() for c, (a, b) in zip(TABLE_COLUMNS, spans, strict=True)} for line in body]


def one_invoice_per_number(sandbox: Any) -> None:
    """Meta spaces messages to one number 6 s apart: each number keeps one overdue invoice (the rest are paid)."""
    from zoho_whatsapp.rules.phone import UnusableNumber, to_whatsapp_number

    seen: set[str] = set()
    for invoice in sandbox.overdue_invoices():
        try:
            number = to_whatsapp_number((sandbox.contact(invoice["customer_id"]) or {}).get("mobile"), "IN")
        except UnusableNumber:
            continue
        if number in seen:
            sandbox.update_invoice(invoice["invoice_id"], balance=0, status="paid")
        seen.add(number)


@pytest.mark.dag
def test_the_csv_and_table_show_no_wamid_and_no_full_number_and_no_live_formula(
    sandbox: Any, sqlite_ledger: Any, run_dag: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    one_invoice_per_number(sandbox)
    overdue = [i for i in sandbox.overdue_invoices() if float(i["balance"]) > 0]
    formula, escape = overdue[0], overdue[1]
    # Customer names are typed into Zoho by anyone on the account.
    sandbox.update_invoice(formula["invoice_id"], customer_name='=HYPERLINK("https://evil.example/pay","Pay")')
    sandbox.update_invoice(escape["invoice_id"], customer_name="\x1b]8;;https://evil.example\x07Acme")
    assert run_dag("zoho_books_payment_reminders")["state"] == "success"
    received = sandbox.messages()
    assert len(received) > 10

    path = tmp_path / "audit.csv"
    assert audit(capsys, "--csv", str(path)) == f"wrote {len(sqlite_ledger.rows())} row(s) to {path}\n"
    text = path.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == COLUMNS and "wamid" not in text.splitlines()[0]
    assert len(rows) == len(sqlite_ledger.rows())
    # a row per invoice; a customer's invoices share one message (message_id)
    assert len({r["message_id"] for r in rows if r["status"] == "sent"}) == len(received)
    for message in received:  # the wamid embeds the number: neither may appear anywhere
        assert message["wamid"] not in text
        assert message["wamid"].removeprefix("wamid.") not in text
        assert message["to"] not in text and message["to"].lstrip("+")[-10:] not in text
    by_number = {r["invoice_number"]: r for r in rows}
    assert by_number[formula["invoice_number"]]["customer_name"] == '\'=HYPERLINK("https://evil.example/pay","Pay")'
    masked = [r["phone_masked"] for r in rows if r["phone_masked"]]
    assert masked and all(m.startswith("'+") for m in masked)  # "+91 98XX…" would be a formula too
    sent = next(r for r in rows if r["status"] == "sent")
    ledger_row = sqlite_ledger.rows(id=int(sent["ledger_id"]))[0]  # the id finds the wamid, for whoever may see it
    assert ledger_row["wamid"] in {m["wamid"] for m in received}

    out = audit(capsys)
    shown = table_rows(out)
    assert len(shown) == len(rows)
    assert "wamid" not in out
    for message in received:
        assert message["to"] not in out and message["to"].lstrip("+")[-10:] not in out
    assert "\x1b" not in out and "\x07" not in out
    assert any(r["customer_name"].startswith("?]8;;https://evil.exam") for r in shown)
    totals = Counter(r["status"] for r in rows)
    assert out.rstrip().endswith(f"{len(rows)} message(s): " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))


def utc(moment: str) -> datetime:
    """An instant given in UTC, as the ledger stores it."""
    return datetime.fromisoformat(moment).replace(tzinfo=UTC)


# What the pipeline writes: reminders keyed by their date, alerts by the event's id.
ROWS = [
    # (invoice, kind, occasion, status, created, claimed) in UTC; IST = UTC + 5:30
    ("R-NOV04", "payment_reminder", "2026-11-04", "sent", "2026-11-04T03:30:00", "2026-11-04T03:31:00"),
    ("A-NOV05", "invoice_created", "982000000123456", "sent", "2026-11-05T04:30:00", "2026-11-05T04:30:05"),
    ("A-NOV06-EARLY", "payment_received", "1000", "sent", "2026-11-05T19:00:00", "2026-11-05T19:00:02"),
    ("R-NOV06", "payment_reminder", "2026-11-06", "skipped", "2026-11-06T03:30:00", None),
    # a backfill of 1 November, run on 5 November: the audit says when it went out
    ("R-BACKFILL", "payment_reminder", "2026-11-01", "sent", "2026-11-05T05:00:00", "2026-11-05T05:00:09"),
]


def insert(ledger: Any, rows: list[tuple[Any, ...]], customer: str = "Priya Textiles") -> None:
    from zoho_whatsapp.ledger.schema import messages

    with ledger.engine.begin() as conn:
        for number, kind, occasion, status, created, claimed in rows:
            conn.execute(messages.insert().values(
                organization_id="60000000001", invoice_id=f"id-{number}", kind=kind, occasion=occasion,
                invoice_number=number, customer_name=customer, status=status,
                reason="no_mobile" if status == "skipped" else None, phone_masked="+91 98XXXXXX45",
                wamid="wamid.HBgMOTE5ODIwMDEyMzQ1FQIAERgS" if status == "sent" else None, attempts=1,
                created_at=utc(created), updated_at=utc(claimed or created),
                claimed_at=utc(claimed) if claimed else None, settled_at=utc(claimed) if claimed else None,
            ))


@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--from", "2026-11-05", "--to", "2026-11-05"], [("A-NOV05", "2026-11-05 10:00:05"),
                                                           ("R-BACKFILL", "2026-11-05 10:30:09")]),
        (["--from", "2026-11-06"], [("A-NOV06-EARLY", "2026-11-06 00:30:02"), ("R-NOV06", "2026-11-06 09:00:00")]),
        (["--to", "2026-11-04"], [("R-NOV04", "2026-11-04 09:01:00")]),
        (["--from", "2026-11-05", "--status", "sent"], [("A-NOV05", "2026-11-05 10:00:05"),
                                                        ("R-BACKFILL", "2026-11-05 10:30:09"),
                                                        ("A-NOV06-EARLY", "2026-11-06 00:30:02")]),
    ],
    ids=["one-day", "from", "to", "from-sent"],
)
def test_from_and_to_are_india_days_of_when_each_message_went_out(
    ledger: Any, capsys: pytest.CaptureFixture[str], argv: list[str], expected: list[tuple[str, str]]
) -> None:
    insert(ledger, ROWS)
    shown = table_rows(audit(capsys, *argv))
    assert [(r["invoice_number"], r["at_ist"]) for r in shown] == expected
    csv_rows = list(csv.DictReader(io.StringIO(audit(capsys, *argv, "--csv", "-"))))
    assert [(r["invoice_number"], r["at_ist"]) for r in csv_rows] == expected


@pytest.mark.parametrize("name", ["=1+1", "+1-1", "-1+1", "@SUM(A1)", "\t=1+1", "\r=1+1"])
def test_a_name_a_spreadsheet_would_run_is_written_as_text(
    sqlite_ledger: Any, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    insert(sqlite_ledger, ROWS[:1], customer=name)
    insert(sqlite_ledger, [("R-PLAIN", "payment_reminder", "2026-11-04", "sent", "2026-11-04T03:30:00", None)],
           customer="Priya Textiles")
    rows = {r["invoice_number"]: r for r in csv.DictReader(io.StringIO(audit(capsys, "--csv", "-")))}
    assert rows["R-NOV04"]["customer_name"] == "'" + name
    assert rows["R-PLAIN"]["customer_name"] == "Priya Textiles"


def test_csv_on_standard_output_is_only_the_csv(tmp_path: Any) -> None:
    """``make audit ARGS="--csv -" > file``: no log line in the file, whichever ledger it falls back to."""
    import subprocess
    import sys

    import local_airflow

    from zoho_whatsapp.ledger import SendLedger

    home = tmp_path / "airflow-home"
    ledger = SendLedger(f"sqlite:///{home / 'reminder_ledger.db'}")  # the default when no connection is defined
    ledger.migrate()
    insert(ledger, ROWS)
    ledger.dispose()
    out = subprocess.run([sys.executable, "-m", "zoho_whatsapp.audit", "--csv", "-"], env=local_airflow.environment(home),
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == ",".join(COLUMNS)
    assert [r["invoice_number"] for r in csv.DictReader(io.StringIO(out))] == [
        "R-NOV04", "A-NOV05", "R-BACKFILL", "A-NOV06-EARLY", "R-NOV06"]
