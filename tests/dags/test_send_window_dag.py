"""The reminder DAG and the send window: a run late in the evening goes out next morning, once.

``dag.test()`` runs a deferred task's trigger in-process. The trigger is Airflow's own
DateTimeTrigger, run for real; the clock the window code reads is the test's, and it reads the
trigger's moment once the trigger has fired (the morning, in a second instead of thirteen hours).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pendulum
import pytest
from airflow.providers.standard.triggers.temporal import DateTimeTrigger

from tests.conftest import xcom_result
from tests.whatsapp.test_send_window import Clock
from zoho_whatsapp.rules.policy import POLICY_PATH_ENV
from zoho_whatsapp.rules.window import IST
from zoho_whatsapp.whatsapp import window_wait

DAG_ID = "zoho_books_payment_reminders"
MONDAY_9 = pendulum.datetime(2026, 11, 16, 9, tz="Asia/Kolkata")
TUESDAY_9 = datetime(2026, 11, 17, 9, 0, tzinfo=IST)
pytestmark = pytest.mark.dag


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch, sandbox) -> tuple[Clock, list[tuple[datetime, int]]]:
    """The window's clock, and each wait in the triggerer: (its moment, messages the sandbox had by then)."""
    monkeypatch.delenv(window_wait.WINDOW_ENV, raising=False)  # the local tooling switches the window off
    monkeypatch.delenv(POLICY_PATH_ENV, raising=False)
    clock, seen = Clock(datetime(2026, 11, 16, 12, 0, tzinfo=IST)), []
    monkeypatch.setattr(window_wait, "clock", clock)
    real_run = DateTimeTrigger.run

    async def run(self: DateTimeTrigger) -> AsyncIterator[Any]:
        seen.append((self.moment, len(sandbox.messages())))
        async for event in real_run(self):
            clock.moment = self.moment  # the triggerer woke the task at the opening
            yield event

    monkeypatch.setattr(DateTimeTrigger, "run", run)
    return clock, seen


def assert_each_message_once(sandbox, ledger, result) -> list[dict]:
    assert result["state"] == "success", result["states"]
    received = sandbox.messages()
    assert received and len({m["wamid"] for m in received}) == len(received)
    assert Counter((m["to"], m["text"]) for m in received).most_common(1)[0][1] == 1
    sent = {r["wamid"] for r in ledger.rows() if r["status"] == "sent"}
    assert sent == {m["wamid"] for m in received}
    report = xcom_result(result["run"], "account_for_every_invoice")
    assert report["date_totals"]["open"] == 0 and report["date_totals"]["planned"] == 0
    return received


@pytest.mark.sandbox(invoices=40)
def test_a_run_started_at_20_14_sends_nothing_until_09_00_then_everything_once(
    sandbox, sqlite_ledger, run_dag, waits, capfd
) -> None:
    clock, seen = waits
    clock.moment = datetime(2026, 11, 16, 20, 14, tzinfo=IST)  # a retry or a backfill of Monday, that evening
    result = run_dag(DAG_ID, MONDAY_9)
    received = assert_each_message_once(sandbox, sqlite_ledger, result)
    # The first batch waited for Tuesday 09:00 having sent nothing; once it had, the clock read the
    # morning and the other batches found the window open.
    assert seen == [(TUESDAY_9, 0)]
    assert len(received) > 9
    assert ("outside the send window 09:00–20:00 IST (now 20:14): waiting in the triggerer until 2026-11-17 09:00 IST"
            in capfd.readouterr().out)


@pytest.mark.sandbox(invoices=40)
def test_a_run_sending_when_the_window_closes_sends_the_rest_next_morning_once(
    sandbox, sqlite_ledger, run_dag, waits
) -> None:
    clock, seen = waits
    # One second per reading: the first batch (3 messages) starts at 19:59:57 and claims two before 20:00.
    clock.moment, clock.tick = datetime(2026, 11, 16, 19, 59, 57, tzinfo=IST), timedelta(seconds=1)
    result = run_dag(DAG_ID, MONDAY_9)
    received = assert_each_message_once(sandbox, sqlite_ledger, result)
    assert seen == [(TUESDAY_9, 2)]
    assert len(received) > 2
    first = min(r["batch"] for r in sqlite_ledger.rows() if r["status"] == "sent")
    assert Counter(r["status"] for r in sqlite_ledger.rows() if r["batch"] == first)["sent"] >= 3


@pytest.mark.sandbox(invoices=40)
def test_a_run_inside_the_window_never_waits(sandbox, sqlite_ledger, run_dag, waits) -> None:
    clock, seen = waits
    clock.moment = datetime(2026, 11, 16, 9, 0, 5, tzinfo=IST)
    assert_each_message_once(sandbox, sqlite_ledger, run_dag(DAG_ID, MONDAY_9))
    assert seen == []
