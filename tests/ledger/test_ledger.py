"""The send ledger on SQLite and PostgreSQL: claims, cadence, settling, accounting."""

from __future__ import annotations

import os
import stat
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from zoho_whatsapp.ledger import LedgerUnavailable, RecipientCap, RunInfo, SendKey, SendLedger
from zoho_whatsapp.ledger.schema import SCHEMA_VERSION, messages

ORG = "600100"
KIND = "payment_reminder"


def invoice(n: int, **extra: object) -> dict:
    return {"invoice_id": f"98200000{n:04d}", "invoice_number": f"INV-{n:06d}", "customer_id": "c1",
            "customer_name": "Priya Textiles", "balance": 100, **extra}


def key(occasion: str) -> SendKey:
    return SendKey(ORG, KIND, occasion)


def fetch(ledger: SendLedger, occasion: str, invoices: list[dict], run_id: str = "run-1") -> tuple[int, int]:
    return ledger.record_fetched(key(occasion), invoices, RunInfo(dag_id="d", run_id=run_id))


def plan_all(ledger: SendLedger, occasion: str, recipient: str = "+919820012345") -> list[dict]:
    rows = ledger.rows(key=key(occasion), status=("fetched",))
    ledger.plan_many([{"id": r["id"], "recipient": recipient, "phone_masked": "+91 98XXXXXX45",
                       "template_name": "payment_reminder", "template_language": "en",
                       "parameters": {"party_name": r["customer_name"]}} for r in rows], [])
    return ledger.rows(key=key(occasion), status=("planned",))


def claim_all_at_once(ledger: SendLedger, rows: list[dict], **limits: object) -> list[str]:
    """Each row claimed by a thread of its own (its run), all at the same moment: sorted outcomes."""
    outcomes: list[str] = []
    barrier = threading.Barrier(len(rows))

    def contender(row: dict) -> None:
        barrier.wait()
        claim = ledger.claim(row["id"], RunInfo(run_id=row["occasion"], try_number=1), uuid.uuid4().hex, **limits)
        outcomes.append("claimed" if claim.claimed else str(claim.reason))

    threads = [threading.Thread(target=contender, args=(r,)) for r in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(outcomes)


def test_migrate_is_idempotent_and_versioned(ledger: SendLedger) -> None:
    assert ledger.migrate() == SCHEMA_VERSION
    assert ledger.migrate() == SCHEMA_VERSION
    with ledger.engine.connect() as conn:
        versions = [r[0] for r in conn.execute(sa.text("SELECT version FROM schema_version"))]
    assert sorted(versions) == list(range(1, SCHEMA_VERSION + 1))  # one row per applied migration


def test_unique_key_rejects_a_second_row_for_the_same_occasion(ledger: SendLedger) -> None:
    fetch(ledger, "2026-11-25", [invoice(1)])
    now = datetime.now(UTC)
    with pytest.raises(sa.exc.IntegrityError):
        with ledger.transaction() as conn:
            conn.execute(messages.insert().values(organization_id=ORG, invoice_id=invoice(1)["invoice_id"], kind=KIND,
                                                  occasion="2026-11-25", status="planned", attempts=0,
                                                  created_at=now, updated_at=now))


def test_refetch_keeps_sent_rows_and_retires_invoices_no_longer_overdue(ledger: SendLedger) -> None:
    fetch(ledger, "2026-11-25", [invoice(1), invoice(2), invoice(3)])
    planned = plan_all(ledger, "2026-11-25")
    claim = ledger.claim(planned[0]["id"], RunInfo(run_id="run-1", try_number=1), "tok")
    assert claim.claimed
    assert ledger.settle(planned[0]["id"], "tok", "sent", wamid="wamid.1")
    seen, retired = fetch(ledger, "2026-11-25", [invoice(1), invoice(2)], run_id="run-2")  # invoice 3 was paid
    assert (seen, retired) == (2, 1)
    by_number = {r["invoice_number"]: r for r in ledger.rows(organization_id=ORG)}
    assert by_number["INV-000001"]["status"] == "sent"
    assert by_number["INV-000001"]["wamid"] == "wamid.1"
    assert by_number["INV-000002"]["status"] == "fetched"  # re-planned from the fresh data
    assert (by_number["INV-000003"]["status"], by_number["INV-000003"]["reason"]) == ("skipped", "no_longer_overdue")


def test_only_one_of_many_concurrent_claims_wins(ledger: SendLedger) -> None:
    fetch(ledger, "2026-11-25", [invoice(1)])
    row = plan_all(ledger, "2026-11-25")[0]
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def contender(i: int) -> None:
        barrier.wait()
        results.append(ledger.claim(row["id"], RunInfo(run_id=f"run-{i}", try_number=1), uuid.uuid4().hex).claimed)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_cadence_lets_one_of_seven_backfilled_dates_through_even_concurrently(ledger: SendLedger) -> None:
    dates = [f"2026-11-{d:02d}" for d in range(18, 25)]
    rows = []
    for day in dates:
        fetch(ledger, day, [invoice(1)], run_id=f"backfill-{day}")
        rows.extend(plan_all(ledger, day))
    assert claim_all_at_once(ledger, rows, min_days_between=3) == ["cadence"] * 6 + ["claimed"]
    skipped = ledger.rows(organization_id=ORG, status=("skipped",))
    assert {r["reason"] for r in skipped} == {"cadence"}


def test_cadence_counts_ist_days_since_the_last_claim(ledger: SendLedger) -> None:
    fetch(ledger, "2026-11-20", [invoice(1)])
    first = plan_all(ledger, "2026-11-20")[0]
    assert ledger.claim(first["id"], RunInfo(run_id="a", try_number=1), "t1", min_days_between=3).claimed
    ledger.settle(first["id"], "t1", "sent", wamid="w1")
    # Pretend that send happened three IST days ago: a new reminder is due again.
    with ledger.transaction() as conn:
        conn.execute(messages.update().where(messages.c.id == first["id"]).values(
            claimed_on=(datetime.now(UTC) + timedelta(hours=5, minutes=30) - timedelta(days=3)).date().isoformat()))
    fetch(ledger, "2026-11-23", [invoice(1)])
    second = plan_all(ledger, "2026-11-23")[0]
    assert ledger.recently_reminded(key("2026-11-23"), min_days_between=3) == set()
    assert ledger.claim(second["id"], RunInfo(run_id="b", try_number=1), "t2", min_days_between=3).claimed


def test_only_the_claim_holder_can_settle(ledger: SendLedger) -> None:
    fetch(ledger, "2026-11-25", [invoice(1)])
    row = plan_all(ledger, "2026-11-25")[0]
    assert ledger.claim(row["id"], RunInfo(run_id="r", try_number=1), "mine").claimed
    assert not ledger.settle(row["id"], "someone-else", "sent", wamid="x")
    assert ledger.settle(row["id"], "mine", "sent", wamid="wamid.ok")
    assert ledger.rows(id=row["id"])[0]["wamid"] == "wamid.ok"


def test_released_row_can_be_claimed_again(ledger: SendLedger) -> None:
    fetch(ledger, "2026-11-25", [invoice(1)])
    row = plan_all(ledger, "2026-11-25")[0]
    assert ledger.claim(row["id"], RunInfo(run_id="r", try_number=1), "a", min_days_between=3).claimed
    assert ledger.settle(row["id"], "a", "planned", reason="retry_later", error_code=130429)
    assert ledger.claim(row["id"], RunInfo(run_id="r", try_number=2), "b", min_days_between=3).claimed


def test_rows_left_sending_by_a_dead_try_become_unknown(ledger: SendLedger) -> None:
    fetch(ledger, "2026-11-25", [invoice(1), invoice(2)])
    rows = plan_all(ledger, "2026-11-25")
    first_try = RunInfo(dag_id="d", run_id="r", map_index=0, try_number=1)
    assert ledger.claim(rows[0]["id"], first_try, "dead").claimed
    other_run = RunInfo(dag_id="d", run_id="other", map_index=0, try_number=1)
    assert ledger.claim(rows[1]["id"], other_run, "alive").claimed
    second_try = RunInfo(dag_id="d", run_id="r", map_index=0, try_number=2)
    assert ledger.mark_interrupted([rows[0]["id"], rows[1]["id"]], second_try) == 1
    states = {r["id"]: (r["status"], r["reason"]) for r in ledger.rows(organization_id=ORG)}
    assert states[rows[0]["id"]] == ("unknown", "interrupted")
    assert states[rows[1]["id"]] == ("sending", None)  # another run's live claim is not ours to judge


def test_account_counts_by_status_reason_and_code(ledger: SendLedger) -> None:
    fetch(ledger, "2026-11-25", [invoice(i) for i in range(1, 5)])
    rows = ledger.rows(organization_id=ORG, status=("fetched",))
    ledger.plan_many(
        [{"id": rows[0]["id"], "recipient": "+919820012345", "phone_masked": "m", "template_name": "t",
          "template_language": "en", "parameters": {}},
         {"id": rows[1]["id"], "recipient": "+919820012346", "phone_masked": "m", "template_name": "t",
          "template_language": "en", "parameters": {}}],
        [{"id": rows[2]["id"], "reason": "no_mobile"}, {"id": rows[3]["id"], "reason": "zero_balance"}],
    )
    assert ledger.claim(rows[1]["id"], RunInfo(run_id="r", try_number=1), "t").claimed
    ledger.settle(rows[1]["id"], "t", "failed", reason="whatsapp_error", error_code=131026)
    account = ledger.account(key("2026-11-25"))
    assert account["by_status"] == {"planned": 1, "failed": 1, "skipped": 2}
    assert account["skipped_by_reason"] == {"no_mobile": 1, "zero_balance": 1}
    assert account["failed_by_code"] == {"131026": 1}


def test_unreachable_ledger_names_the_connection(set_connection) -> None:
    set_connection("reminder_ledger_default", {"conn_type": "postgres", "host": "127.0.0.1", "port": 1,
                                               "login": "postgres", "schema": "test"})
    with pytest.raises(LedgerUnavailable, match="reminder_ledger_default.*unreachable.*Nothing was sent"):
        SendLedger.from_connection()


def test_embedded_sqlite_default_is_created_under_airflow_home(set_connection, tmp_path, monkeypatch) -> None:
    set_connection("reminder_ledger_default", None)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    ledger = SendLedger.from_connection()
    assert (tmp_path / "reminder_ledger.db").exists()
    assert ledger.rows() == []
    ledger.dispose()


def test_recipient_cap_lets_n_alerts_to_one_number_through_per_hour_even_concurrently(ledger: SendLedger) -> None:
    number, cap = "+919820012345", RecipientCap(5, ("invoice_created", "payment_received"))
    rows = []
    for n in range(1, 9):  # eight alerts about eight invoices, all to one number
        alert = SendKey(ORG, "invoice_created", invoice(n)["invoice_id"])
        ledger.record_fetched(alert, [invoice(n)], RunInfo(run_id="r"))
        ledger.plan_many([{"id": r["id"], "recipient": number, "phone_masked": "+91 98XXXXXX45",
                           "template_name": "invoice_created", "template_language": "en", "parameters": {}}
                          for r in ledger.rows(key=alert)], [])
        rows.extend(ledger.rows(key=alert))
    assert claim_all_at_once(ledger, rows, recipient_cap=cap) == ["claimed"] * 5 + ["recipient_hourly_cap"] * 3
    capped = ledger.rows(status=("skipped",))
    assert {r["reason"] for r in capped} == {"recipient_hourly_cap"} and len(capped) == 3
    # a reminder to the same number is not an alert: the cap does not count or stop it
    fetch(ledger, "2026-11-25", [invoice(20)])
    reminder = plan_all(ledger, "2026-11-25", recipient=number)[0]
    assert ledger.claim(reminder["id"], RunInfo(run_id="rem", try_number=1), "t", recipient_cap=cap).claimed
    # an hour later the number may get alerts again
    with ledger.transaction() as conn:
        conn.execute(messages.update().where(messages.c.status == "sending")
                     .values(claimed_at=datetime.now(UTC) - timedelta(minutes=61)))
    late = SendKey(ORG, "payment_received", "982000000777")
    ledger.record_fetched(late, [invoice(30)], RunInfo(run_id="r"))
    ledger.plan_many([{"id": r["id"], "recipient": number, "phone_masked": "m", "template_name": "payment_received",
                       "template_language": "en", "parameters": {}} for r in ledger.rows(key=late)], [])
    assert ledger.claim(ledger.rows(key=late)[0]["id"], RunInfo(run_id="late", try_number=1), "t2",
                        recipient_cap=cap).claimed


def test_embedded_sqlite_file_is_readable_by_its_owner_only(set_connection, tmp_path, monkeypatch) -> None:
    set_connection("reminder_ledger_default", None)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    previous = os.umask(0o022)  # the usual umask would leave a new file world-readable
    try:
        ledger = SendLedger.from_connection()
        fetch(ledger, "2026-11-25", [invoice(1)])
    finally:
        os.umask(previous)
    files = sorted(tmp_path.glob("reminder_ledger.db*"))
    assert tmp_path / "reminder_ledger.db" in files
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}
    ledger.dispose()


def test_an_opted_out_number_is_refused_even_under_the_alert_cap(ledger: SendLedger) -> None:
    from zoho_whatsapp.ledger.delivery import apply_reply
    from zoho_whatsapp.webhooks.whatsapp_events import InboundMessage

    number, cap = "+919820012345", RecipientCap(5, ("invoice_created", "payment_received"))
    now = datetime.now(UTC)
    with ledger.transaction() as conn:  # the customer replied STOP after the alert was planned
        apply_reply(conn, InboundMessage(message_id="in1", sender=number, at=now, type="text", text="STOP"),
                    now=now, opt_out=("STOP",), opt_in=("START",))
    alert = SendKey(ORG, "invoice_created", invoice(1)["invoice_id"])
    ledger.record_fetched(alert, [invoice(1)], RunInfo(run_id="r"))
    ledger.plan_many([{"id": r["id"], "recipient": number, "phone_masked": "+91 98XXXXXX45",
                       "template_name": "invoice_created", "template_language": "en", "parameters": {}}
                      for r in ledger.rows(key=alert)], [])
    (row,) = ledger.rows(key=alert)
    result = ledger.claim(row["id"], RunInfo(run_id="r", try_number=1), "t", recipient_cap=cap)
    assert (result.claimed, result.reason) == (False, "opted_out")
    assert [(r["status"], r["reason"]) for r in ledger.rows(key=alert)] == [("skipped", "opted_out")]
