"""Measure webhook → WhatsApp latency through a real Airflow: api-server, scheduler, dag-processor, triggerer.

    .venv/bin/python -m tests.webhooks.live_stack [--events 20] [--keep]

Starts the sandbox in this process and the four Airflow components as child processes (LocalExecutor,
SQLite metadata DB, a throw-away AIRFLOW_HOME), POSTs webhooks to the plugin endpoint on the API
server one at a time, and for each event reports the time from the moment the POST was sent to the
moment the sandbox received the WhatsApp send request, with a breakdown from the inbox and the
metadata DB. ``tests/webhooks/test_live_stack.py`` runs it when ZW_LIVE_STACK=1.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

_INCLUDE = Path(__file__).resolve().parents[2] / "include"
if str(_INCLUDE) not in sys.path:
    sys.path.insert(0, str(_INCLUDE))
import local_airflow  # noqa: E402  (include/ is not on sys.path before the line above)

local_airflow.add_source_paths()
from sandbox import Sandbox  # noqa: E402
from zoho_whatsapp.rules.phone import UnusableNumber, to_whatsapp_number  # noqa: E402

DAG_ID = "zoho_books_invoice_alerts"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def environment(home: Path, port: int, sb: Sandbox, ledger: Path, secret: str) -> dict[str, str]:
    connections = {
        **sb.connections(),
        **local_airflow.sqlite_ledger(ledger),
        "zoho_books_webhook": {"conn_type": "generic", "password": secret},
    }
    stack = {
        **local_airflow.server_settings(port),
        "AIRFLOW__CORE__PARALLELISM": "4",
        # Only the alert DAG runs: the 09:00 reminder DAG would compete for the executor's slots.
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    }
    # Nothing of the test session's own Airflow (or pytest's variables) may leak into the stack.
    return local_airflow.environment(home, drop=("AIRFLOW", "PYTEST"),
                                     extra={**stack, **local_airflow.connection_env(connections)})


def wait_for(what: str, check: Any, timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"waited {timeout:.0f}s for {what}")


def usable_invoices(sb: Sandbox) -> list[tuple[dict[str, Any], str]]:
    """Overdue invoices of distinct customers with a WhatsApp-able mobile (Meta paces per recipient)."""
    seen: set[str] = set()
    found = []
    for invoice in sb.invoices("overdue"):
        if invoice["customer_id"] in seen or float(invoice["balance"]) <= 0 or invoice["currency_code"] != "INR":
            continue
        try:
            number = to_whatsapp_number(sb.contact(invoice["customer_id"]).get("mobile"), "IN")
        except UnusableNumber:
            continue
        seen.add(invoice["customer_id"])
        found.append((invoice, number))
    return found


def event_body(sb: Sandbox, invoice: dict[str, Any], number: str, index: int) -> tuple[str, dict[str, Any], str]:
    """Alternately an invoice (the guide's flat payload) and a payment (Zoho's Default Payload)."""
    if index % 2 == 0:
        body = {"invoice_id": invoice["invoice_number"], "customer_name": invoice["customer_name"], "mobile": number,
                "total": invoice["total"], "balance": invoice["balance"], "due_date": invoice["due_date"],
                "status": "sent", "currency_code": "INR"}
        return "invoices", body, f"invoice_created:{invoice['invoice_id']}:{invoice['invoice_id']}"
    payment = sb.add_payment(invoice["invoice_id"], amount=round(float(invoice["balance"]) / 2, 2))
    return "payments", {"payment": payment}, f"payment_received:{invoice['invoice_id']}:{payment['payment_id']}"


def whatsapp_send_time(sb: Sandbox, opaque_suffix: str) -> float | None:
    for entry in sb.requests(service="whatsapp"):
        body = entry.get("json") or {}
        if str(body.get("biz_opaque_callback_data", "")).endswith(opaque_suffix) and entry["status"] == 200:
            return float(entry["ts"])
    return None


def stamp(value: str | None) -> float | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:  # SQLite keeps UTC without an offset
        from datetime import UTC

        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def handled(ledger: Path, event_id: int) -> bool:
    with sqlite3.connect(ledger) as db:
        return db.execute("SELECT status FROM webhook_events WHERE id = ?", (event_id,)).fetchone()[0] == "handled"


def breakdown(home: Path, ledger: Path, event_id: int) -> dict[str, float | None]:
    """When the trigger announced the event, the run was queued, and each task ran (epoch seconds)."""
    with sqlite3.connect(ledger) as db:
        announced_at, run_id = db.execute(
            "SELECT announced_at, run_id FROM webhook_events WHERE id = ?", (event_id,)).fetchone()
    out: dict[str, float | None] = {"announced": stamp(announced_at)}
    with sqlite3.connect(home / "airflow.db") as db:
        row = db.execute("SELECT queued_at, start_date FROM dag_run WHERE dag_id = ? AND run_id = ?",
                         (DAG_ID, run_id)).fetchone()
        out["run_queued"], out["run_started"] = (stamp(row[0]), stamp(row[1])) if row else (None, None)
        for task_id, start, end in db.execute(
            "SELECT task_id, start_date, end_date FROM task_instance WHERE dag_id = ? AND run_id = ?", (DAG_ID, run_id)
        ):
            out[f"{task_id}_start"], out[f"{task_id}_end"] = stamp(start), stamp(end)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the AIRFLOW_HOME and its logs")
    args = parser.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="zw-live-stack-"))
    port = local_airflow.free_port()
    ledger = home / "reminder_ledger.db"
    airflow = str(Path(sys.executable).with_name("airflow"))
    with ExitStack() as stack:
        sb = stack.enter_context(Sandbox(host="127.0.0.1", port=0, seed=42))
        secret = sb.credentials["webhook_secret"]
        env = environment(home, port, sb, ledger, secret)
        local_airflow.migrate_db(env)
        children: list[subprocess.Popen] = []

        def stop_children() -> None:
            for child in children:
                if child.poll() is None:
                    os.killpg(child.pid, signal.SIGTERM)
            for child in children:
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)

        stack.callback(stop_children)
        for name in COMPONENTS:
            log = open(home / f"{name}.log", "wb")  # noqa: SIM115 - closed by the ExitStack
            stack.callback(log.close)
            command = [airflow, name] + (["--port", str(port), "--workers", "1"] if name == "api-server" else [])
            children.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True))
        base = f"http://127.0.0.1:{port}"
        http = stack.enter_context(httpx.Client(base_url=base, timeout=30))
        wait_for("the API server", lambda: http.get("/api/v2/monitor/health").status_code == 200, 180)
        wait_for("the plugin endpoint", lambda: http.post("/zoho-books/webhooks/invoices").status_code == 401, 60)
        wait_for("the alert DAG to be parsed and unpaused", lambda: subprocess.run(
            [airflow, "dags", "unpause", DAG_ID], env=env, capture_output=True).returncode == 0, 300, every=2)
        print(f"stack up on {base} (AIRFLOW_HOME {home})", flush=True)

        invoices = usable_invoices(sb)
        assert len(invoices) > args.events, "not enough distinct customers in the sandbox"
        head = {"X-Zoho-Webhook-Secret": secret}

        def deliver(index: int) -> tuple[float, int, str]:
            invoice, number = invoices[index]
            path, body, opaque = event_body(sb, invoice, number, index)
            sent = time.time()
            answer = http.post(f"/zoho-books/webhooks/{path}", json=body, headers=head)
            assert answer.status_code == 202, answer.text
            return sent, answer.json()["event_id"], opaque

        # Warm-up: the DAG must be parsed and its asset watcher running in the triggerer first.
        sent, event_id, opaque = deliver(0)
        wait_for("the first alert (DAG parsed, trigger running)", lambda: whatsapp_send_time(sb, opaque), 300)
        print(f"warm-up alert took {whatsapp_send_time(sb, opaque) - sent:.1f}s", flush=True)

        rng = random.Random(7)
        results = []
        for index in range(1, args.events + 1):
            time.sleep(rng.uniform(0.5, 1.5))  # arrive at any phase of the trigger's poll
            sent, event_id, opaque = deliver(index)
            arrived = wait_for(f"alert {index}", lambda o=opaque: whatsapp_send_time(sb, o), 180, every=0.05)
            wait_for("the event to be marked handled", lambda e=event_id: handled(ledger, e), 60, every=0.1)
            parts = breakdown(home, ledger, event_id)
            results.append({"event_id": event_id, "latency": arrived - sent, "sent": sent, "arrived": arrived, **parts})
            print(f"event {index:2d} #{event_id}: {arrived - sent:5.2f}s  " + "  ".join(
                f"{k}=+{v - sent:.2f}" for k, v in parts.items() if v is not None), flush=True)
        latencies = [r["latency"] for r in results]
        summary = {
            "events": len(latencies),
            "median_s": round(statistics.median(latencies), 2),
            "worst_s": round(max(latencies), 2),
            "best_s": round(min(latencies), 2),
            "messages": len(sb.messages()),
            "home": str(home),
        }
        print("FIGURE webhook receipt -> WhatsApp send request at the sandbox, "
              f"{summary['events']} events: median {summary['median_s']}s, worst {summary['worst_s']}s, "
              f"best {summary['best_s']}s", flush=True)
        phases = {}
        for name, key in (("trigger", "announced"), ("run queued", "run_queued"), ("take_events start", "take_events_start"),
                          ("send_alert start", "send_alert_start")):
            values = [r[key] - r["sent"] for r in results if r.get(key)]
            if values:
                phases[name] = round(statistics.median(values), 2)
        summary["median_phase_offsets_s"] = phases
        print(f"median offsets from the POST: {phases}", flush=True)
    if not args.keep:
        import shutil

        shutil.rmtree(home, ignore_errors=True)
    return summary


if __name__ == "__main__":
    main()
