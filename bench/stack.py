"""On the CeleryExecutor stack (include/local_stack.py): about 5,000 reminder messages through the real scheduler
and workers, and the webhook alert latency, alone and while those reminders are sending.

    python -m bench.run --only stack          (about 6 minutes)

1. The stack starts as ``make stack`` does (compose's settings, two Celery workers), with the sandbox
   seeding ``invoices`` overdue invoices at Meta's ``cap`` and ``latency_ms``. Reminders are one message per
   customer and currency, and the sandbox makes one customer per 2.5 overdue invoices (include/sandbox/seed.py),
   so the full size, 12,500 invoices (5,000 customers), sends about 5,000 messages: the issue's "5,000 reminders
   at an 80 msg/s cap". The 09:00 run that unpausing the reminder DAG starts is marked failed before it sends,
   and the sandbox and ledger are reset: the measured runs are the bench's own.
2. ``events`` Zoho "invoice created" webhooks, one every 2 s, each to a customer of its own: the time
   from the POST to the API server until the sandbox accepted the WhatsApp message (p50, p95), and where
   that time went (:func:`latency_phases`). One more event first, not counted, waits for the triggerer to
   start watching the inbox.
3. A reminder run for every invoice at ``messages_per_second = cap``, triggered through the REST API:
   wall time from the trigger to success, the rate achieved while sending, the most requests the
   provider saw in any 1 s window, throughput refusals (130429), lost and duplicated messages (a message
   is a lead row of the ledger, counted against the messages at the sandbox); while it sends, ``events``
   more webhooks as in 2.
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
from urllib.parse import quote

import httpx

from bench.harness import PROVIDER_NICE, Section

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


def event_reference(invoice: dict[str, Any]) -> str:
    """The inbox's ``reference`` of the webhook :func:`post_events` sends for ``invoice``.

    That body is the integration guide's flat payload, whose ``invoice_id`` holds the invoice *number*: the
    endpoint stores it as ``number:<invoice number>`` (zoho_whatsapp.webhooks.payloads.AlertEvent.reference).
    """
    return f"number:{invoice['invoice_number']}"


def latency_phases(stack: Any, posted: dict[str, float], invoices: list[dict[str, Any]],
                   trace: list[dict[str, Any]] | None = None,
                   workers: dict[str, str] | None = None) -> dict[str, list[float]]:
    """Where each alert's time went, from the inbox row, the run that handled it and its task instances.

    ``posted`` as :func:`post_events` returns it; ``invoices`` the invoices the webhooks named. Events whose
    run or tasks cannot be found (an alert that never came) are left out of every phase. ``trace``, when
    given, gets one entry per event: its stamps, the run and the worker of each task (``workers``, task
    instance id -> worker, from :class:`TaskWorkers`) for the bench's details.
    """
    import sqlalchemy as sa

    by_reference = {event_reference(i): str(i["invoice_id"]) for i in invoices if str(i["invoice_id"]) in posted}
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
    phases: dict[str, list[float]] = {name: [] for name in PHASES}
    runs: dict[str, dict[str, Any] | None] = {}
    tis_of: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        invoice = by_reference.get(str(row["reference"]))
        if invoice is None or invoice not in arrived or row["announced_at"] is None or not row["run_id"]:
            continue
        run_id = row["run_id"]
        if run_id not in runs:
            # one run at a time: the run list pages at 100 runs, and a bench makes 60 or more alert runs
            answer = stack.api("GET", f"/api/v2/dags/{ALERT_DAG}/dagRuns/{run_id}")
            runs[run_id] = answer.json() if answer.status_code == 200 else None
            tis_of[run_id] = stack.task_instances(ALERT_DAG, run_id) if runs[run_id] else []
        run = runs[run_id]
        take = next((t for t in tis_of[run_id] if t["task_id"] == "take_events"), None)
        # a send_alert task handles a group of events, named after its first: the one running when it arrived
        sends = [t for t in tis_of[run_id] if t["task_id"] == "send_alert" and t.get("start_date")
                 and epoch(t["start_date"]) <= arrived[invoice]]
        send = max(sends, key=lambda t: epoch(t["start_date"]), default=None)
        if run is None or take is None or send is None or not run.get("queued_at") or not all(
                t.get(k) for t in (take, send) for k in ("queued_when", "start_date", "end_date")):
            continue
        stamps = [posted[invoice], row["announced_at"].timestamp(), epoch(run["queued_at"]),
                  epoch(take["queued_when"]), epoch(take["start_date"]), epoch(take["end_date"]),
                  epoch(send["queued_when"]), epoch(send["start_date"]), arrived[invoice]]
        # A run takes every pending event no run has taken yet, so an event can be handled by a run created before
        # the triggerer announced it: each stamp counts from the latest before it, and the phases add up to the
        # whole wait. "run created -> first task queued" spans the run's own start.
        raw = stamps
        stamps = [max(stamps[:i + 1]) for i in range(len(stamps))]
        for name, start, end in zip(PHASES, stamps, stamps[1:], strict=False):
            phases[name].append(end - start)
        if trace is not None:
            trace.append({"invoice": invoice, "run_id": run_id, "stamps": [round(t - raw[0], 3) for t in raw],
                          "take_worker": (workers or {}).get(str(take.get("id"))),
                          "send_worker": (workers or {}).get(str(send.get("id"))), "send_queue": send.get("queue")})
    return phases


def cpu_seconds(stack: Any) -> dict[str, float]:
    """CPU seconds used so far by each component of ``stack`` (its tasks included), the sandbox and PostgreSQL.

    A process's own time plus that of the children it has reaped: a task that ended counts in its worker.
    PostgreSQL's is the whole server's (other databases' clients too).
    """
    import psutil

    def tree(root: Any) -> float:
        total = 0.0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        for proc in procs:
            try:
                t = proc.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                pass
        return total

    out = {name: tree(psutil.Process(c.proc.pid)) for name, c in stack.components.items() if c.alive}
    sandbox = getattr(stack.sandbox, "_proc", None)
    if sandbox is not None:
        out["sandbox"] = tree(psutil.Process(sandbox.pid))
    out["postgres"] = sum(tree(p) for p in psutil.process_iter(["name", "ppid"])
                          if p.info["name"] == "postgres" and p.info["ppid"] == 1)
    return out


class TaskWorkers:
    """Which worker runs each task, sampled from the workers' process trees while it runs (a task's supervisor
    process is titled ``airflow supervisor: <task instance id>``); a context manager.

    The REST API's ``hostname`` is the machine's, the same for every worker of a local stack.
    """

    def __init__(self, stack: Any, every: float = 0.5) -> None:
        import threading

        self.stack, self.every = stack, every
        self.seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        workers = {name: c.proc.pid for name, c in self.stack.components.items()
                   if name.startswith("airflow-") and "worker" in name and c.alive}
        while not self._stop.wait(self.every):
            for name, pid in workers.items():
                try:
                    for proc in psutil.Process(pid).children(recursive=True):
                        title = " ".join(proc.cmdline())
                        if title.startswith("airflow supervisor: "):
                            self.seen[title.split(": ", 1)[1].strip()] = name
                except psutil.Error:
                    continue

    def __enter__(self) -> TaskWorkers:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def skip_first_scheduled_run(stack: Any) -> None:
    """Unpause the reminder DAG, and mark the 09:00 run that starts at once failed before it sends."""
    from local_stack import wait_for

    stack.api("PATCH", f"/api/v2/dags/{REMINDER_DAG}", json={"is_paused": False}).raise_for_status()
    run = wait_for("the scheduled 09:00 run", lambda: next(iter(stack.runs(REMINDER_DAG)), None), 120, every=0.2)
    answers: list[str] = []

    def mark_failed() -> bool:
        answer = stack.api("PATCH", f"/api/v2/dags/{REMINDER_DAG}/dagRuns/{quote(run['dag_run_id'], safe='')}",
                           json={"state": "failed"})
        answers.append(f"HTTP {answer.status_code} {answer.text[:300]}")
        return answer.status_code < 400

    # the API server can answer 500 while the scheduler is still writing the new run's task instances
    try:
        wait_for("the 09:00 run marked failed", mark_failed, 60, every=2)
    except TimeoutError as exc:
        raise RuntimeError(f"PATCH {run['dag_run_id']} state=failed: {answers[-3:]}") from exc
    wait_for("no reminder run in flight", lambda: all(r["state"] in ("success", "failed")
                                                      for r in stack.runs(REMINDER_DAG)), 120, every=1)


def reminder_rows(url: str) -> list[dict[str, Any]]:
    """The ledger's reminder rows: one per invoice; a message's rows point to its lead row (``message_id``)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(
                "SELECT id, message_id, organization_id, kind, invoice_id, occasion, status FROM messages "
                "WHERE kind = 'payment_reminder'"))]
    finally:
        engine.dispose()


def reminder_count(rows: list[dict[str, Any]], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Messages (lead rows) against the messages at the sandbox, which echo their lead row's key.

    ``lost``: messages still open, and messages ``sent`` in the ledger that are not at the sandbox;
    ``duplicated``: a message at the sandbox more than once.
    """
    leads = [r for r in rows if r["message_id"] in (None, r["id"])]
    at_sandbox = Counter(tuple(parts) for m in messages if len(parts := opaque(m)) == 4
                         and parts[1] == "payment_reminder")
    sent = {(str(r["organization_id"]), r["kind"], str(r["invoice_id"]), str(r["occasion"]))
            for r in leads if r["status"] == "sent"}
    open_messages = sum(1 for r in leads if r["status"] in OPEN)
    missing = len(sent - set(at_sandbox))
    return {"invoices": Counter(r["status"] for r in rows), "messages": Counter(r["status"] for r in leads),
            "open": open_messages, "sent_not_at_sandbox": missing, "lost": open_messages + missing,
            "duplicated": sum(n - 1 for n in at_sandbox.values() if n > 1),
            "at_sandbox_not_sent": len(set(at_sandbox) - sent), "at_sandbox": len(at_sandbox)}


def run(work: Path, *, invoices: int = 12_500, cap: int = 80, latency_ms: float = 150, events: int = 30) -> Section:
    """Start a stack, measure, stop it; the figures of the ``stack`` section."""
    import local_stack

    section = Section("stack")
    # Meta is not on the stack's CPUs: the sandbox stays ahead of Airflow's load (root only), or its own late
    # wake-ups would count as the senders' bursts.
    sandbox = {"invoices": invoices, "whatsapp_latency_ms": latency_ms, "whatsapp_rate_cap": cap, "nice": PROVIDER_NICE}
    with open(work / "stack.out", "w") as out, local_stack.Stack(sandbox=sandbox, home=work / "stack", log=out) as stack:
        skip_first_scheduled_run(stack)
        stack.reset_data()
        alert_invoices = customers_for_alerts(stack, 2 * events + 1)
        # warm-up, not counted: the first event waits for the triggerer to start the inbox's asset watcher
        alert_latencies(stack, post_events(stack, alert_invoices[-1:]), timeout=300)

        # alerts alone
        alone_posted = post_events(stack, alert_invoices[:events])
        alone = alert_latencies(stack, alone_posted)
        alone_trace: list[dict[str, Any]] = []
        alone_phases = latency_phases(stack, alone_posted, alert_invoices, alone_trace)

        # the ~5,000 reminder messages, and alerts while they send
        requests_before = len(stack.sandbox.requests("whatsapp"))
        triggered = time.time()
        # batch_size: the ~5,000 messages in one wave of 4 send tasks (Airflow takes seconds to start the next)
        run_id = stack.trigger(REMINDER_DAG, conf={"messages_per_second": cap, "batch_size": 1250},
                               logical_date=datetime.now(UTC).isoformat())
        local_stack.wait_for("the first reminder", lambda: any(opaque(m)[1:2] == ["payment_reminder"]
                                                               for m in stack.sandbox.messages()), 300, every=0.5)
        load = os.getloadavg()[0]
        cpu_before, cpu_clock = cpu_seconds(stack), time.time()
        with TaskWorkers(stack) as task_workers:
            during_posted = post_events(stack, alert_invoices[events:2 * events])
            during = alert_latencies(stack, during_posted)
        load = max(load, os.getloadavg()[0])
        cpu_after, cpu_window = cpu_seconds(stack), time.time() - cpu_clock
        state = stack.wait_for_run(REMINDER_DAG, run_id, timeout=1200)
        during_trace: list[dict[str, Any]] = []
        during_phases = latency_phases(stack, during_posted, alert_invoices, during_trace, task_workers.seen)
        finished = time.time()
        wall = next((epoch(r["end_date"]) for r in stack.runs(REMINDER_DAG) if r["dag_run_id"] == run_id),
                    finished) - triggered
        messages = stack.sandbox.messages()
        requests = stack.sandbox.requests("whatsapp")[requests_before:]
        counted = reminder_count(reminder_rows(stack.ledger_url), messages)
        tis = stack.task_instances(REMINDER_DAG, run_id)

    reminders = [m for m in messages if opaque(m)[1:2] == ["payment_reminder"]]
    stamps = [epoch(m["received_at"]) for m in reminders]
    sends = [r for r in requests if r["method"] == "POST" and r["path"].endswith("/messages")]
    accepted = [r["ts"] for r in sends if r["status"] == 200]
    refusals = sum(1 for r in requests if r.get("code") == 130429)
    # refused sends by the kind of message: an alert refused waits 1, 2, 4 s before its next try
    refused = Counter((opaque(r.get("json") or {}) + ["?", "?"])[1] for r in requests if r.get("code") == 130429)
    sending_s = (max(stamps) - min(stamps)) if len(stamps) > 1 else 0.0
    invoice_rows, message_rows = counted["invoices"], counted["messages"]

    section.add(f"{len(reminders):,} reminder messages ({sum(invoice_rows.values()):,} invoices) through scheduler "
                f"+ 2 Celery workers, trigger to success", wall, "s",
                note=f"run {state}; sending {sending_s:.1f} s; floor {len(reminders) / cap:.1f} s at {cap}/s; "
                     f"{sum(1 for t in tis if t['task_id'] == 'send_reminders')} send tasks")
    section.add("achieved send rate (first to last message)", len(reminders) / sending_s if sending_s else 0.0,
                "msg/s", target=0.9 * cap, better=">=", note=f"cap {cap}/s")
    section.add("peak send requests at the provider in any 1 s", peak_per_second([r["ts"] for r in sends]),
                "requests", target=cap, note=f"reminders and alerts, one WhatsApp number; accepted: "
                                             f"{peak_per_second(accepted)} in the busiest second")
    section.add("throughput refusals (130429)", refusals, "refusals", target=0,
                note=f"by kind: {dict(refused)}" if refused else "")
    section.add("lost + duplicated reminder messages", counted["lost"] + counted["duplicated"], "messages", target=0,
                note=f"ledger messages {dict(message_rows)} (invoices {dict(invoice_rows)}); {counted['at_sandbox']:,} "
                     f"at the sandbox; lost: {counted['open']} open + {counted['sent_not_at_sandbox']} sent but not "
                     f"at the sandbox; {counted['duplicated']} duplicated; {counted['at_sandbox_not_sent']} at the "
                     f"sandbox not 'sent' in the ledger")
    late = 0
    for label, measured in (("alone", alone), (f"while {len(reminders):,} reminder messages send", during)):
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
        section.add(f"  alert phase p50 while reminders send: {phase}", statistics.median(during_s) if during_s
                    else 0.0, "s", note=f"during: p95 {percentile(during_s, 95) if during_s else 0.0:.1f} s "
                                       f"({len(during_s)} events); alone: p50 "
                                       f"{statistics.median(alone_s) if alone_s else 0.0:.1f} s ({len(alone_s)} events)")
    section.details = {"load_average_1m": load, "alone_phases": alone_phases, "during_phases": during_phases,
                       "invoices": invoices, "cap": cap, "latency_ms": latency_ms, "state": state, "wall_s": wall,
                       "sending_s": sending_s, "ledger": {k: dict(v) if isinstance(v, Counter) else v
                                                           for k, v in counted.items()},
                       "alone_s": alone, "during_s": during, "alone_trace": alone_trace, "during_trace": during_trace,
                       "refusals": refusals, "refused_by_kind": dict(refused),
                       "alert_tasks_by_worker": dict(Counter(str(t[k]) for t in during_trace
                                                             for k in ("take_worker", "send_worker"))),
                       "cpu_s_while_alerts_during": {k: round(cpu_after.get(k, 0.0) - v, 1)
                                                     for k, v in cpu_before.items()},
                       "cpu_window_s": round(cpu_window, 1),
                       "send_tasks": [{k: t.get(k) for k in ("map_index", "state", "try_number", "start_date",
                                                              "end_date")} for t in tis
                                      if t["task_id"] == "send_reminders"]}
    return section
