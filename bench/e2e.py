"""End to end: the reminder DAG over N invoices with ``dag.test()`` on the sandbox, and Zoho's bill for it.

Two runs, each in a fresh process as a new worker would be:

1. the first run of the day: no cached Zoho token, every reminder sent;
2. the next day's run: the token cached by run 1 (an Airflow Variable) is still valid, so Zoho must
   see no token request at all; every invoice was reminded yesterday, so nothing is sent.

``dag.test()`` runs mapped task instances one after another, where a deployment runs
``MAX_PARALLEL_BATCHES`` of them at once, each with that share of ``messages_per_second``. So that
each batch still sends at the number's whole cap (what the parallel batches do together), the run
is given ``messages_per_second = cap x MAX_PARALLEL_BATCHES``.

The data is the sandbox's: about 2.5 invoices per customer, so Meta's pair rate (one message per
customer per 6 s) and not the throughput cap bounds how fast the customers with most invoices can
be reminded.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.harness import (
    SandboxProcess,
    Section,
    base_env,
    ledger_env,
    migrate_airflow_db,
    run_child,
    zoho_budget,
)
from bench.reminder_dag import DAG_FILE, DAG_ID, constants

PAIR_INTERVAL = 6.0  # Meta: one message per customer per 6 s (code 131056)


def run_dag(logical_date: str, conf: dict[str, Any]) -> dict[str, Any]:
    """(child) One ``dag.test()`` of the reminder DAG; per-task durations from the metadata DB."""
    import pendulum
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(DAG_FILE))
    dag = bag.get_dag(DAG_ID)
    started = time.perf_counter()
    dr = dag.test(logical_date=pendulum.parse(logical_date), run_conf=conf)
    wall = time.perf_counter() - started
    tasks: dict[str, dict[str, Any]] = defaultdict(lambda: {"instances": 0, "seconds": 0.0, "states": {},
                                                            "each": []})
    with create_session() as session:
        for ti in session.query(TaskInstance).filter(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == dr.run_id):
            entry = tasks[ti.task_id]
            entry["instances"] += 1
            if ti.start_date and ti.end_date:
                seconds = (ti.end_date - ti.start_date).total_seconds()
                entry["seconds"] += seconds
                entry["each"].append(round(seconds, 2))
            entry["states"][str(ti.state)] = entry["states"].get(str(ti.state), 0) + 1
        row = (
            session.query(XComModel)
            .filter(XComModel.dag_id == DAG_ID, XComModel.run_id == dr.run_id,
                    XComModel.task_id == "account_for_every_invoice", XComModel.key == "return_value")
            .first()
        )
        report = XComModel.deserialize_value(row) if row is not None else None
    return {"state": str(dr.state), "wall_seconds": wall, "tasks": dict(tasks), "report": report}


def run(work: Path, *, invoices: int = 5000, latency_ms: float = 150, cap: int = 80,
        dry_run: bool = False) -> list[Section]:
    """Both runs; ``dry_run`` (the smoke test) renders every message and sends none."""
    e2e, zoho = Section("end_to_end"), Section("zoho")
    home = work / "airflow-e2e"
    with SandboxProcess(invoices=invoices, whatsapp_latency_ms=latency_ms, whatsapp_rate_cap=cap) as sb:
        env = {**base_env(home), **sb.connection_env(), **ledger_env(work / "e2e-ledger.db")}
        migrate_airflow_db(env)
        parallel = int(constants().get("MAX_PARALLEL_BATCHES", 1))
        # dag.test() runs the mapped batches one after another, and every batch holding a customer with
        # several invoices lasts (k - 1) x 6 s: the large-run setting the README recommends keeps the
        # number of such batches, and so the sequential wall time, close to what an executor would see.
        conf: dict[str, Any] = {"messages_per_second": cap * parallel, "batch_size": 1000}
        if dry_run:
            conf["dry_run"] = True
        day1, day2 = "2031-01-01T09:00:00+05:30", "2031-01-02T09:00:00+05:30"

        first = run_child(run_dag, env, logical_date=day1, conf=conf)
        requests_1 = sb.requests()
        second = run_child(run_dag, env, logical_date=day2, conf=conf)
        requests_2 = sb.requests()[len(requests_1):]
        truth = sb.overdue_invoices()
        messages = sb.messages()
        received = len(messages)
        duplicate_rows = 1 if sb.get("/faults")["faults"].get("zoho_duplicate_overdue_row") and invoices > 200 else 0

    customers = len({i["customer_id"] for i in truth})
    listed = len(truth) + duplicate_rows
    listing = ((first["report"] or {}).get("date_totals") or {}).get("zoho_listing") or {}
    budget = zoho_budget(listed, listing)

    def zoho_calls(requests: list[dict[str, Any]]) -> tuple[int, int]:
        return (sum(r["service"] == "zoho_books" for r in requests), sum(r["service"] == "zoho_oauth" for r in requests))

    books_1, tokens_1 = zoho_calls(requests_1)
    books_2, tokens_2 = zoho_calls(requests_2)
    listing_note = (f"ceil({listed:,}/200) + due-soon listing ({listing.get('upcoming_invoices')} rows) + "
                    f"ceil({listing.get('customers_listed')}/200 customers listed) + 2"
                    + (f"; Zoho repeats a row across pages: {len(truth):,} invoices = {listed:,} rows" if duplicate_rows else ""))
    zoho.add("calls, first run of the day", books_1 + tokens_1, "calls", target=budget,
             note=f"{tokens_1} token + {books_1} Books; budget {listing_note}")
    zoho.add("calls, next run (token cached)", books_2 + tokens_2, "calls", target=budget,
             note=f"{tokens_2} token + {books_2} Books")
    zoho.add("token refreshes with a valid cached token", tokens_2, "requests", target=0,
             note="second run, new worker process: the token came from the Airflow Variable")
    zoho.details = {"invoices": len(truth), "customers": customers, "rows_listed": listed, "budget": budget,
                    "run1": {"books": books_1, "token": tokens_1}, "run2": {"books": books_2, "token": tokens_2}}

    report = (first["report"] or {}).get("date_totals") or {}  # the first run of its date: this run's = the date's
    tasks = first["tasks"]
    per_recipient = Counter(m["wa_id"] for m in messages)
    most = max(per_recipient.values(), default=0)
    floors = {"throughput_s": received / cap, "pair_rate_s": PAIR_INTERVAL * max(0, most - 1),
              "most_messages_to_one_customer": most}
    e2e.add(f"DAG run over {invoices:,} invoices, wall time", first["wall_seconds"], "s",
            note=f"state {first['state']}; sent {report.get('sent')}, skipped {report.get('skipped')}, "
                 f"failed {report.get('failed')}, open {report.get('open')}")
    order = ["check_go_live", "refresh_zoho_token", "fetch_overdue_invoices", "plan_reminders", "send_reminders",
             "account_for_every_invoice"]
    for task_id in sorted(tasks, key=lambda t: order.index(t) if t in order else len(order)):
        info = tasks[task_id]
        note = ""
        if info["instances"] > 1:
            note = (f"{info['instances']} mapped instances, one after another ({', '.join(f'{x:.0f}' for x in info['each'])} s); "
                    f"floors: {received:,}/{cap} per s = {floors['throughput_s']:.0f} s, "
                    f"{most} messages to one customer x 6 s pair rate = {floors['pair_rate_s']:.0f} s per batch holding them")
        e2e.add(f"  task {task_id}", info["seconds"], "s", note=note)
    e2e.add("  dag.test() overhead (parse, scheduling, bookkeeping)",
            first["wall_seconds"] - sum(t["seconds"] for t in tasks.values()), "s")
    if not dry_run:
        # What Meta bills: one message per customer and currency carries all its invoices due a reminder.
        reminded = report.get("sent") or 0
        e2e.add("messages per reminded invoice", received / reminded if reminded else 0, "messages", target=0.4,
                note=f"{received:,} messages for {reminded:,} invoices of {customers:,} customers (1.0 before issue 14)")
    unaccounted = 0 if dry_run else report.get("open") or 0
    e2e.add("invoices not accounted for", unaccounted + (0 if first["state"] == "success" else 1),
            "invoices", target=0, note=f"sandbox received {received:,} messages")
    e2e.details = {"conf": conf, "first_run": first, "second_run": second, "received": received, "floors": floors,
                   "note": "dag.test() runs mapped tasks one after another; messages_per_second = cap x parallel"}
    return [e2e, zoho]
