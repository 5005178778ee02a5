"""The reminder DAG as a user runs it: dag.test() against the sandbox, checked on what was received."""

from __future__ import annotations

import json
import math
from collections import Counter

import pendulum
import pytest
import sqlalchemy as sa

from tests.conftest import xcom_result

DAG_ID = "zoho_books_payment_reminders"
pytestmark = pytest.mark.dag


def ledger_rows(ledger) -> list[dict]:
    return ledger.rows()


def test_dag_definition(airflow_db) -> None:
    from local_airflow import load_dag

    dag = load_dag(DAG_ID)  # dags/ free of import errors: tests/dags/test_dag_integrity.py
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert "expression='0 9 * * *'" in repr(dag.timetable)
    assert "Asia/Kolkata" in repr(dag.timetable)
    assert dag.catchup is False
    assert dag.task_ids == ["check_go_live", "refresh_zoho_token", "fetch_overdue_invoices", "plan_reminders",
                            "send_reminders", "account_for_every_invoice"]
    assert set(dag.params) >= {"dry_run", "batch_size", "messages_per_second", "min_days_between_reminders",
                               "resend_unknown", "not_on_whatsapp_days", "unknown_after_minutes"}
    assert (dag.params["not_on_whatsapp_days"], dag.params["unknown_after_minutes"]) == (30, 60)
    assert dag.doc_md and "09:00" in dag.doc_md


def test_end_to_end_every_overdue_invoice_is_accounted_for(sandbox, sqlite_ledger, run_dag, capfd, caplog) -> None:
    result = run_dag(DAG_ID)
    assert result["state"] == "success", result["states"]
    assert_no_secret_in_logs_or_xcom(sandbox, result, capfd, caplog)
    rows = sqlite_ledger.rows()
    truth = sandbox.overdue_invoices()
    # and the invoices a pre-due stage needs: unpaid, due from today to the earliest stage's day (-3)
    today = pendulum.now("Asia/Kolkata").date()
    upcoming = [i for i in sandbox.invoices("unpaid") if i["status"] != "overdue"
                and today <= pendulum.Date.fromisoformat(i["due_date"]) <= today.add(days=3)]
    assert sorted(r["invoice_id"] for r in rows) == sorted(i["invoice_id"] for i in truth + upcoming)
    # the ledger keeps what a reminder needs: not Zoho's payment link, not the numbers as typed
    contacts = {c["contact_id"]: c for c in sandbox.contacts()}
    for r in rows:
        source = json.loads(r["source"])
        assert not {"invoice_url", "_contact", "mobile", "phone", "billing_address"} & set(source)
        assert "SecurePayment" not in r["source"]
        kept = json.dumps({k: v for k, v in source.items() if k != "recipient"}) + (r["error_message"] or "")
        typed = [str(contacts[r["customer_id"]].get(k) or "").strip() for k in ("mobile", "phone")]
        assert not [t for t in typed if len(t) >= 6 and t in kept], r  # only the E.164 recipient, or masked
    status = Counter(r["status"] for r in rows)
    assert set(status) <= {"sent", "skipped", "failed"}
    received = sandbox.messages()
    # one message per customer (and currency): every invoice it carried is sent with its wamid
    assert status["sent"] > len(received) > 100
    assert {m["wamid"] for m in received} == {r["wamid"] for r in rows if r["status"] == "sent"}
    assert len({(m["to"], m["parameters"]["party_name"],
                 m["parameters"].get("total_due", m["parameters"].get("amount_due"))[:1]) for m in received}) == len(received)
    # never a reminder for nothing owed, never a number that is not a mobile
    reasons = Counter(r["reason"] for r in rows if r["status"] == "skipped")
    assert {"no_mobile", "not_mobile", "invalid_mobile", "zero_balance"} <= set(reasons)
    paid = {i["invoice_number"] for i in truth if float(i["balance"]) <= 0}
    named = " ".join(m["parameters"].get("invoice_number") or m["parameters"]["invoice_numbers"] for m in received)
    assert paid and not [n for n in paid if n in named.replace(",", " ").split()]
    assert all(m["to"].startswith("+") for m in received)
    amounts = [m["parameters"].get("total_due") or m["parameters"]["amount_due"] for m in received]
    assert any("$" in a for a in amounts)  # the non-INR customer
    assert any("₹" in a and ",00," in a or "₹1," in a for a in amounts)
    report = xcom_result(result["run"], "account_for_every_invoice")
    assert report["this_run"]["sent"] == report["date_totals"]["sent"] == status["sent"]
    assert report["this_run"]["messages"]["sent"] == report["date_totals"]["messages"]["sent"] == len(received)
    assert report["date_totals"]["open"] == 0 and report["date_totals"]["overdue_invoices"] == len(truth)
    assert report["date_totals"]["invoices"] == len(truth) + len(upcoming)
    assert report["this_run"]["skipped_by_reason"] == dict(reasons)
    customers = len(sandbox.contacts(filter_by="Invoice.Unpaid"))
    books_calls = len(sandbox.requests(service="zoho_books"))  # organizations + invoice pages + contact pages
    assert books_calls <= (math.ceil(len(truth) / 200) + math.ceil(len(upcoming) / 200) + math.ceil(customers / 200)
                           + 2)
    assert len(sandbox.requests(service="zoho_oauth")) == 1  # one token for the whole run


def test_rerun_of_the_same_date_sends_nothing_new(sandbox, sqlite_ledger, run_dag) -> None:
    when = pendulum.datetime(2026, 11, 20, 9, tz="Asia/Kolkata")
    assert run_dag(DAG_ID, when)["state"] == "success"
    first = len(sandbox.messages())
    from zoho_whatsapp.zoho.token_cache import TokenCache

    TokenCache.clear_memory()  # a new worker process: only the Airflow Variable remembers the token
    again = run_dag(DAG_ID, when)
    assert again["state"] == "success"
    assert len(sandbox.messages()) == first
    assert len(sandbox.requests(service="zoho_oauth")) == 1  # the cached token was reused across runs
    # the summary says what this run did (nothing), and apart what the date holds
    report = xcom_result(again["run"], "account_for_every_invoice")
    assert report["run_id"] == again["run"].run_id
    assert (report["this_run"]["sent"], report["this_run"]["failed"], report["this_run"]["unknown"]) == (0, 0, 0)
    assert report["date_totals"]["messages"]["sent"] == first > 50
    assert report["this_run"]["messages"]["sent"] == 0
    assert report["this_run"]["skipped"] == report["date_totals"]["skipped"] > 0  # re-planned by this run


def test_dry_run_renders_everything_and_sends_nothing(sandbox, sqlite_ledger, run_dag) -> None:
    """Triggered by hand with no logical date (the UI's Trigger form): the run's date is today in IST."""
    import pendulum

    result = run_dag(DAG_ID, conf={"dry_run": True}, manual=True)
    assert result["state"] == "success", result["states"]
    assert result["run"].logical_date is None
    assert {r["occasion"] for r in sqlite_ledger.rows()} == {pendulum.now("Asia/Kolkata").date().isoformat()}
    assert sandbox.requests(service="whatsapp") == []
    report = xcom_result(result["run"], "account_for_every_invoice")
    assert report["dry_run"] is True
    assert report["this_run"]["sent"] == report["date_totals"]["sent"] == 0
    planned = sqlite_ledger.rows(status=("planned",))
    assert report["this_run"]["would_send"] == len({r["message_id"] for r in planned}) > 50  # messages
    assert report["this_run"]["planned"] == len(planned)  # the invoices they carry


def age_claims_by_a_day(ledger) -> None:
    """The three dates run within minutes: make the earlier claims a day older, as if each ran on its day
    (the customer cadence counts the real days of the claims)."""
    from datetime import date, timedelta

    from zoho_whatsapp.ledger.schema import messages

    with ledger.transaction() as conn:
        for row_id, day in conn.execute(sa.select(messages.c.id, messages.c.claimed_on).where(
                messages.c.claimed_on.is_not(None))).all():
            conn.execute(messages.update().where(messages.c.id == row_id).values(
                claimed_on=(date.fromisoformat(day) - timedelta(days=1)).isoformat()))


@pytest.mark.sandbox(invoices=40)
def test_stop_reply_then_a_reminder_run_skips_that_customer_and_start_brings_them_back(
    sandbox, sqlite_ledger, set_connection, run_dag
) -> None:
    """Meta (the sandbox) POSTs signed receipts and a customer's STOP to the real endpoint during a run."""
    import requests

    from tests.delivery.helpers import install_whatsapp, reply, serve, signed

    extras = sandbox.webhook_extras()
    install_whatsapp(set_connection, base=sandbox.connections()["whatsapp_default"], **extras)
    # every day's run reminds again every invoice reminded the day before: one stage, repeated daily
    conf = {"min_days_between_reminders": 0, "stages": ["+1"], "repeat_every_days": 1}
    days = [pendulum.datetime(2026, 11, d, 9, tz="Asia/Kolkata") for d in (23, 24, 25)]
    with serve() as (base, _app):
        sandbox.set_faults(callback_url=f"{base}/webhook", callback_delay_ms=20, callback_failed_percent=40,
                           callback_replies=[{"after": 2, "text": "paid yesterday"}, {"after": 5, "text": "STOP"}])
        first = run_dag(DAG_ID, days[0], conf)
        assert first["state"] == "success", first["states"]
        assert sandbox.callbacks.wait_idle(30)
        callbacks = sandbox.callback_log()
        assert {e["http_status"] for e in callbacks} == {200}
        (stop,) = [e for e in callbacks if e["kind"] == "message" and e["text"] == "STOP"]
        stopped = "+" + stop["wa_id"]
        not_on_whatsapp = {"+" + e["wa_id"] for e in callbacks if e["kind"] == "status" and e["status"] == "failed"}
        assert not_on_whatsapp and stopped not in not_on_whatsapp  # only a delivered message is replied to
        day1 = len(sandbox.messages())
        assert stopped in {m["to"] for m in sandbox.messages()}

        age_claims_by_a_day(sqlite_ledger)
        second = run_dag(DAG_ID, days[1], conf)
        assert second["state"] == "success", second["states"]
        day2_to = {m["to"] for m in sandbox.messages()[day1:]}
        assert day2_to and not day2_to & ({stopped} | not_on_whatsapp)
        rows = sqlite_ledger.rows(occasion=days[1].to_date_string())
        to = {r["id"]: json.loads(r["source"]).get("recipient") for r in rows}  # the number planning chose
        assert {r["status"] for r in rows if to[r["id"]] in not_on_whatsapp | {stopped}} == {"skipped"}
        assert {to[r["id"]] for r in rows if r["reason"] == "opted_out"} == {stopped}
        assert {to[r["id"]] for r in rows if r["reason"] == "not_on_whatsapp"} == not_on_whatsapp
        report = xcom_result(second["run"], "account_for_every_invoice")
        by_reason = report["this_run"]["skipped_by_reason"]
        # a suppressed number's invoices are skipped for it, unless nothing was owed on them anyway
        assert {r["reason"] for r in rows if to[r["id"]] == stopped} <= {"opted_out", "zero_balance"}
        assert {r["reason"] for r in rows if to[r["id"]] in not_on_whatsapp} <= {"not_on_whatsapp", "zero_balance"}
        assert by_reason["opted_out"] == sum(r["reason"] == "opted_out" for r in rows) > 0
        assert by_reason["not_on_whatsapp"] == sum(r["reason"] == "not_on_whatsapp" for r in rows) > 0
        # receipts for the first day's messages reached the ledger and its summary (the first run's own
        # report was written before the last receipts arrived: the day's tally is taken again now)
        assert sandbox.callbacks.wait_idle(30)
        from zoho_whatsapp import pipeline
        from zoho_whatsapp.ledger import SendKey

        first_rows = sqlite_ledger.rows(occasion=days[0].to_date_string(), status=("sent",))
        # every invoice of a message has its receipt
        assert len({r["wamid"] for r in first_rows}) == day1 and all(r["delivery_status"] for r in first_rows)
        first_key = SendKey(first_rows[0]["organization_id"], first_rows[0]["kind"], days[0].to_date_string())
        first_tally = pipeline.tally(sqlite_ledger, first_key)
        assert sum(first_tally["delivery"]["by_delivery"].values()) == first_tally["messages"]["sent"] == day1
        assert first_tally["sent"] == len(first_rows)
        first_report = xcom_result(first["run"], "account_for_every_invoice")
        assert first_report["date_totals"]["messages"]["sent"] == day1

        body, headers = signed(reply(stop["wa_id"], "START"), secret=extras["app_secret"])
        answer = requests.post(f"{base}/webhook", data=body, headers=headers, timeout=10)
        assert answer.status_code == 200 and answer.json()["outcomes"] == {"opt_in": 1}
        day2 = len(sandbox.messages())
        age_claims_by_a_day(sqlite_ledger)
        third = run_dag(DAG_ID, days[2], conf)
        assert third["state"] == "success", third["states"]
        assert stopped in {m["to"] for m in sandbox.messages()[day2:]}
        sandbox.callbacks.wait_idle(30)


def test_unreachable_ledger_fails_before_anything_is_sent(sandbox, set_connection, run_dag) -> None:
    set_connection("reminder_ledger_default", {"conn_type": "postgres", "host": "127.0.0.1", "port": 1,
                                               "login": "postgres", "schema": "test"})
    result = run_dag(DAG_ID)
    assert result["state"] == "failed"
    assert result["states"]["fetch_overdue_invoices"] == "failed"
    assert sandbox.requests(service="whatsapp") == []


def test_paid_since_planning_is_not_reminded(sandbox, sqlite_ledger, run_dag) -> None:
    when = pendulum.datetime(2026, 11, 21, 9, tz="Asia/Kolkata")
    assert run_dag(DAG_ID, when, conf={"dry_run": True})["state"] == "success"
    planned = sqlite_ledger.rows(status=("planned",))
    paid = planned[0]
    sandbox.update_invoice(paid["invoice_id"], balance=0, status="paid")
    assert run_dag(DAG_ID, when)["state"] == "success"
    named = " ".join(m["parameters"].get("invoice_number") or m["parameters"]["invoice_numbers"]
                     for m in sandbox.messages())
    assert paid["invoice_number"] not in named.replace(",", " ").split()
    row = sqlite_ledger.rows(id=paid["id"])[0]
    assert (row["status"], row["reason"]) == ("skipped", "no_longer_overdue")


def test_ledger_file_is_not_the_metadata_db(sqlite_ledger, airflow_db) -> None:
    engine = sa.create_engine(f"sqlite:///{airflow_db / 'airflow.db'}")
    with engine.connect() as conn:
        tables = {r[0] for r in conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type='table'"))}
    engine.dispose()
    assert "messages" not in tables



def assert_no_secret_in_logs_or_xcom(sandbox, result, capfd, caplog) -> None:
    """Tokens and secrets are masked in task logs and never pushed through XCom."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    secrets = [sandbox.credentials[k] for k in ("zoho_client_secret", "zoho_refresh_token", "whatsapp_token")]
    secrets += list(sandbox.oauth.access)  # every access token the sandbox issued during the run
    assert len(secrets) >= 4
    assert "reminders for" in logs  # the task logs were captured at all
    with create_session() as session:
        xcoms = " ".join(str(x.value) for x in session.query(XComModel).filter(XComModel.run_id == result["run"].run_id))
    assert "organization_id" in xcoms
    for secret in secrets:
        assert secret not in logs
        assert secret not in xcoms
