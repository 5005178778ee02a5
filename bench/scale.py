"""Scale: N overdue invoices fetched from Zoho, recorded, planned and cut into mapped batches.

Each step runs in a fresh process, as each is its own Airflow task (``fetch_overdue_invoices``,
``plan_reminders``); the figure is that process's peak resident set size, imports included.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import SandboxProcess, Section, base_env, ledger_env, peak_rss_mb, run_child, zoho_budget

MAX_MAP_LENGTH = 1024  # Airflow's default [core] max_map_length
RSS_LIMIT_MB = 300


def fetch_task() -> dict[str, Any]:
    """(child) The refresh_zoho_token and fetch_overdue_invoices tasks' bodies, in one process.

    One process because outside a running task Airflow cannot store the shared token Variable:
    a second process would have to mint a second token, which a deployment would not.
    """
    from zoho_whatsapp.reminder_run import fetch_into_ledger
    from zoho_whatsapp.zoho import ZohoBooksHook

    hook = ZohoBooksHook()
    hook.get_access_token(min_validity=30 * 60)
    o = hook.get_organization()
    org = {"organization_id": o.organization_id, "name": o.name, "country_code": o.country_code,
           "currency_code": o.currency_code}
    started = time.perf_counter()
    fetched = fetch_into_ledger(org, logical_date=datetime.now(UTC), dag_id="bench", run_id="bench__scale")
    return {"fetched": fetched, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb()}


def plan_task(fetched: dict[str, Any]) -> dict[str, Any]:
    """(child) The plan_reminders task's body, with the DAG's own params and limits."""
    from bench import reminder_dag
    from zoho_whatsapp.reminder_run import plan_batches, run_key

    settings = reminder_dag.send_settings()
    started = time.perf_counter()
    refs = plan_batches(fetched, params=settings["params"], max_batches=settings["max_batches"],
                        max_parallel=settings["max_parallel"])
    seconds = time.perf_counter() - started
    from zoho_whatsapp.ledger import SendLedger

    ledger = SendLedger.from_connection("reminder_ledger_default")
    account = ledger.account(run_key(fetched))
    ledger.dispose()
    return {"batches": len(refs), "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "account": account,
            "batch_size_param": settings["params"].get("batch_size")}


def run(work: Path, *, invoices: int = 50_000) -> Section:
    section = Section("scale")
    # Zoho allows 100 calls a minute: 50,000 invoices take ~350 calls, three and a half minutes of
    # waiting that would measure Zoho's limit rather than our memory. The call count is reported.
    with SandboxProcess(invoices=invoices, zoho_rate_limit_per_minute=1_000_000, zoho_daily_quota=1_000_000) as sb:
        env = {**base_env(work / "airflow-scale"), **sb.connection_env(), **ledger_env(work / "scale-ledger.db")}
        fetched = run_child(fetch_task, env)
        planned = run_child(plan_task, env, fetched=fetched["fetched"])
        truth = sb.overdue_invoices()
        books_calls = len(sb.requests("zoho_books"))
        token_calls = len(sb.requests("zoho_oauth"))
        duplicate_rows = 1 if sb.get("/faults")["faults"].get("zoho_duplicate_overdue_row") and invoices > 200 else 0
    customers = len({i["customer_id"] for i in truth})
    budget = zoho_budget(len(truth) + duplicate_rows, fetched["fetched"])
    section.add(f"fetch {invoices:,} invoices: peak RSS", fetched["peak_rss_mb"], "MB", target=RSS_LIMIT_MB,
                note=f"fetch_overdue_invoices task process, {fetched['seconds']:.1f}s")
    section.add(f"plan {invoices:,} invoices: peak RSS", planned["peak_rss_mb"], "MB", target=RSS_LIMIT_MB,
                note=f"plan_reminders task process, {planned['seconds']:.1f}s")
    section.add("mapped send tasks", planned["batches"], "tasks", target=MAX_MAP_LENGTH,
                note=f"{planned['account']['by_status'].get('planned', 0):,} messages planned")
    section.add(f"Zoho calls for {invoices:,} invoices", books_calls + token_calls, "calls", target=budget,
                note=f"{token_calls} token + {books_calls} Books; {customers:,} customers")
    section.details = {
        "invoices": invoices,
        "customers": customers,
        "fetch": fetched,
        "plan": planned,
        "zoho_books_calls": books_calls,
        "zoho_token_calls": token_calls,
        "zoho_budget": budget,
        "zoho_listing_repeats_a_row": bool(duplicate_rows),
        "note": "sandbox per-minute limit lifted for this section so that it measures memory, not Zoho's 100/min",
    }
    return section
