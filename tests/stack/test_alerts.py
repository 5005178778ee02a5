"""Instant alerts on the CeleryExecutor stack while a reminder run sends: they never queue behind it.

Zoho "invoice created" webhooks go to the API server's real endpoint, first with nothing else running, then
while the workers send reminders; each alert must reach WhatsApp (the sandbox) once, and during the reminder
run within QUEUE_MARGIN_S of the slowest alert alone (measured in the same minute, so a busy CI machine slows
both alike), never later than ALERT_CEILING_S. Queued behind a reminder run, alerts took minutes.

    ZW_STACK=1 .venv/bin/python -m pytest tests/stack -q       (make test-stack)
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bench.stack import alert_latencies, customers_for_alerts, epoch, opaque, post_events
from tests.stack import helpers
from tests.stack.helpers import REMINDER_DAG

QUEUE_MARGIN_S = 20.0  # alone an alert takes 6-10 s on a quiet machine (docs/stack.md)
ALERT_CEILING_S = 120.0
ALONE, EVENTS = 3, 5  # one every 2 s: 10 s of webhooks inside the reminder run's minute of sending


def test_alerts_do_not_queue_behind_a_reminder_run(fresh: Any) -> None:
    stack = fresh
    invoices = customers_for_alerts(stack, ALONE + EVENTS)
    alone = alert_latencies(stack, post_events(stack, invoices[:ALONE]), timeout=300)
    assert None not in alone, f"alerts alone not at the sandbox after 300 s: {alone}"
    run_id = helpers.trigger_reminders(stack, messages_per_second=5)  # 300 messages: a minute of sending
    helpers.wait_for_messages(stack, ALONE + 10, timeout=300)
    posted = post_events(stack, invoices[ALONE:])
    latencies = alert_latencies(stack, posted, timeout=300)
    print(f"webhook -> WhatsApp, seconds: alone {[round(x, 1) for x in alone]}, while the reminders send "
          f"{[x and round(x, 1) for x in latencies]}")

    assert stack.wait_for_run(REMINDER_DAG, run_id, timeout=600) == "success"
    messages = stack.sandbox.messages()
    reminders = [m for m in messages if opaque(m)[1:2] == ["payment_reminder"]]
    # the premise: the reminder run was still sending after the last webhook
    assert max(epoch(m["received_at"]) for m in reminders) > max(posted.values())
    assert None not in latencies, f"alerts not at the sandbox after 300 s: {latencies}"
    assert max(latencies) <= min(ALERT_CEILING_S, max(alone) + QUEUE_MARGIN_S), (alone, latencies)
    alerts = Counter(opaque(m)[2] for m in messages if opaque(m)[1:2] == ["invoice_created"])
    assert alerts == Counter({str(invoice["invoice_id"]): 1 for invoice in invoices})  # each alert once
    assert not [key for key, n in Counter((m["wa_id"], m.get("biz_opaque_callback_data")) for m in messages).items()
                if n > 1]  # and no reminder twice
    handled = [r for r in helpers.ledger_rows(stack) if r["kind"] == "invoice_created"]
    assert sorted(r["status"] for r in handled) == ["sent"] * (ALONE + EVENTS)
