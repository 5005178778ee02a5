"""The reminder DAG on the sandbox's collections scenario: one message per customer, stages, cadence.

Each test runs the real DAG (dag.test()) against ``Sandbox(scenario="collections")`` over real HTTP
and checks what reached the sandbox's WhatsApp endpoint and what the ledger holds.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import date, timedelta

import pendulum
import pytest

from tests.conftest import xcom_result

DAG_ID = "zoho_books_payment_reminders"
pytestmark = [pytest.mark.dag, pytest.mark.sandbox(scenario="collections")]


def today_ist() -> date:
    return pendulum.now("Asia/Kolkata").date()


def nine_am(day: date) -> pendulum.DateTime:
    return pendulum.datetime(day.year, day.month, day.day, 9, tz="Asia/Kolkata")


def by_customer(sandbox) -> dict[str, list[dict]]:
    """The messages the sandbox received, by the customer they name."""
    found: dict[str, list[dict]] = defaultdict(list)
    for m in sandbox.messages():
        found[m["parameters"]["party_name"]].append(m)
    return found


def rows_of(ledger, customer_name: str) -> list[dict]:
    return [r for r in ledger.rows() if r["customer_name"] == customer_name]


@pytest.fixture
def first_day(sandbox, sqlite_ledger, run_dag):
    result = run_dag(DAG_ID, nine_am(today_ist()), conf={"send_window_start": "00:00", "send_window_end": "23:59"})
    assert result["state"] == "success", result["states"]
    return result


def test_one_message_per_customer_and_currency(sandbox, sqlite_ledger, first_day) -> None:
    received = by_customer(sandbox)
    # 11 overdue invoices: one message naming every one of them.
    [chitra] = received["Chitra Eleven Invoice Exports"]
    chitra_rows = rows_of(sqlite_ledger, "Chitra Eleven Invoice Exports")
    assert len(chitra_rows) == 11 and {r["status"] for r in chitra_rows} == {"sent"}
    assert chitra["parameters"]["invoice_count"] == "11"
    assert all(r["invoice_number"] in chitra["parameters"]["invoice_numbers"] for r in chitra_rows)
    assert {r["wamid"] for r in chitra_rows} == {chitra["wamid"]}
    lead = min(r["id"] for r in chitra_rows)
    assert {r["message_id"] for r in chitra_rows} == {lead}
    # 40 invoices: one message, within Meta's limits as the sandbox received it.
    [deccan] = received["Deccan Forty Invoice Industries"]
    assert deccan["parameters"]["invoice_count"] == "40"
    assert len(deccan["text"]) <= 1024
    assert all(len(v) <= 1024 for v in deccan["parameters"].values())
    assert deccan["template"].endswith("_multi")
    deccan_rows = rows_of(sqlite_ledger, "Deccan Forty Invoice Industries")
    assert len(deccan_rows) == 40 and {r["wamid"] for r in deccan_rows} == {deccan["wamid"]}
    # two currencies: one message each, never one sum; the 0.40 USD invoice is below the minimum
    eshan = received["Eshan Dual Currency Impex"]
    assert len(eshan) == 2
    totals = sorted(m["parameters"].get("total_due") or m["parameters"]["amount_due"] for m in eshan)
    assert totals[0].startswith("$") and totals[1].startswith("₹"), totals
    eshan_skips = {r["reason"] for r in rows_of(sqlite_ledger, "Eshan Dual Currency Impex") if r["status"] == "skipped"}
    assert eshan_skips == {"below_minimum"}
    # one invoice: the single-invoice wording
    [aarav] = received["Aarav Single Invoice Traders"]
    assert not aarav["template"].endswith("_multi") and aarav["template"] == "reminder_overdue_7"
    # no customer got two messages in one currency
    for name, messages in received.items():
        currencies = Counter(m["parameters"].get("total_due", m["parameters"].get("amount_due", ""))[:1] for m in messages)
        assert max(currencies.values()) == 1, name


def test_zoho_holds_and_skips_have_their_reasons(sandbox, sqlite_ledger, first_day) -> None:
    received = by_customer(sandbox)
    farida = {r["invoice_number"]: r for r in rows_of(sqlite_ledger, "Farida Promised Payments")}
    reasons = sorted(r["reason"] or r["status"] for r in farida.values())
    # promised today and in 5 days: held; promised 2 days ago: reminded
    assert reasons == ["promised_payment_date", "promised_payment_date", "sent"]
    [farida_message] = received["Farida Promised Payments"]
    assert farida_message["template"] == "reminder_overdue_7"  # 9 days late, its promise passed
    harsh = Counter(r["reason"] or r["status"] for r in rows_of(sqlite_ledger, "Harsh Mixed Switches Hardware"))
    assert harsh["reminders_disabled"] == 1  # the custom field set to Off
    rohan = Counter(r["reason"] for r in rows_of(sqlite_ledger, "Rohan Small Balances Packaging"))
    assert rohan["below_minimum"] == 2  # 0.50 and 0.99; 1.00 is the minimum itself
    pooja = rows_of(sqlite_ledger, "Pooja Between Stages Garments")
    assert [r["status"] for r in pooja] == ["sent"]  # first seen 4 days late: stage +1 caught up once
    report = xcom_result(first_day["run"], "account_for_every_invoice")
    skipped = report["this_run"]["skipped_by_reason"]
    assert skipped["promised_payment_date"] >= 2 and skipped["below_minimum"] >= 3
    assert skipped["reminders_disabled"] >= 1


def test_pre_due_stages_and_every_invoice_has_a_row(sandbox, sqlite_ledger, first_day) -> None:
    received = by_customer(sandbox)
    today = today_ist()
    [jatin] = received["Jatin Courtesy Steel"]
    assert jatin["template"] == "reminder_courtesy"
    [kavya] = received["Kavya Due Today Pharma"]
    assert kavya["template"] == "reminder_due_today"
    # due in 1, 2 and 3 days (the courtesy stage, caught up until the due date) and today: one message,
    # in the most advanced stage's wording
    [indira] = received["Indira Due Soon Foods"]
    assert indira["template"] == "reminder_due_today_multi" and indira["parameters"]["invoice_count"] == "4"
    assert Counter(r["stage"] for r in rows_of(sqlite_ledger, "Indira Due Soon Foods")) == {-3: 3, 0: 1}
    # not due for 5 and 20 days: not even listed
    assert not rows_of(sqlite_ledger, "Sunita Not Yet Due Logistics")
    # every open invoice Zoho listed (overdue, or due within the earliest pre-due stage) has a row
    listed = [i for i in sandbox.invoices("unpaid")
              if date.fromisoformat(i["due_date"]) <= today + timedelta(days=3)]
    rows = sqlite_ledger.rows()
    assert {i["invoice_id"] for i in listed} == {r["invoice_id"] for r in rows}
    assert not [r for r in rows if r["status"] in ("fetched", "planned", "sending")]
    # the stage each invoice reached is on its row; every sent row points to the message that carried it
    sent = [r for r in rows if r["status"] == "sent"]
    assert all(r["stage"] is not None and r["message_id"] is not None for r in sent)
    assert len({r["message_id"] for r in sent}) == len(sandbox.messages())
    report = xcom_result(first_day["run"], "account_for_every_invoice")
    assert report["this_run"]["messages"]["sent"] == len(sandbox.messages())
    assert report["this_run"]["sent"] == len(sent)
    assert sum(report["this_run"]["sent_by_stage"].values()) == len(sent)
    # the call budget: a page per 200 listed rows of each listing, a page per 200 customers, plus 2
    overdue = len(sandbox.overdue_invoices())
    upcoming = len(listed) - overdue
    customers = len(sandbox.contacts(filter_by="Invoice.Unpaid"))
    books_calls = len(sandbox.requests(service="zoho_books"))
    assert books_calls <= math.ceil(overdue / 200) + math.ceil(upcoming / 200) + math.ceil(customers / 200) + 2


def test_rerun_and_the_next_days_respect_the_customer_cadence(sandbox, sqlite_ledger, first_day, run_dag) -> None:
    first = len(sandbox.messages())
    again = run_dag(DAG_ID, nine_am(today_ist()), conf={"send_window_start": "00:00", "send_window_end": "23:59"})
    assert again["state"] == "success", again["states"]
    assert len(sandbox.messages()) == first  # re-running the date sends nothing new
    rows = sqlite_ledger.rows()
    assert Counter(r["status"] for r in rows)["sent"] == sum(
        1 for r in rows if r["status"] == "sent")  # sent rows stayed sent
    report = xcom_result(again["run"], "account_for_every_invoice")
    assert report["this_run"]["messages"]["sent"] == 0


@pytest.mark.sandbox(scenario="collections", invoices=20)
def test_a_week_backfilled_after_a_pause_messages_each_customer_once_a_day(sandbox, sqlite_ledger, run_dag) -> None:
    today = today_ist()
    window = {"send_window_start": "00:00", "send_window_end": "23:59"}
    for back in range(6, -1, -1):  # the paused week, oldest date first, as a backfill runs it
        result = run_dag(DAG_ID, nine_am(today - timedelta(days=back)), conf=window)
        assert result["state"] == "success", (back, result["states"])
    rows = sqlite_ledger.rows()
    sent = [r for r in rows if r["status"] == "sent"]
    received = sandbox.messages()
    assert sent and len({r["wamid"] for r in sent}) == len(received)
    # each invoice: at most one stage (it was reminded once, whatever the dates caught up)
    stages = defaultdict(set)
    for r in sent:
        stages[r["invoice_id"]].add(r["stage"])
    assert max(len(s) for s in stages.values()) == 1
    # each customer: at most one message per currency per day the messages went out on
    per_day = Counter((r["customer_id"], r["currency_code"], r["claimed_on"]) for r in sent
                      if r["message_id"] == r["id"])
    assert max(per_day.values()) == 1
    assert len({json.dumps(m["parameters"], sort_keys=True) + m["to"] for m in received}) == len(received)
    # the later dates found the customers already messaged today: skipped for the cadence, not sent again
    assert Counter(r["reason"] for r in rows if r["status"] == "skipped")["cadence"] > 0
    again = run_dag(DAG_ID, nine_am(today), conf=window)
    assert again["state"] == "success" and len(sandbox.messages()) == len(received)
