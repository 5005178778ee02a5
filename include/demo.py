"""`make demo`: the reminder DAG end to end against the local sandbox, then what was sent.

Starts the sandbox on loopback, points the three Airflow connections at it, runs
``zoho_books_payment_reminders`` once with ``dag.test()`` (its Airflow log goes to
.airflow-demo/dag-run.log), stops the sandbox and prints the outcome as a person wants it.
"""

from __future__ import annotations

import json
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
    local_airflow.add_source_paths()
    from sandbox import Sandbox

    HOME.mkdir(exist_ok=True)
    ledger_path = HOME / "reminder_ledger.db"
    ledger_path.unlink(missing_ok=True)  # each demo starts from an empty ledger
    started = time.monotonic()
    sb = Sandbox(host="127.0.0.1", port=0, seed=42).start()
    print(f"sandbox (Zoho OAuth + Zoho Books + WhatsApp Cloud API) listening on {sb.url}")
    connections = {**sb.connections(), **local_airflow.sqlite_ledger(ledger_path)}
    env = local_airflow.environment(HOME, extra=local_airflow.connection_env(connections))
    log_path = HOME / "dag-run.log"
    try:
        with log_path.open("w") as log:
            local_airflow.migrate_db(env, log=log)
            import pendulum

            when = pendulum.now("Asia/Kolkata").replace(hour=9, minute=0, second=0, microsecond=0)
            print(f"running {DAG_ID} for {when.to_date_string()} 09:00 IST (Airflow log: {log_path.relative_to(REPO)})")
            child = subprocess.run(
                # dag.test() runs the mapped batches one by one, so the run rate is raised to keep the demo short.
                [sys.executable, __file__, "--run-dag", DAG_ID, when.isoformat(), json.dumps({"messages_per_second": 60})],
                env=env, stdout=log, stderr=log,
            )
        report(sb, ledger_path, time.monotonic() - started)
    finally:
        sb.stop()
    if child.returncode != 0:
        print(f"\nthe DAG run failed: see {log_path}")
        return 1
    return 0


def report(sb: object, ledger_path: Path, seconds: float) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{ledger_path}")
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM messages ORDER BY id"))]
    engine.dispose()
    status = Counter(r["status"] for r in rows)
    skipped = Counter(r["reason"] for r in rows if r["status"] == "skipped")
    failed = Counter(str(r["error_code"] or r["reason"]) for r in rows if r["status"] == "failed")
    received = sb.messages()
    zoho_calls = len(sb.requests(service="zoho_books"))
    token_calls = len(sb.requests(service="zoho_oauth"))
    print()
    print("=" * 72)
    print(f"Overdue invoices in Zoho Books:   {len(rows)}")
    print(f"WhatsApp reminders sent:          {status.get('sent', 0)}   (the sandbox received {len(received)})")
    print(f"Skipped:                          {status.get('skipped', 0)}")
    for reason, n in skipped.most_common():
        print(f"    {reason:<28}{n}")
    print(f"Failed at WhatsApp:               {status.get('failed', 0)}" + (f"   {dict(failed)}" if failed else ""))
    print(f"Outcome unknown:                  {status.get('unknown', 0)}")
    print(f"Zoho Books API calls used:        {zoho_calls}   (+{token_calls} token request(s))")
    print(f"Wall time:                        {seconds:.1f}s")
    print("=" * 72)
    print("\nThree of the messages, as the customers read them:\n")
    for message in received[:3]:
        print(f"  to {message['to']}:")
        print(f"    {message['text']}\n")
    examples = [r for r in rows if r["status"] == "skipped" and r["reason"] not in ("cadence",)][:3]
    if examples:
        print("Some that were skipped, and why:")
        for r in examples:
            print(f"  {r['invoice_number']} ({r['customer_name']}): {r['reason']} - {r['error_message'] or ''}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--run-dag":
        run_dag_once(*sys.argv[2:5])
    raise SystemExit(main())
