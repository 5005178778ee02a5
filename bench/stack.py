"""On the CeleryExecutor stack (include/local_stack.py): 5,000 reminders through the real scheduler and workers,
and the webhook alert latency, alone and while those reminders are sending.

    python -m bench.run --only stack          (about 6 minutes)

1. The stack starts as ``make stack`` does (compose's settings, two Celery workers), with the sandbox
   seeding ``invoices`` overdue invoices (5,000: 2,000 customers) at Meta's ``cap`` and ``latency_ms``.
   The 09:00 run that unpausing the reminder DAG starts is marked failed before it sends, and the
   sandbox and ledger are reset: the measured runs are the bench's own.
2. ``events`` Zoho "invoice created" webhooks, one every 2 s, each to a customer of its own: the time
   from the POST to the API server until the sandbox accepted the WhatsApp message (p50, p95). One
   more event first, not counted, waits for the triggerer to start watching the inbox.
3. A reminder run for every invoice at ``messages_per_second = cap``, triggered through the REST API:
   wall time from the trigger to success, the rate achieved while sending, the most requests the
   provider saw in any 1 s window, throughput refusals (130429), lost and duplicated messages; while
   it sends, ``events`` more webhooks as in 2.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Section

EVENT_SPACING_S = 2.0
ALERT_TIMEOUT_S = 180.0
REMINDER_DAG, ALERT_DAG = "zoho_books_payment_reminders", "zoho_books_invoice_alerts"
OPEN = ("fetched", "planned", "sending")


def epoch(iso: str) -> float:
    """Seconds since the epoch of an ISO 8601 time (the sandbox's and the REST API's)."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def opaque(message: dict[str, Any]) -> list[str]:
    """A sandbox message's ledger key, ``[organization, kind, invoice, occasion]``."""
    return str(message.get("biz_opaque_callback_data") or "").split(":", 3)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def peak_per_second(stamps: list[float]) -> int:
    """The most ``stamps`` within any 1 s window."""
    ordered, best, start = sorted(stamps), 0, 0
    for end, stamp in enumerate(ordered):
        while stamp - ordered[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def customers_for_alerts(stack: Any, count: int) -> list[dict[str, Any]]:
    """Overdue invoices of ``count`` distinct customers with a mobile, from the end of the list."""
    seen: set[str] = set()
    chosen = []
    for invoice in reversed(stack.sandbox.overdue_invoices()):
        if invoice["customer_id"] in seen or float(invoice["balance"]) <= 0 or invoice["currency_code"] != "INR":
            continue
        contact = stack.sandbox.get(f"/zoho/contacts/{invoice['customer_id']}")["contact"]
        mobile = contact.get("mobile") or ""
        if len("".join(c for c in mobile if c.isdigit())) < 10:
            continue
        seen.add(invoice["customer_id"])
        chosen.append({**invoice, "mobile": mobile})
        if len(chosen) == count:
            break
    return chosen


def post_events(stack: Any, invoices: list[dict[str, Any]]) -> dict[str, float]:
    """One "invoice created" webhook per invoice, EVENT_SPACING_S apart; {invoice_id: time of the POST}."""
    secret = stack.dotenv["ZOHO_WEBHOOK_SECRET"]
    posted: dict[str, float] = {}
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        for invoice in invoices:
            body = {"invoice_id": invoice["invoice_number"], "customer_name": invoice["customer_name"],
                    "mobile": invoice["mobile"], "total": invoice["total"], "balance": invoice["balance"],
                    "due_date": invoice["due_date"], "status": "sent", "currency_code": "INR"}
            sent = time.time()
            answer = http.post("/zoho-books/webhooks/invoices", json=body, headers={"X-Zoho-Webhook-Secret": secret})
            if answer.status_code != 202:
                raise RuntimeError(f"webhook answered {answer.status_code}: {answer.text[:300]}")
            posted[str(invoice["invoice_id"])] = sent
            time.sleep(EVENT_SPACING_S)
    return posted


def alert_latencies(stack: Any, posted: dict[str, float], timeout: float = 180) -> list[float | None]:
    """Seconds from each POST to its alert's acceptance at the sandbox; None for one not there after ``timeout``."""
    deadline = time.monotonic() + timeout
    found: dict[str, float] = {}
    while len(found) < len(posted) and time.monotonic() < deadline:
        time.sleep(1)
        for message in stack.sandbox.messages():
            parts = opaque(message)
            if len(parts) == 4 and parts[1] == "invoice_created" and parts[2] in posted:
                found[parts[2]] = epoch(message["received_at"])
    return [found[invoice] - posted[invoice] if invoice in found else None for invoice in posted]


PHASES = ("POST -> announced by the triggerer", "announced -> DAG run created", "run created -> first task queued",
          "take_events queued -> started", "take_events running", "take_events end -> send_alert queued",
          "send_alert queued -> started", "send_alert started -> message at the sandbox")


def latency_phases(stack: Any, posted: dict[str, float], invoices: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Where each alert's time went, from the inbox row, the run that handled it and its task instances.

    ``posted`` as :func:`post_events` returns it; ``invoices`` the invoices the webhooks named. Events whose
    run or tasks cannot be found (an alert that never came) are left out of every phase.
    """
    import sqlalchemy as sa

    by_reference = {str(i["invoice_number"]): str(i["invoice_id"]) for i in invoices if str(i["invoice_id"]) in posted}
    engine = sa.create_engine(stack.ledger_url)
    try:
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.text(
                "SELECT id, reference, announced_at, run_id FROM webhook_events"))]
    finally:
        engine.dispose()
    arrived: dict[str, float] = {}
    for message in stack.sandbox.messages():
        parts = opaque(message)
        if len(parts) == 4 and parts[1] == "invoice_created":
            arrived[parts[2]] = epoch(message["received_at"])
    runs = {r["dag_run_id"]: r for r in stack.runs(ALERT_DAG)}
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    tis_of: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        invoice = by_reference.get(str(row["reference"]))
        run = runs.get(row["run_id"] or "")
        if invoice is None or run is None or invoice not in arrived or row["announced_at"] is None:
            continue
        if run["dag_run_id"] not in tis_of:
            tis_of[run["dag_run_id"]] = stack.task_instances(ALERT_DAG, run["dag_run_id"])
        take = next((t for t in tis_of[run["dag_run_id"]] if t["task_id"] == "take_events"), None)
        # a send_alert task handles a group of events, named after its first: the one running when it arrived
        sends = [t for t in tis_of[run["dag_run_id"]] if t["task_id"] == "send_alert" and t.get("start_date")
                 and epoch(t["start_date"]) <= arrived.get(invoice, 0)]
        send = max(sends, key=lambda t: epoch(t["start_date"]), default=None)
        stamps = [posted[invoice], row["announced_at"].timestamp(), epoch(run["queued_at"])]
        if take is None or send is None or not all(t.get(k) for t in (take, send)
                                                   for k in ("queued_when", "start_date", "end_date")):
            continue
        stamps += [epoch(take["queued_when"]), epoch(take["start_date"]), epoch(take["end_date"]),
                   epoch(send["queued_when"]), epoch(send["start_date"]), arrived[invoice]]
        # "run created -> first task queued" spans the run's own start; phases follow each other in time
        for name, start, end in zip(PHASES, stamps, stamps[1:], strict=False):
            phases[name].append(end - start)
    return phases


def skip_first_scheduled_run(stack: Any) -> None:
    """Unpause the reminder DAG, and mark the 09:00 run that starts at once failed before it sends."""
    from local_stack import wait_for

    stack.api("PATCH", f"/api/v2/dags/{REMINDER_DAG}", json={"is_paused": False}).raise_for_status()
    run = wait_for("the scheduled 09:00 run", lambda: next(iter(stack.runs(REMINDER_DAG)), None), 120, every=0.2)
    stack.api("PATCH", f"/api/v2/dags/{REMINDER_DAG}/dagRuns/{run['dag_run_id']}",
              json={"state": "failed"}).raise_for_status()
    wait_for("no reminder run in flight", lambda: all(r["state"] in ("success", "failed")
                                                      for r in stack.runs(REMINDER_DAG)), 120, every=1)


def ledger_status(url: str) -> Counter[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT status, count(*) FROM messages WHERE kind = 'payment_reminder' "
                                        "GROUP BY status")).all()
        return Counter({status: n for status, n in rows})
    finally:
        engine.dispose()


def run(work: Path, *, invoices: int = 5000, cap: int = 80, latency_ms: float = 150, events: int = 30) -> Section:
    """Start a stack, measure, stop it; the figures of the ``stack`` section."""
    import local_stack

    section = Section("stack")
    sandbox = {"invoices": invoices, "whatsapp_latency_ms": latency_ms, "whatsapp_rate_cap": cap}
    with open(work / "stack.out", "w") as out, local_stack.Stack(sandbox=sandbox, home=work / "stack", log=out) as stack:
        skip_first_scheduled_run(stack)
        stack.reset_data()
        alert_invoices = customers_for_alerts(stack, 2 * events + 1)
        # warm-up, not counted: the first event waits for the triggerer to start the inbox's asset watcher
        alert_latencies(stack, post_events(stack, alert_invoices[-1:]), timeout=300)

        # alerts alone
        alone_posted = post_events(stack, alert_invoices[:events])
        alone = alert_latencies(stack, alone_posted)
        alone_phases = latency_phases(stack, alone_posted, alert_invoices)

        # the 5,000 reminders, and alerts while they send
        requests_before = len(stack.sandbox.requests("whatsapp"))
        triggered = time.time()
        run_id = stack.trigger(REMINDER_DAG, conf={"messages_per_second": cap, "batch_size": 1000},
                               logical_date=datetime.now(UTC).isoformat())
        local_stack.wait_for("the first reminder", lambda: any(opaque(m)[1:2] == ["payment_reminder"]
                                                               for m in stack.sandbox.messages()), 300, every=0.5)
        load = os.getloadavg()[0]
        during_posted = post_events(stack, alert_invoices[events:2 * events])
        during = alert_latencies(stack, during_posted)
        load = max(load, os.getloadavg()[0])
        state = stack.wait_for_run(REMINDER_DAG, run_id, timeout=1200)
        during_phases = latency_phases(stack, during_posted, alert_invoices)
        finished = time.time()
        wall = next((epoch(r["end_date"]) for r in stack.runs(REMINDER_DAG) if r["dag_run_id"] == run_id),
                    finished) - triggered
        messages = stack.sandbox.messages()
        requests = stack.sandbox.requests("whatsapp")[requests_before:]
        statuses = ledger_status(stack.ledger_url)
        tis = stack.task_instances(REMINDER_DAG, run_id)

    reminders = [m for m in messages if opaque(m)[1:2] == ["payment_reminder"]]
    stamps = [epoch(m["received_at"]) for m in reminders]
    per_pair = Counter((m["wa_id"], opaque(m)[2]) for m in reminders)
    duplicated = sum(n - 1 for n in per_pair.values() if n > 1)
    sends = [r for r in requests if r["method"] == "POST" and r["path"].endswith("/messages")]
    accepted = [r["ts"] for r in sends if r["status"] == 200]
    refusals = sum(1 for r in requests if r.get("code") == 130429)
    sending_s = (max(stamps) - min(stamps)) if len(stamps) > 1 else 0.0
    accounted = sum(statuses[s] for s in ("sent", "skipped", "failed", "unknown"))
    lost = sum(statuses[s] for s in OPEN) + max(0, statuses["sent"] - len(reminders))

    section.add(f"{len(reminders):,} reminders through scheduler + 2 Celery workers, trigger to success", wall, "s",
                note=f"run {state}; sending {sending_s:.1f} s; floor {len(reminders) / cap:.1f} s at {cap}/s; "
                     f"{sum(1 for t in tis if t['task_id'] == 'send_reminders')} send tasks")
    section.add("achieved send rate (first to last message)", len(reminders) / sending_s if sending_s else 0.0,
                "msg/s", target=0.9 * cap, better=">=", note=f"cap {cap}/s")
    section.add("peak send requests at the provider in any 1 s", peak_per_second([r["ts"] for r in sends]),
                "requests", target=cap, note=f"reminders and alerts, one WhatsApp number; accepted: "
                                             f"{peak_per_second(accepted)} in the busiest second")
    section.add("throughput refusals (130429)", refusals, "refusals", target=0)
    section.add("lost + duplicated reminders", lost + duplicated, "messages", target=0,
                note=f"ledger {dict(statuses)}; {accounted:,} accounted; {duplicated} duplicated")
    late = 0
    for label, measured in (("alone", alone), (f"while {len(reminders):,} reminders send", during)):
        values = [v for v in measured if v is not None]
        missing = len(measured) - len(values)
        late += missing
        # an alert that never came counts as the whole wait, so that it shows in the p95
        ranked = values + [ALERT_TIMEOUT_S] * missing
        section.add(f"webhook -> WhatsApp p50, {label}", statistics.median(ranked), "s",
                    note=f"{len(measured)} events, one every {EVENT_SPACING_S:.0f} s")
        section.add(f"webhook -> WhatsApp p95, {label}", percentile(ranked, 95), "s", target=10,
                    note=f"worst arrived {max(values, default=0):.1f} s; {missing} not there after "
                         f"{ALERT_TIMEOUT_S:.0f} s")
    section.add(f"alerts not at the sandbox {ALERT_TIMEOUT_S:.0f} s after their webhook", late, "alerts", target=0,
                note="their inbox rows stay 'received' until the trigger announces them again (redeliver_after)")
    for phase in PHASES:
        alone_s, during_s = alone_phases[phase], during_phases[phase]
        section.add(f"  alert phase p50: {phase}, alone / during", statistics.median(during_s) if during_s else 0.0,
                    "s", note=f"alone {statistics.median(alone_s) if alone_s else 0.0:.1f} s; during p95 "
                              f"{percentile(during_s, 95) if during_s else 0.0:.1f} s ({len(during_s)} events)")
    section.details = {"load_average_1m": load, "alone_phases": alone_phases, "during_phases": during_phases,
                       "invoices": invoices, "cap": cap, "latency_ms": latency_ms, "state": state, "wall_s": wall,
                       "sending_s": sending_s, "ledger": dict(statuses), "alone_s": alone, "during_s": during,
                       "refusals": refusals, "duplicated": duplicated,
                       "send_tasks": [{k: t.get(k) for k in ("map_index", "state", "try_number", "start_date",
                                                              "end_date")} for t in tis
                                      if t["task_id"] == "send_reminders"]}
    return section
