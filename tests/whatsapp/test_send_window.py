"""The send window at the send task: outside it nothing is claimed and the task waits in the triggerer.

WhatsAppOperator against the sandbox over real HTTP, with the clock the window code reads set by the
test (the messages' own timestamps stay real). The trigger is Airflow's standard DateTimeTrigger,
run for real: its moment lies in the past of the real clock, so it fires at once.
"""

from __future__ import annotations

import asyncio
import doctest
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk.exceptions import TaskDeferred

import zoho_whatsapp.whatsapp.window_wait
from zoho_whatsapp.ledger import RunInfo, SendKey, SendLedger
from zoho_whatsapp.pipeline import batch
from zoho_whatsapp.rules.policy import POLICY_PATH_ENV, PolicyError
from zoho_whatsapp.rules.window import IST, SendWindow, WindowError, window_closes_at
from zoho_whatsapp.whatsapp import window_wait
from zoho_whatsapp.whatsapp.operator import WhatsAppOperator

ORG, KIND, DAY = "600100", "payment_reminder", "2026-11-16"
KEY = SendKey(ORG, KIND, DAY)
MONDAY = datetime(2026, 11, 16, tzinfo=IST)


def at(day: datetime, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return day.replace(hour=hour, minute=minute, second=second)


class Clock:
    """The time the window code sees; ``tick`` moves it on at every reading (a batch takes time)."""

    def __init__(self, moment: datetime, tick: timedelta = timedelta(0)) -> None:
        self.moment, self.tick, self._lock = moment, tick, threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            now, self.moment = self.moment, self.moment + self.tick
            return now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    monkeypatch.delenv(window_wait.WINDOW_ENV, raising=False)  # the local tooling switches the window off
    monkeypatch.delenv(POLICY_PATH_ENV, raising=False)
    c = Clock(at(MONDAY, 12))
    monkeypatch.setattr(window_wait, "clock", c)
    return c


def plan(ledger: SendLedger, count: int) -> dict[str, Any]:
    invoices = [{"invoice_id": f"9820{i:04d}", "invoice_number": f"INV-{i:06d}", "customer_id": f"c{i}",
                 "customer_name": f"Customer {i}"} for i in range(count)]
    ledger.record_fetched(KEY, invoices, RunInfo(run_id="r"))
    rows = ledger.rows(organization_id=ORG, status=("fetched",))
    ledger.plan_many([
        {"id": row["id"], "recipient": f"+91982{i:07d}", "phone_masked": "+9198XXXX", "template_name": "payment_reminder",
         "template_language": "en",
         "parameters": {"party_name": row["customer_name"], "invoice_number": row["invoice_number"],
                        "amount_due": "₹22,000.00", "due_date": "20 June 2026"}}
        for i, row in enumerate(rows)
    ], [])
    [ref] = batch(ledger, KEY, batch_size=1000)
    return ref.to_dict()


def operator(ref: dict[str, Any], **kw: Any) -> WhatsAppOperator:
    return WhatsAppOperator(task_id="send_reminders", batch=ref, messages_per_second=200, max_workers=4, **kw)


def context(params: dict[str, Any] | None = None, try_number: int = 1) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="zoho_books_payment_reminders", run_id="scheduled__2026-11-16", map_index=0,
                         try_number=try_number)
    return {"ti": ti, "params": params or {}}


def wait_in_triggerer(deferred: TaskDeferred, clock: Clock) -> Any:
    """What the triggerer does: run the trigger until it fires; the clock then reads its moment."""
    trigger = deferred.trigger
    assert isinstance(trigger, DateTimeTrigger) and deferred.method_name == "send_when_open"
    event = asyncio.run(anext(trigger.run()))
    clock.moment = trigger.moment
    return event.payload


def received(sandbox) -> Counter[str]:
    return Counter(m["parameters"]["invoice_number"] for m in sandbox.messages())


def statuses(ledger: SendLedger) -> Counter[str]:
    return Counter(r["status"] for r in ledger.rows(organization_id=ORG))


def test_started_after_the_close_sends_nothing_and_waits_for_the_next_opening(sandbox, ledger, clock, capsys) -> None:
    ref = plan(ledger, 5)
    clock.moment = at(MONDAY, 20, 14)
    op = operator(ref)  # the default: the policy file's window, 09:00-20:00 IST
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    assert deferred.value.trigger.moment == at(MONDAY + timedelta(days=1), 9)  # Tuesday 09:00 IST = 03:30 UTC
    assert sandbox.messages() == [] and statuses(ledger) == {"planned": 5}  # nothing claimed either
    assert ("outside the send window 09:00–20:00 IST (now 20:14): waiting in the triggerer until "
            "2026-11-17 09:00 IST") in capsys.readouterr().out

    event = wait_in_triggerer(deferred.value, clock)
    assert op.send_when_open(context(), event=event)["sent"] == 5
    assert received(sandbox) == {f"INV-{i:06d}": 1 for i in range(5)}
    assert statuses(ledger) == {"sent": 5}
    # the same batch cleared and run again at night: nothing left to send, so no wait and no message
    clock.moment = at(MONDAY + timedelta(days=1), 22)
    assert "sent" not in operator(ref).execute(context(try_number=2))
    assert len(sandbox.messages()) == 5


def test_a_batch_sending_when_the_window_closes_sends_the_rest_next_morning_once(sandbox, ledger, clock, capsys) -> None:
    ref = plan(ledger, 12)
    # One second passes per reading: the task reads at 19:59:50, then once before each claim.
    clock.moment, clock.tick = at(MONDAY, 19, 59, 50), timedelta(seconds=1)
    op = operator(ref, send_window={"start": "09:00", "end": "20:00"})
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    assert len(sandbox.messages()) == 9  # claimed at 19:59:51 ... 19:59:59; the 10th reading is 20:00:00
    assert statuses(ledger) == {"sent": 9, "planned": 3}
    assert deferred.value.trigger.moment == at(MONDAY + timedelta(days=1), 9)
    assert "closed at 20:00 with 3 message(s) of this batch unsent" in capsys.readouterr().out

    event = wait_in_triggerer(deferred.value, clock)
    assert op.send_when_open(context(), event=event)["sent"] == 3
    assert received(sandbox) == {f"INV-{i:06d}": 1 for i in range(12)}
    assert statuses(ledger) == {"sent": 12}


def test_a_retry_before_the_opening_waits_again_and_sends_once(sandbox, ledger, clock) -> None:
    """The trigger fired but the clock this task reads is not there yet (clocks differ): wait again."""
    ref = plan(ledger, 3)
    clock.moment = at(MONDAY, 6, 30)
    op = operator(ref)
    with pytest.raises(TaskDeferred) as first:
        op.execute(context())
    assert first.value.trigger.moment == at(MONDAY, 9)  # same day: the window has not opened yet
    clock.moment = at(MONDAY, 8, 59, 59)
    with pytest.raises(TaskDeferred) as again:
        op.send_when_open(context(), event=None)
    assert again.value.trigger.moment == at(MONDAY, 9) and sandbox.messages() == []
    wait_in_triggerer(again.value, clock)
    op.send_when_open(context(), event=None)
    assert received(sandbox) == {f"INV-{i:06d}": 1 for i in range(3)}


def test_sundays_and_holidays_off_wait_for_the_next_working_morning(sandbox, sqlite_ledger, clock, capsys) -> None:
    ref = plan(sqlite_ledger, 2)
    window = {"sundays_off": True, "holidays": {"country": "IN"}}
    clock.moment = datetime(2026, 10, 2, 11, 0, tzinfo=IST)  # Friday, Gandhi Jayanti
    with pytest.raises(TaskDeferred) as deferred:
        operator(ref, send_window=window).execute(context())
    assert deferred.value.trigger.moment == datetime(2026, 10, 3, 9, 0, tzinfo=IST)  # Saturday
    assert "09:00–20:00 IST, Sundays off, holidays: IN (Mahatma Gandhi's Birthday (2 Oct))" in capsys.readouterr().out
    clock.moment = datetime(2026, 10, 3, 20, 0, tzinfo=IST)  # Saturday's close: Sunday is off too
    with pytest.raises(TaskDeferred) as deferred:
        operator(ref, send_window=window).execute(context())
    assert deferred.value.trigger.moment == datetime(2026, 10, 5, 9, 0, tzinfo=IST)  # Monday
    assert sandbox.messages() == []


def test_run_params_move_the_window(sandbox, sqlite_ledger, clock) -> None:
    ref = plan(sqlite_ledger, 2)
    clock.moment = at(MONDAY, 20, 14)
    assert operator(ref).execute(context({"send_window_end": "21:00"}))["sent"] == 2


def test_no_window_and_dry_runs_never_wait(sandbox, sqlite_ledger, clock, monkeypatch) -> None:
    ref = plan(sqlite_ledger, 2)
    clock.moment = at(MONDAY, 23, 30)
    assert operator(ref, dry_run=True).execute(context()) == {"would_send": 2}
    assert sandbox.messages() == []
    monkeypatch.setenv(window_wait.WINDOW_ENV, "always")  # the local tooling's rehearsals
    assert operator(ref).execute(context())["sent"] == 2
    assert len(sandbox.messages()) == 2


def test_window_without_the_triggerer_needs_no_sandbox(clock) -> None:
    """The alerts path (send_window None) sends at any hour; a bad window is refused by name."""
    assert WhatsAppOperator(task_id="t", batch={}).send_window == window_wait.FROM_POLICY
    assert window_wait.resolve_window(None) is None
    assert window_wait.resolve_window("policy") == SendWindow()
    assert window_wait.resolve_window("policy", {"sundays_off": True}) == SendWindow(sundays_off=True)
    with pytest.raises(PolicyError, match="before end"):
        window_wait.resolve_window({"start": "21:00", "end": "09:00"})
    with pytest.raises(ValueError, match="expected 'policy'"):
        window_wait.resolve_window("polcy")


def test_window_closes_at_the_end_of_the_day_it_is_open() -> None:
    window = SendWindow()
    assert window_closes_at(at(MONDAY, 9), window) == at(MONDAY, 20)
    assert window_closes_at(at(MONDAY, 19, 59, 59), window) == at(MONDAY, 20)
    for closed in (at(MONDAY, 20), at(MONDAY, 8, 59, 59)):
        with pytest.raises(WindowError, match="not open"):
            window_closes_at(closed, window)


def test_window_wait_doctests() -> None:
    assert doctest.testmod(zoho_whatsapp.whatsapp.window_wait).failed == 0


def test_the_log_says_why_the_window_is_shut() -> None:
    window = SendWindow(sundays_off=True, holiday_country="IN", holiday_subdivision="MH",
                        extra_holidays=frozenset({datetime(2026, 11, 18).date()}))
    assert window_wait.describe(window) == "09:00–20:00 IST, Sundays off, holidays: IN-MH"
    assert window_wait.closed_because(datetime(2026, 11, 22, 10, 14, tzinfo=IST), window) == "Sunday 22 Nov, 10:14"
    assert window_wait.closed_because(datetime(2026, 11, 18, 11, 0, tzinfo=IST), window) == "organization holiday (18 Nov)"
    # a UTC moment is named in IST: 14:44 UTC is 20:14 IST
    assert window_wait.closed_because(datetime(2026, 11, 17, 14, 44, tzinfo=UTC), window) == "now 20:14"
