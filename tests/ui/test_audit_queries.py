"""The audit page's numbers from a ledger written through the ledger's own API, on SQLite and PostgreSQL.

Three reminder runs of one organization (days A, B = A+3, C = A+9): on A five invoices are listed,
two sent (one then delivered and read), one refused by Meta (131026), one lost (unknown) and one
without a mobile; I1 is paid before B and I2 before C (they leave the list); a payment webhook for
I2 and a customer's replies ("paid yesterday", "STOP") complete it.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from zoho_whatsapp.ledger import RunInfo, SendKey
from zoho_whatsapp.ledger.delivery import apply_reply, apply_status
from zoho_whatsapp.rules.money import format_amount
from zoho_whatsapp.ui import receivables
from zoho_whatsapp.ui.export import safe_cell, section_csv
from zoho_whatsapp.ui.queries import AuditQueries, Scope, airflow_links, today_ist
from zoho_whatsapp.webhooks.whatsapp_events import InboundMessage, StatusUpdate

ORG = "60012345678"
DAG = "zoho_books_payment_reminders"
# The recorded days are fixed when the module is imported; scopes end on the IST day each test runs, so a
# run collected before IST midnight and executed after it still sees the receipts and replies made "now".
TODAY = today_ist()
A, B, C = TODAY - timedelta(days=12), TODAY - timedelta(days=9), TODAY - timedelta(days=3)


def invoice(n: int, *, overdue_on_a: int, balance: str, currency: str = "INR", customer: str = "C1") -> dict:
    return {"invoice_id": f"98200000050{n:04d}", "invoice_number": f"INV-{n:06d}", "customer_id": customer,
            "customer_name": f"Customer {customer}", "currency_code": currency, "balance": balance,
            "due_date": (A - timedelta(days=overdue_on_a)).isoformat(), "_contact": {"mobile": "+91 98200 12345"}}


I1 = invoice(1, overdue_on_a=5, balance="1000.50")  # 0–30 bucket, paid before B
I2 = invoice(2, overdue_on_a=45, balance="2500.00", customer="C2")  # 31–60, paid before C
I3 = invoice(3, overdue_on_a=75, balance="300.00", customer="C3")  # refused by Meta
I4 = invoice(4, overdue_on_a=120, balance="99.99", currency="USD", customer="C4")  # unknown
I5 = invoice(5, overdue_on_a=10, balance="50.00", customer="C5")  # no mobile
NUMBERS = {"C1": "+919820012301", "C2": "+919820012302", "C3": "+919820012303", "C4": "+14155550104"}


def run_for(day: date) -> RunInfo:
    return RunInfo(dag_id=DAG, run_id=f"scheduled__{day}T03:30:00+00:00", map_index=1, try_number=1)


def record_day(ledger, day: date, invoices: list[dict], outcomes: dict[str, tuple]) -> dict[str, dict]:
    """Record what Zoho listed on ``day``, plan, and claim and settle as ``outcomes`` says (by invoice id)."""
    key = SendKey(ORG, "payment_reminder", day.isoformat())
    run = run_for(day)
    ledger.record_fetched(key, invoices, run)
    rows = {r["invoice_id"]: r for r in ledger.rows(key=key)}
    plans, skips = [], []
    for invoice_id, row in rows.items():
        outcome = outcomes.get(invoice_id, ("skipped", "cadence"))
        if outcome[0] == "skipped":
            skips.append({"id": row["id"], "reason": outcome[1], "detail": "not_mobile: '022 2345 6789' (FIXED_LINE)"})
        else:
            customer = row["customer_id"]
            plans.append({"id": row["id"], "recipient": NUMBERS[customer], "phone_masked": f"+91 98XXXXXX0{customer[-1]}",
                          "template_name": "payment_reminder", "template_language": "en",
                          "parameters": {"amount_due": f"₹{row['invoice_number']}"}})
    ledger.plan_many(plans, skips)
    for plan in plans:
        row_id = plan["id"]
        invoice_id = next(i for i, r in rows.items() if r["id"] == row_id)
        status, *detail = outcomes[invoice_id]
        token = uuid.uuid4().hex
        assert ledger.claim(row_id, run, token).claimed
        if status == "sent":
            ledger.settle(row_id, token, "sent", wamid=f"wamid.{invoice_id}.{day}")
        elif status == "failed":
            ledger.settle(row_id, token, "failed", error_code=detail[0], error_message="(#131026) Message undeliverable")
        else:
            ledger.settle(row_id, token, "unknown", reason="timeout")
    return {r["invoice_id"]: r for r in ledger.rows(key=key)}


@pytest.fixture
def audit(ledger):
    day_a = record_day(ledger, A, [I1, I2, I3, I4, I5], {
        I1["invoice_id"]: ("sent",), I2["invoice_id"]: ("sent",), I3["invoice_id"]: ("failed", 131026),
        I4["invoice_id"]: ("unknown",), I5["invoice_id"]: ("skipped", "no_mobile")})
    record_day(ledger, B, [I2, I3, I4, I5], {I5["invoice_id"]: ("skipped", "no_mobile")})
    record_day(ledger, C, [I3, I4, I5], {I5["invoice_id"]: ("skipped", "no_mobile")})
    # A payment webhook for I2 (the alert DAG records it like any message).
    pay = SendKey(ORG, "payment_received", "982000000900001")
    ledger.record_fetched(pay, [{**I2, "amount_applied": 2500.0}], RunInfo(dag_id="zoho_books_invoice_alerts",
                                                                               run_id="asset_triggered__1", map_index=0))
    now = datetime.now(UTC)
    with ledger.transaction() as conn:
        wamid = f"wamid.{I1['invoice_id']}.{A}"
        for status, minutes in (("delivered", 1), ("read", 5)):
            apply_status(conn, StatusUpdate(wamid=wamid, status=status, at=now + timedelta(minutes=minutes),
                                            recipient=NUMBERS["C1"], callback_data=None), now=now)
        for n, text in ((1, "paid yesterday, my number is 98200 12345"), (2, "STOP")):
            apply_reply(conn, InboundMessage(message_id=f"in{n}", sender=NUMBERS["C2"], at=now, type="text", text=text),
                        now=now, opt_out=("STOP",), opt_in=("START",))
    return AuditQueries(ledger.engine, airflow_base="/airflow"), day_a


def test_daily_counts_by_status_reason_code_and_receipt(audit) -> None:
    queries, _ = audit
    end = today_ist()
    daily = queries.daily(Scope(ORG, A, end))
    day_a = next(d for d in daily["days"] if d["day"] == A.isoformat())["reminders"]
    assert {k: day_a[k] for k in ("sent", "delivered", "read", "failed", "skipped", "unknown", "open", "total")} == {
        "sent": 2, "delivered": 1, "read": 1, "failed": 1, "skipped": 1, "unknown": 1, "open": 0, "total": 5}
    assert day_a["failed_by_code"] == {"131026": 1} and day_a["skipped_by_reason"] == {"no_mobile": 1}
    day_b = next(d for d in daily["days"] if d["day"] == B.isoformat())["reminders"]
    assert day_b["skipped_by_reason"] == {"cadence": 3, "no_mobile": 1} and day_b["sent"] == 0
    assert daily["totals"]["reminders"]["skipped"] == 1 + 4 + 3
    assert len(daily["days"]) == (end - A).days + 1
    # Another organization's rows, or a period that ends before A, show nothing.
    assert queries.daily(Scope("other", A, end))["totals"]["reminders"]["total"] == 0
    assert queries.daily(Scope(ORG, A - timedelta(days=5), A - timedelta(days=1)))["totals"]["reminders"]["total"] == 0


def test_ageing_buckets_and_amounts_per_currency(audit) -> None:
    queries, _ = audit
    scope = Scope(ORG, A, today_ist())
    buckets = {b["bucket"]: b for b in receivables.ageing((r.days, r.currency, 1, r.milli) for r in queries.reminded(scope))}
    assert buckets["0–30"]["reminders"] == 1 and buckets["0–30"]["amounts"] == [
        {"currency": "INR", "amount": "1000.50", "text": format_amount(Decimal("1000.50"), "INR")}]
    assert buckets["31–60"]["amounts"][0]["text"] == "₹2,500.00"
    # Refused, unknown and skipped reminders were not sent: they are in no bucket.
    assert sum(b["reminders"] for b in buckets.values()) == 2 and buckets["90+"]["reminders"] == 0


def test_collections_within_7_and_14_days(audit) -> None:
    queries, _ = audit
    scope = Scope(ORG, A, today_ist())
    result = queries.collections(scope, queries.reminded(scope))
    within = {w["days"]: w for w in result["windows"]}
    assert within[7]["invoices"] == 1 and within[7]["amounts"][0]["text"] == "₹1,000.50"
    assert within[14]["invoices"] == 2 and within[14]["amounts"][0]["text"] == "₹3,500.50"
    assert result["median_days"] == 6  # 3 days (A -> B) and 9 days (A -> C)
    paid = {p["invoice_number"]: p for p in result["paid"]}
    assert paid["INV-000001"]["paid_on"] == B.isoformat() and paid["INV-000002"]["paid_on"] == C.isoformat()
    assert result["reminded_invoices"] == 2 and result["as_of"] == C.isoformat()


def test_what_needs_a_person_and_links_to_airflow(audit) -> None:
    queries, day_a = audit
    attention = queries.attention(Scope(ORG, A, today_ist()))
    (failed,) = attention["failed"]
    assert failed["invoice_number"] == "INV-000003" and failed["error_code"] == 131026
    assert failed["error_class"] == "NotOnWhatsApp" and "correct the mobile in Zoho" in failed["fix"]
    assert failed["links"] == airflow_links("/airflow", {**day_a[I3["invoice_id"]], "status": "failed"})
    assert failed["links"]["task"] == (
        f"/airflow/dags/{DAG}/runs/scheduled__{A}T03%3A30%3A00%2B00%3A00/tasks/send_reminders/mapped/1")
    (unknown,) = attention["unknown"]
    assert unknown["invoice_number"] == "INV-000004" and attention["unknown_total"] == 1
    assert [r["text"] for r in attention["replies"]] == ["paid yesterday, my number is 98XXXXXX45"]
    assert [r["consent_action"] for r in attention["opt_outs"]] == ["opt_out"]
    assert attention["replies"][0]["customer_id"] == "C2"


def test_a_customers_timeline(audit) -> None:
    queries, _ = audit
    timeline = queries.timeline(Scope(ORG, A, today_ist()), "C2")
    kinds = [(e["type"], e.get("invoice_number"), e.get("status")) for e in timeline["events"]]
    assert ("message", "INV-000002", "sent") in kinds
    assert {t for t, _, _ in kinds} == {"message", "reply", "opt_out"}
    assert timeline["cadence_skips"] == 1  # listed on B, not reminded again
    assert all("recipient" not in e and "source" not in e and "wamid" not in e for e in timeline["events"])


def test_summary_run_scope_and_csv(audit) -> None:
    queries, _ = audit
    assert queries.organizations() == [ORG] and queries.latest_organization() == ORG
    run = queries.run_scope(DAG, f"scheduled__{A}T03:30:00+00:00")
    assert (run.start, run.end, run.kinds) == (A, A, ("payment_reminder",))
    summary = queries.summary(Scope(ORG, A, today_ist()))
    assert summary["daily"]["totals"]["reminders"]["sent"] == 2 and summary["messages_total"] == 4
    rows = list(csv.DictReader(io.StringIO(section_csv("attention", summary))))
    assert {r["needs"] for r in rows} == {"unknown", "failed", "reply", "opt_out"}
    skipped = [r for r in csv.DictReader(io.StringIO(section_csv("messages", summary)))]
    assert all(r["phone"].startswith("'+") for r in skipped if r["phone"])
    assert "98200 12345" not in section_csv("attention", summary)


@pytest.mark.parametrize("value, cell", [
    ("=1+1", "'=1+1"), ("+91 98XXXXXX45", "'+91 98XXXXXX45"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"), ("INV-1", "INV-1"), (-2, -2), (None, ""),
])
def test_csv_cells_are_never_formulas(value, cell) -> None:
    assert safe_cell(value) == cell


def test_paid_on_is_the_earliest_evidence_and_days_count_from_the_latest_reminder() -> None:
    reminded = [("i1", "2026-01-01"), ("i1", "2026-01-05"), ("i2", "2026-01-01"), ("i3", "2026-01-01")]
    paid = receivables.paid_after_reminders(
        reminded,
        last_seen={"i1": ("2026-01-06", None), "i2": ("2026-01-20", None), "i3": ("2026-01-01", "2026-01-01")},
        run_days=["2026-01-01", "2026-01-05", "2026-01-06", "2026-01-08", "2026-01-20"],
        payments={"i2": [("2026-01-03", Decimal("10"))]},
    )
    by_id = {p.invoice_id: p for p in paid}
    assert (by_id["i1"].paid_on, by_id["i1"].reminded_on, by_id["i1"].days) == ("2026-01-08", "2026-01-05", 3)
    assert (by_id["i2"].paid_on, by_id["i2"].amount) == ("2026-01-03", Decimal("10"))  # the webhook came first
    assert by_id["i3"].paid_on == "2026-01-05"  # a retirement on the reminder's own day proves nothing
    assert receivables.bucket_of(None) == receivables.NO_DUE_DATE


def test_a_ledger_without_receipts_or_replies_shows_dashes(tmp_path) -> None:
    """A ledger still at migration 2 (no delivery receipts, no replies table): "—", not 0 and not an error."""
    import sqlalchemy as sa

    from zoho_whatsapp.ledger.schema import delivery_columns, messages

    receipts = {c.name for c in delivery_columns.columns}

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    old = sa.MetaData()
    sa.Table("messages", old, *(c.copy() for c in messages.columns if c.name not in receipts))
    old.create_all(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO messages (organization_id, invoice_id, kind, occasion, status, attempts, created_at, updated_at,"
            " source, customer_id, map_index, dag_id, run_id) VALUES (:o, 'i1', 'payment_reminder', :d, 'sent', 1,"
            " :t, :t, :s, 'C1', 0, 'd', 'r')"),
            {"o": ORG, "d": A.isoformat(), "t": now, "s": '{"due_date": "2026-01-01", "balance": 5, "currency_code": "INR"}'})
    queries = AuditQueries(engine)
    assert not queries.shape.receipts and not queries.shape.replies
    summary = queries.summary(Scope(ORG, A, today_ist()))
    totals = summary["daily"]["totals"]["reminders"]
    assert (totals["sent"], totals["delivered"], totals["read"]) == (1, None, None)
    assert summary["attention"]["replies_total"] is None and summary["messages"][0]["delivery"] is None
    empty = AuditQueries(sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}"))
    assert empty.organizations() == [] and empty.latest_organization() is None and empty.run_scope(None, "r") is None


def test_amounts_are_read_from_the_zoho_row_once(audit, ledger) -> None:
    import sqlalchemy as sa

    from zoho_whatsapp.ledger.schema import audit_amounts, messages

    queries, day_a = audit
    scope = Scope(ORG, A, today_ist())
    first = {r.invoice_id: r.milli for r in queries.reminded(scope)}
    with ledger.engine.connect() as conn:
        kept = {r.message_id: r.balance_milli for r in conn.execute(sa.select(audit_amounts))}
    row = day_a[I1["invoice_id"]]
    assert kept == {row["id"]: 1000500, day_a[I2["invoice_id"]]["id"]: 2500000} == {
        day_a[i]["id"]: m for i, m in first.items()}
    # Shown once, the balance stays what the page read, whatever a later re-read of Zoho wrote since.
    with ledger.transaction() as conn:
        conn.execute(messages.update().where(messages.c.id == row["id"]).values(source="not JSON any more"))
    assert {r.invoice_id: r.milli for r in queries.reminded(scope)} == first
