"""Exactly once through crashes, retries, re-runs, backfills and concurrent runs.

Every test asserts on what the sandbox received, then on the ledger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pendulum
import pytest

from zoho_whatsapp.ledger import RunInfo, SendLedger
from zoho_whatsapp.reminder_run import account_for_run, fetch_into_ledger, plan_batches
from zoho_whatsapp.rules.templates import load_templates
from zoho_whatsapp.whatsapp.batch import BatchRef, BatchSender
from zoho_whatsapp.whatsapp.hook import WhatsAppHook
from zoho_whatsapp.zoho import ZohoBooksHook

CHILD = Path(__file__).with_name("send_batch_child.py")
PARAMS = {"batch_size": 1000, "min_days_between_reminders": 3, "template_name": "payment_reminder",
          "template_language": "en"}


def organization() -> dict:
    org = ZohoBooksHook().get_organization()
    return {"organization_id": org.organization_id, "name": org.name, "country_code": org.country_code,
            "currency_code": org.currency_code}


def prepare(day: str, run_id: str, **params: object) -> tuple[dict, list[dict]]:
    fetched = fetch_into_ledger(organization(), logical_date=pendulum.parse(f"{day}T09:00:00+05:30"),
                                dag_id="zoho_books_payment_reminders", run_id=run_id)
    batches = plan_batches(fetched, params={**PARAMS, **params}, max_batches=1000, max_parallel=1)
    return fetched, batches


def send_all(batches: list[dict], run_id: str, try_number: int = 1) -> None:
    ledger = SendLedger.from_connection()
    for ref in batches:
        run = RunInfo(dag_id="zoho_books_payment_reminders", run_id=run_id, map_index=ref["batch"],
                      try_number=try_number)
        BatchSender(WhatsAppHook(), ledger, load_templates(), run, messages_per_second=500, max_workers=8,
                    min_days_between=3, pair_interval=0.0).send(BatchRef.from_dict(ref))
    ledger.dispose()


def invoices_named(message: dict) -> list[str]:
    """The invoice numbers a message names: one, or a customer's statement of several."""
    params = message["parameters"]
    if "invoice_number" in params:
        return [params["invoice_number"]]
    names = params["invoice_numbers"].split(", ")
    assert " more" not in names[-1] and len(names) == int(params["invoice_count"]), params  # all of them named
    return names


def per_recipient_invoice(sandbox) -> Counter:
    """How many times each (number, invoice) was named in a message the sandbox received."""
    return Counter((m["to"], number) for m in sandbox.messages() for number in invoices_named(m))


def messages_of(rows: list[dict]) -> set[int]:
    return {r["message_id"] or r["id"] for r in rows}


def figure(text: str) -> None:
    """A measured figure for the closing note: `pytest tests/exactly_once -s | grep FIGURE`."""
    print(f"FIGURE {text}")


def wait_for(predicate, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("kill", ["SIGKILL", "SIGTERM"])
def test_batch_killed_mid_way_then_retried_sends_each_message_once(sandbox, ledger, kill: str) -> None:
    fetched, [ref] = prepare("2026-11-25", "run-killed")
    planned = len(ledger.rows(status=("planned",)))  # invoices, in fewer messages
    planned_messages = len(messages_of(ledger.rows(status=("planned",))))
    k, workers = 40, 4
    sandbox.set_faults(whatsapp_hang_after=k, whatsapp_hang_seconds=3 if kill == "SIGTERM" else 60)
    child = subprocess.Popen([sys.executable, str(CHILD), json.dumps(ref), "1", str(workers)],
                             env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(sandbox.messages()) >= k + workers)  # k answered, `workers` hanging in flight
        child.send_signal(getattr(signal, kill))
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    killed_at = len(sandbox.messages())
    assert k + workers <= killed_at < planned_messages
    sandbox.set_faults(whatsapp_hang_after=None)
    send_all([ref], "run-killed", try_number=2)  # Airflow's retry of the same task instance
    received = per_recipient_invoice(sandbox)
    assert max(received.values()) == 1, [key for key, n in received.items() if n > 1]
    assert sum(received.values()) == planned  # nothing lost: the in-flight ones did arrive
    rows = ledger.rows(status=("sent", "unknown"))
    unknown = [r for r in rows if r["status"] == "unknown"]
    if kill == "SIGKILL":  # the messages in flight, with every invoice they carried
        assert len(messages_of(unknown)) == workers and {r["reason"] for r in unknown} == {"interrupted"}
    else:  # SIGTERM lets the sends in flight finish and settle
        assert unknown == []
    report = account_for_run(fetched, run_id="run-killed", dry_run=False)
    totals = report["date_totals"]
    assert totals["open"] == 0 and totals["sent"] + totals["unknown"] == planned
    assert (report["this_run"]["sent"], report["this_run"]["unknown"]) == (totals["sent"], totals["unknown"])
    figure(f"{kill} after {killed_at} of {planned} received, then retried: received {sum(received.values())}, "
           f"duplicates {sum(n - 1 for n in received.values())}, unknown {len(unknown)}")


def test_rerun_and_cleared_batch_send_nothing_new(sandbox, ledger) -> None:
    _, batches = prepare("2026-11-25", "run-1")
    send_all(batches, "run-1")
    first = per_recipient_invoice(sandbox)
    _, again = prepare("2026-11-25", "run-1-rerun")  # the whole date re-run
    send_all(again, "run-1-rerun")
    send_all(batches, "run-1", try_number=2)  # one mapped batch cleared and run again
    assert per_recipient_invoice(sandbox) == first
    assert max(first.values()) == 1
    figure(f"re-run + cleared batch: first run sent {sum(first.values())}, afterwards received "
           f"{len(sandbox.messages())}, duplicates 0")


def test_seven_day_backfill_then_today_reminds_each_invoice_at_most_once(sandbox, ledger) -> None:
    days = [f"2026-11-{d:02d}" for d in range(18, 26)]  # seven backfilled dates, then today
    for day in days:
        _, batches = prepare(day, f"backfill__{day}")
        send_all(batches, f"backfill__{day}")
    received = Counter(number for m in sandbox.messages() for number in invoices_named(m))
    assert received and max(received.values()) == 1
    sent_rows = ledger.rows(status=("sent",))
    assert len(sent_rows) == len(received)
    # one message per customer for the whole backfill (the cadence counts the real days of the claims)
    # (two customers may share a number; a customer's two currencies are two statements)
    assert max(Counter((m["to"], m["parameters"]["party_name"], m["parameters"].get("total_due", m["parameters"].get(
        "amount_due"))[:1]) for m in sandbox.messages()).values()) == 1
    reminded = {r["invoice_id"] for r in sent_rows}
    later = [r for r in ledger.rows() if r["invoice_id"] in reminded and r["status"] != "sent"]
    assert later and {r["status"] for r in later} == {"skipped"}
    cadence = [r for r in ledger.rows(status=("skipped",)) if r["reason"] == "cadence"]
    assert cadence
    figure(f"7-day backfill + today: {len(received)} invoices reminded in {len(sandbox.messages())} messages, "
           f"{len(cadence)} skipped by cadence, max per invoice {max(received.values())}")


def test_two_runs_for_the_same_date_at_the_same_time_send_no_duplicate(sandbox, ledger) -> None:
    script = (
        "import sys, json; sys.path[:0] = ['plugins', '.'];"
        "from tests.exactly_once.test_exactly_once import prepare, send_all;"
        "run = sys.argv[1]; _, b = prepare('2026-11-25', run); send_all(b, run)"
    )
    repo = Path(__file__).resolve().parents[2]
    children = [subprocess.Popen([sys.executable, "-c", script, f"concurrent-{i}"], cwd=repo, env=os.environ.copy(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for child in children:
        _, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]
    received = per_recipient_invoice(sandbox)
    assert max(received.values()) == 1
    assert sum(received.values()) == len(ledger.rows(status=("sent",))) > 250
    figure(f"two concurrent runs of one date: {sum(received.values())} messages, max per invoice "
           f"{max(received.values())}")


def test_lost_response_is_unknown_and_resent_only_when_asked(sandbox, ledger) -> None:
    sandbox.set_faults(whatsapp_drop_after_accept=1)
    fetched, batches = prepare("2026-11-25", "run-1")
    send_all(batches, "run-1")
    unknown_rows = ledger.rows(status=("unknown",))
    [unknown_message] = messages_of(unknown_rows)  # one message, with each invoice it carried
    total = len(sandbox.messages())
    _, again = prepare("2026-11-25", "run-2")
    send_all(again, "run-2")
    assert len(sandbox.messages()) == total  # not resent by a re-run
    report = account_for_run(fetched, run_id="run-2", dry_run=False)
    assert report["date_totals"]["messages"]["unknown"] == 1 and report["delivery"]["unknown_waiting"] == 1
    assert report["date_totals"]["unknown"] == len(unknown_rows)
    assert (report["this_run"]["sent"], report["this_run"]["unknown"]) == (0, 0)  # run-2 sent nothing
    old = account_for_run(fetched, run_id="run-2", dry_run=False, unknown_after_minutes=0.0001)
    assert old["delivery"]["unknown_to_check"] == 1  # no receipt arrived: a person checks it
    _, forced = prepare("2026-11-25", "run-3", resend_unknown=True)
    send_all(forced, "run-3")
    assert len(sandbox.messages()) == total + 1
    assert {ledger.rows(id=r["id"])[0]["status"] for r in unknown_rows} == {"sent"}
    assert unknown_message in {r["id"] for r in unknown_rows}
    figure(f"lost response: 1 unknown, not resent by a re-run; resent once with resend_unknown ({total + 1} total)")
