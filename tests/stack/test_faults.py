"""Faults on the real executor: a Celery worker killed mid-batch, the scheduler restarted mid-run, a backfill
beside the daily run. Each asserts what the customers (the sandbox's inspection endpoints) and the ledger show.

    ZW_STACK=1 .venv/bin/python -m pytest tests/stack -q       (make test-stack)
"""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Any

import pendulum

from tests.stack import helpers
from tests.stack.helpers import REMINDER_DAG


def test_the_daily_run_sends_every_reminder_once_on_celery(stack: Any) -> None:
    """The 09:00 run unpausing starts: scheduled by the scheduler, executed by the two Celery workers."""
    daily = stack.daily
    assert daily["state"] == "success", stack.log_tail("airflow-scheduler")
    assert daily["run"]["run_type"] == "scheduled"
    statuses = helpers.by_status(helpers.leads(daily["ledger"]))  # a statement of several invoices is one message
    assert statuses["sent"] == len(daily["messages"]) > 0
    assert not helpers.duplicates(daily["messages"])
    assert not [r for r in daily["ledger"] if r["status"] in helpers.OPEN]


def test_kill_9_of_a_celery_worker_mid_batch_retries_without_a_duplicate(fresh: Any) -> None:
    stack = fresh
    run_id = helpers.trigger_reminders(stack, messages_per_second=20)
    helpers.wait_for_messages(stack, 40)
    running = helpers.running_sends(stack, run_id)
    assert running, "no send task running while messages arrive"
    victim = stack.worker_running(running[0]["pid"])
    assert victim, f"task pid {running[0]['pid']} is in no worker's process tree"
    killed = {ti["map_index"] for ti in running if stack.worker_running(ti["pid"]) == victim}

    stack.kill(victim, signal.SIGKILL)  # the worker, its pool and the tasks' own process groups: a dead container
    in_flight = {r["id"] for r in helpers.ledger_rows(stack, "WHERE status = 'sending'")
                 if r["map_index"] in killed}
    at_kill = len(stack.sandbox.messages())
    stack.restart(victim)  # compose's `restart: always`

    assert stack.wait_for_run(REMINDER_DAG, run_id, timeout=420) == "success"
    messages = stack.sandbox.messages()
    check = helpers.settle_check(stack, messages)
    tis = {ti["map_index"]: ti for ti in stack.task_instances(REMINDER_DAG, run_id) if ti["task_id"] == "send_reminders"}
    assert all(tis[i]["try_number"] >= 2 and tis[i]["state"] == "success" for i in killed), tis
    assert len(messages) > at_kill, "the retried batches sent nothing more"
    assert not helpers.duplicates(messages)
    assert check["open"] == []  # nothing lost: every row ended sent, skipped, failed or unknown
    assert check["sent_not_arrived_once"] == [] and check["arrived_not_sent_or_unknown"] == []
    assert check["apart_from_their_message"] == []
    unknown = {r["id"] for r in check["rows"] if r["status"] == "unknown"}
    assert unknown <= in_flight, f"unknown rows {sorted(unknown - in_flight)} were not in flight at the kill"


def test_scheduler_restarted_mid_run_completes_without_a_duplicate(fresh: Any) -> None:
    stack = fresh
    run_id = helpers.trigger_reminders(stack, messages_per_second=20)
    helpers.wait_for_messages(stack, 40)
    stack.restart("airflow-scheduler")  # SIGTERM, then SIGKILL after 30 s, then start: `docker compose restart`

    assert stack.wait_for_run(REMINDER_DAG, run_id, timeout=420) == "success"
    messages = stack.sandbox.messages()
    check = helpers.settle_check(stack, messages)
    assert not helpers.duplicates(messages)
    assert check["open"] == [] and check["by_status"]["unknown"] == 0
    assert check["sent_not_arrived_once"] == [] and check["arrived_not_sent_or_unknown"] == []
    assert check["apart_from_their_message"] == []
    assert check["by_status"]["sent"] == len(messages) > 0


def test_backfill_of_7_days_beside_the_daily_run_reminds_each_invoice_at_most_once(fresh: Any) -> None:
    stack = fresh
    run_id = helpers.trigger_reminders(stack, messages_per_second=20)
    helpers.wait_for_messages(stack, 20)
    today = pendulum.now("Asia/Kolkata").date()
    # 7 days ending the day before yesterday: the 09:00 run unpausing started is at most yesterday's
    first, last = today - timedelta(days=8), today - timedelta(days=2)
    done = stack.airflow("backfill", "create", "--dag-id", REMINDER_DAG, "--from-date", str(first),
                         "--to-date", str(last), "--reprocess-behavior", "none")
    assert done.returncode == 0, done.stdout + done.stderr

    assert stack.wait_for_run(REMINDER_DAG, run_id, timeout=300) == "success"
    backfill = helpers.wait_for_backfill(stack, expected=6, timeout=600)
    assert {r["state"] for r in backfill} == {"success"}, backfill
    messages = stack.sandbox.messages()
    rows = helpers.ledger_rows(stack)
    # every backfill run recorded every invoice for its own day ...
    assert len({r["occasion"] for r in rows}) >= 1 + len(backfill)
    # ... and sent none of them: min_days_between_reminders (3) counts the IST days of the claims, all today's
    assert not helpers.duplicates(messages)
    assert not [r for r in rows if r["status"] in helpers.OPEN]
    assert len([r for r in helpers.leads(rows) if r["status"] == "sent"]) == len(messages) > 0
