"""`make demo`: the reminder DAG end to end against the local sandbox, then what was sent and what came back.

Starts the sandbox on loopback, and the plugin's WhatsApp webhook endpoint (``/whatsapp/webhook``,
on a free loopback port) that the sandbox, playing Meta, POSTs its signed delivery receipts and the
customers' replies to; points the three Airflow connections at the sandbox, runs
``zoho_books_payment_reminders`` once with ``dag.test()`` (its Airflow log goes to
.airflow-demo/dag-run.log), waits for the last receipts, stops both and prints the outcome as a
person wants it: sent / delivered / read / failed, and the replies (numbers masked).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import local_airflow

REPO = local_airflow.REPO
HOME = REPO / ".airflow-demo"
DAG_ID = "zoho_books_payment_reminders"


def run_dag_once(dag_id: str, logical_date: str, conf: str) -> None:
    """Child-process mode: one ``dag.test()`` run (Airflow must be configured by the environment)."""
    import pendulum

    try:
        dag = local_airflow.load_dag(dag_id)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    run = dag.test(logical_date=pendulum.parse(logical_date), run_conf=json.loads(conf))
    print(f"DAG RUN STATE: {run.state}")
    raise SystemExit(0 if str(run.state) == "success" else 1)


def main() -> int:
    # This process serves the webhook endpoint, which reads its connection through Airflow.
    local_airflow.configure_this_process(HOME, logging_level="WARNING")
    from sandbox import Sandbox

    ledger_path = HOME / "reminder_ledger.db"
    for leftover in HOME.glob("reminder_ledger.db*"):  # each demo starts from an empty ledger (and its WAL)
        leftover.unlink()
    started = time.monotonic()
    # The collections scenario adds customers with 1, 2, 11 and 40 open invoices, two currencies, promises to
    # pay, reminders switched off, invoices due in 1-3 days and balances below the minimum.
    sb = Sandbox(host="127.0.0.1", port=0, seed=42, scenario="collections").start()
    print(f"sandbox (Zoho OAuth + Zoho Books + WhatsApp Cloud API) listening on {sb.url}")
    connections = {**sb.connections(), **local_airflow.sqlite_ledger(ledger_path)}
    connections["whatsapp_default"]["extra"].update(sb.webhook_extras())  # checks the sandbox's signatures
    os.environ.update(local_airflow.connection_env(connections))
    env = local_airflow.environment(HOME, extra=local_airflow.connection_env(connections))
    log_path = HOME / "dag-run.log"
    from zoho_whatsapp.webhooks.whatsapp_app import create_app

    webhooks = create_app()
    try:
        with log_path.open("w") as log, local_airflow.serve_on_loopback(webhooks) as base:
            sb.set_faults(callback_url=f"{base}/webhook")
            print(f"WhatsApp webhook endpoint (receipts, replies) listening on {base}/webhook")
            local_airflow.migrate_db(env, log=log)
            import pendulum

            when = pendulum.now("Asia/Kolkata").replace(hour=9, minute=0, second=0, microsecond=0)
            print(f"running {DAG_ID} for {when.to_date_string()} 09:00 IST (Airflow log: {log_path.relative_to(REPO)})")
            child = subprocess.run(
                # dag.test() runs the mapped batches one by one, so the run rate is raised to keep the demo short.
                [sys.executable, __file__, "--run-dag", DAG_ID, when.isoformat(), json.dumps({"messages_per_second": 60})],
                env=env, stdout=log, stderr=log,
            )
            if not sb.callbacks.wait_idle(timeout=30):
                print("some receipts had not arrived after 30 s: the counts below are what had")
        report(sb, ledger_path, time.monotonic() - started)
    finally:
        sb.stop()
        webhooks.state.resources.dispose()
    if child.returncode != 0:
        print(f"\nthe DAG run failed: see {log_path}")
        return 1
    return 0


def report(sb: object, ledger_path: Path, seconds: float) -> None:
    import sqlalchemy as sa

    from zoho_whatsapp.ledger.delivery import delivery_summary, recent_replies
    from zoho_whatsapp.rules.phone import mask_phone

    engine = sa.create_engine(f"sqlite:///{ledger_path}")
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM messages ORDER BY id"))]
        receipts = delivery_summary(conn, kind="payment_reminder")
        replies = recent_replies(conn)
    engine.dispose()
    status = Counter(r["status"] for r in rows)
    # One message covers a customer's invoices: the lead row holds it, the others point to it (message_id).
    leads = [r for r in rows if r["status"] == "sent" and r["message_id"] in (None, r["id"])]
    per_customer = Counter(Counter(r["customer_id"] for r in leads).values())
    by_stage = Counter(r["stage"] for r in rows if r["status"] == "sent" and r["stage"] is not None)
    skipped = Counter(r["reason"] for r in rows if r["status"] == "skipped")
    failed = Counter(str(r["error_code"] or r["reason"]) for r in rows if r["status"] == "failed")
    received = sb.messages()
    zoho_calls = len(sb.requests(service="zoho_books"))
    token_calls = len(sb.requests(service="zoho_oauth"))
    print()
    print("=" * 72)
    print(f"Invoices owed in Zoho Books:      {len(rows)}   (overdue, and due within the pre-due stages)")
    print(f"Invoices reminded:                {status.get('sent', 0)}")
    print(f"WhatsApp messages sent:           {len(leads)}   (the sandbox received {len(received)}; "
          f"{len(leads) / max(1, status.get('sent', 0)):.2f} per reminded invoice)")
    print("Invoices reminded, by stage (days from the due date):")
    for stage, n in sorted(by_stage.items()):
        print(f"    {stage:<+28d}{n}")
    print("Customers by messages received today: "
          + ", ".join(f"{n} message(s): {c}" for n, c in sorted(per_customer.items())))
    print(f"Skipped:                          {status.get('skipped', 0)}")
    for reason, n in skipped.most_common():
        print(f"    {reason:<28}{n}")
    print(f"Failed at WhatsApp:               {status.get('failed', 0)}" + (f"   {dict(failed)}" if failed else ""))
    print(f"Outcome unknown:                  {status.get('unknown', 0)}")
    received_by = receipts["by_delivery"]
    print("Then, by WhatsApp's receipts:")
    print(f"    delivered                   {received_by.get('delivered', 0)}")
    print(f"    read                        {received_by.get('read', 0)}")
    print(f"    failed                      {received_by.get('failed', 0)}"
          + (f"   {receipts['failed_by_class']}" if receipts["failed_by_class"] else ""))
    print(f"    no receipt yet              {received_by.get('sent', 0)}")
    print(f"Zoho Books API calls used:        {zoho_calls}   (+{token_calls} token request(s))")
    print(f"Wall time:                        {seconds:.1f}s")
    print("=" * 72)
    print("\nTwo of the messages, as the customers read them (one for a single invoice, one for several):\n")
    several = max(received, key=lambda m: int(m["parameters"].get("invoice_count") or 1), default=None)
    single = next((m for m in received if "invoice_count" not in m["parameters"]), None)
    for message in [m for m in (single, several) if m is not None]:
        print(f"  to {mask_phone('+' + message['to'].lstrip('+'))}:")
        print(f"    {message['text']}\n")
    examples = [r for r in rows if r["status"] == "skipped" and r["reason"] not in ("cadence",)][:3]
    if examples:
        print("Some that were skipped, and why:")
        for r in examples:
            print(f"  {r['invoice_number']} ({r['customer_name']}): {r['reason']} - {r['error_message'] or ''}")
    print(f"\nReplies received on WhatsApp: {len(replies)}")
    for r in reversed(replies):
        action = {"opt_out": "   -> opted out: no more messages until they reply START",
                  "opt_in": "   -> opted back in"}.get(r["consent_action"] or "", "")
        print(f"  {r['phone_masked']} ({r['customer_name'] or 'unknown customer'}): {r['text']!r}{action}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--run-dag":
        run_dag_once(*sys.argv[2:5])
    raise SystemExit(main())
