"""Live balance: a reminder sent late re-reads the customer's open invoices from Zoho first.

The reminder tasks' bodies run one after another against ``Sandbox(scenario="collections")`` over
real HTTP, with payments recorded in the sandbox between planning and sending (what happens when a
batch waits for the send window, is retried or cleared).
"""

from __future__ import annotations

import json
from collections import defaultdict

import pendulum
import pytest

from zoho_whatsapp import pipeline, reminder_run
from zoho_whatsapp.ledger import RunInfo
from zoho_whatsapp.whatsapp.batch import BatchRef

pytestmark = pytest.mark.sandbox(scenario="collections", invoices=20)


def plan(sandbox, params: dict) -> tuple[dict, list[dict]]:
    org = reminder_run.organization()
    fetched = reminder_run.fetch_into_ledger(org, logical_date=pendulum.now("Asia/Kolkata"), dag_id="d",
                                             run_id="run-1", params=params)
    refs = reminder_run.plan_batches(fetched, params=params, max_batches=10, max_parallel=1)
    return fetched, refs


def send(sqlite_ledger, refs: list[dict]) -> None:
    for ref in refs:
        pipeline.send_batch(sqlite_ledger, BatchRef.from_dict(ref), RunInfo(dag_id="d", run_id="run-1", try_number=1),
                            whatsapp_conn_id="whatsapp_default", messages_per_second=200, max_workers=4)


def messages_to(sandbox, name: str) -> list[dict]:
    return [m for m in sandbox.messages() if m["parameters"]["party_name"] == name]


def test_a_late_send_drops_what_was_paid_and_states_the_current_balance(sandbox, sqlite_ledger) -> None:
    params = {"live_balance_after_minutes": 0}  # every send is "late": it re-reads first
    _, refs = plan(sandbox, params)
    rows = defaultdict(list)
    for r in sqlite_ledger.rows():
        rows[r["customer_name"]].append(r)
    chitra = sorted(rows["Chitra Eleven Invoice Exports"], key=lambda r: r["id"])
    paid, part_paid = chitra[0], chitra[1]
    sandbox.add_payment(paid["invoice_id"])  # in full
    balance = float(json.loads(part_paid["source"])["balance"])
    sandbox.add_payment(part_paid["invoice_id"], balance - 100)  # all but 100
    [aarav] = rows["Aarav Single Invoice Traders"]
    sandbox.add_payment(aarav["invoice_id"])
    calls_before = len(sandbox.requests(service="zoho_books"))

    send(sqlite_ledger, refs)

    [message] = messages_to(sandbox, "Chitra Eleven Invoice Exports")
    assert message["parameters"]["invoice_count"] == "10"
    assert paid["invoice_number"] not in message["parameters"]["invoice_numbers"]
    truth = [sandbox.invoice(r["invoice_id"]) for r in chitra[1:]]
    total = sum(float(i["balance"]) for i in truth)
    shown = float(message["parameters"]["total_due"].lstrip("₹").replace(",", ""))
    assert shown == pytest.approx(total)  # the current balance, the part payment included
    after = {r["id"]: r for r in sqlite_ledger.rows()}
    assert (after[paid["id"]]["status"], after[paid["id"]]["reason"]) == ("skipped", "paid_since_fetch")
    assert {after[r["id"]]["status"] for r in chitra[1:]} == {"sent"}
    assert {after[r["id"]]["wamid"] for r in chitra[1:]} == {message["wamid"]}
    # a customer whose only invoice was paid gets nothing
    assert messages_to(sandbox, "Aarav Single Invoice Traders") == []
    assert after[aarav["id"]]["reason"] == "paid_since_fetch"
    # one read per customer messaged, counted apart from the run's budget
    customers = {r["customer_id"] for r in after.values() if r["status"] in ("sent", "skipped")
                 and r["reason"] in (None, "paid_since_fetch") and r["stage"] is not None}
    reads = len(sandbox.requests(service="zoho_books")) - calls_before
    assert 0 < reads <= len(customers) + 1


def test_an_on_time_send_does_not_read_zoho_again(sandbox, sqlite_ledger) -> None:
    _, refs = plan(sandbox, {})
    calls_before = len(sandbox.requests(service="zoho_books"))
    send(sqlite_ledger, refs)
    assert len(sandbox.requests(service="zoho_books")) == calls_before
    assert sandbox.messages()
