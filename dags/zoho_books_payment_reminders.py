"""Every morning at 09:00 India time, remind customers of their overdue Zoho Books invoices on WhatsApp.

At 09:00 Asia/Kolkata this DAG lists every **overdue invoice** in Zoho Books, reads each customer's
mobile from Zoho, and sends the approved WhatsApp utility template (`payment_reminder` by default):

> Dear Rajesh Enterprises, Invoice INV-000138 for ₹22,000.00 was due on 20 June 2026. Kindly arrange payment.

**Safe to clear, retry and backfill.** The send ledger (connection `reminder_ledger_default`) never lets
a message go out twice, and an invoice is not reminded again within `min_days_between_reminders` days.
A message whose outcome is unknown (a timeout after the request left) is recorded, not resent: check it
(`make audit ARGS="--status unknown"`), then trigger the date with `{"resend_unknown": true}`. To see
what a run would send, trigger it with `{"dry_run": true}`; `account_for_every_invoice` returns the summary.

**Not live until you say so.** Unpausing this DAG starts the latest 09:00 run at once (catchup is off),
and the trigger form's "unpause on trigger" box is ticked by default. So until the Airflow Variable
`zoho_whatsapp_go_live` is `true`, every *scheduled* run is a dry run: `check_go_live` and the summary
say so. Runs you start (Trigger, backfill) do what their `dry_run` param says. After checking a dry
run's summary: Admin → Variables → `zoho_whatsapp_go_live` = `true` (or `airflow variables set
zoho_whatsapp_go_live true`); clear today's run to send it now, or wait for tomorrow's 09:00.

Connections: `zoho_books_default`, `whatsapp_default`, `reminder_ledger_default`. One such DAG per Zoho
Books organization in `include/config/organizations.yaml` (its connection is named below); their send
tasks share the pool `whatsapp_sends`, and so the WhatsApp number's rate (`docs/configuration.md`).

In the repository: `README.md` (tasks and params), `docs/operations.md` (backfill, retry, audit),
`docs/exactly-once.md`, `docs/configuration.md`, `docs/troubleshooting.md`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, task

from zoho_whatsapp.organizations import (
    WHATSAPP_SENDS_POOL,
    WHATSAPP_SENDS_SLOTS,
    ZohoOrganization,
    dag_per_organization,
)
from zoho_whatsapp.whatsapp.operator import WhatsAppOperator

# Send tasks running at once across every run of every organization's DAG (backfills included: the
# pool WHATSAPP_SENDS_POOL has this many slots); each sends at messages_per_second / MAX_PARALLEL_BATCHES,
# so together they never exceed the WhatsApp number's cap.
MAX_PARALLEL_BATCHES = WHATSAPP_SENDS_SLOTS
MAX_WORKERS_PER_BATCH = 32  # requests in flight per task: its share of the rate x Meta's latency, with room
MAX_BATCHES = 1000  # stays under Airflow's default max_map_length of 1024


@dag_per_organization(
    dag_id="zoho_books_payment_reminders",
    schedule="0 9 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Kolkata"),
    catchup=False,
    max_active_runs=1,
    tags=["zoho-books", "whatsapp", "receivables"],
    doc_md=__doc__,
    render_template_as_native_obj=True,
    default_args={
        "retries": 2,
        "retry_delay": pendulum.duration(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": pendulum.duration(minutes=20),
    },
    params={
        "dry_run": Param(False, type="boolean", description="Render and validate every message; send none."),
        "batch_size": Param(
            100, type="integer", minimum=1, maximum=5000,
            description="Most messages per mapped send task (batches are cut into equal, whole waves of parallel tasks).",
        ),
        "messages_per_second": Param(
            20, type="number", exclusiveMinimum=0, maximum=1000,
            description="Total send rate, shared by all send tasks of all runs (Meta allows 80/s per number by default).",
        ),
        # The reminder policy (include/config/reminder_policy.yaml): empty keeps the file's value.
        "min_days_between_reminders": Param(
            None, type=["null", "integer"], minimum=0,
            description="Never message a customer again within this many IST days (policy file: 3).",
        ),
        "stages": Param(
            None, type=["null", "array"],
            description="Only these of the configured stages, e.g. [\"+7\", \"+30\"] (days from the due date).",
        ),
        "repeat_every_days": Param(
            None, type=["null", "integer"], minimum=0,
            description="After the last stage, remind again every N days while unpaid (0: never; policy file: 15).",
        ),
        "send_window_start": Param(None, type=["null", "string"], description="Messages go out from HH:MM IST (09:00)."),
        "send_window_end": Param(None, type=["null", "string"], description="... until HH:MM IST (20:00)."),
        "sundays_off": Param(None, type=["null", "boolean"], description="No messages on Sundays."),
        "holiday_country": Param(
            None, type=["null", "string"], description="No messages on this country's public holidays, e.g. IN."
        ),
        "holiday_subdivision": Param(None, type=["null", "string"], description="... and this state's, e.g. MH."),
        "extra_holidays": Param(None, type=["null", "array"], description="Closed days, e.g. [\"2026-11-09\"]."),
        "minimum_outstanding": Param(
            None, type=["null", "number", "object"],
            description="Skip invoices owing less (below_minimum): a number, or {\"default\": 1, \"INR\": 100}.",
        ),
        "reminders_custom_field": Param(
            None, type=["null", "string"],
            description="Invoice custom field that switches WhatsApp reminders off (\"\": none).",
        ),
        "portal_url": Param(None, type=["null", "string"], description="https:// link to the customer portal."),
        "live_balance_after_minutes": Param(
            None, type=["null", "integer"], minimum=0,
            description="A send this long after the fetch re-reads the customer's balance first (15).",
        ),
        "resend_unknown": Param(
            False, type="boolean",
            description="Resend messages recorded 'unknown' for this date (only after checking they did not arrive).",
        ),
        "not_on_whatsapp_days": Param(
            30, type="number", minimum=0,
            description="Skip a number WhatsApp reported as not on WhatsApp for this many days (0: try it every time).",
        ),
        "unknown_after_minutes": Param(
            60, type="number", exclusiveMinimum=0,
            description="A message still 'unknown' this long after its send, with no receipt from WhatsApp, "
            "needs a person to check it; the summary counts those apart.",
        ),
    },
)
def zoho_books_payment_reminders(books: ZohoOrganization) -> None:
    @task(multiple_outputs=False)
    def check_go_live(params=None, dag_run=None) -> dict:  # noqa: ANN001
        """Whether this run sends: scheduled runs are dry runs until the installation goes live."""
        import logging

        from airflow.sdk import Variable

        from zoho_whatsapp.rules.golive import GO_LIVE_VARIABLE, run_mode

        run_type = getattr(dag_run.run_type, "value", dag_run.run_type)
        mode = run_mode(requested_dry_run=bool(params["dry_run"]), run_type=str(run_type),
                        go_live=Variable.get(GO_LIVE_VARIABLE, default=None))
        logging.getLogger(__name__).log(logging.WARNING if mode.dry_run else logging.INFO, "%s", mode.why)
        return mode.as_dict()

    @task(multiple_outputs=False)
    def refresh_zoho_token() -> dict:
        """Make sure a valid token is cached for the run, and resolve the organization."""
        from zoho_whatsapp.reminder_run import organization

        return organization(books.zoho_conn_id, organization_id=books.organization_id)

    @task(multiple_outputs=False)
    def fetch_overdue_invoices(org: dict, logical_date=None, dag_run=None, ti=None, params=None) -> dict:  # noqa: ANN001
        """Every overdue invoice, and those a pre-due stage needs, with their customers' numbers, into the
        ledger for this date."""
        from zoho_whatsapp.reminder_run import fetch_into_ledger

        # A run triggered by hand from the UI or the REST API may have no logical date: it reminds for
        # the day it runs.
        when = logical_date or dag_run.run_after
        return fetch_into_ledger(org, logical_date=when, dag_id=ti.dag_id, run_id=dag_run.run_id,
                                 zoho_conn_id=books.zoho_conn_id, params=dict(params))

    @task
    def plan_reminders(fetched: dict, params=None) -> list[dict]:  # noqa: ANN001
        """Turn fetched invoices into planned messages or recorded skips; return batch references."""
        from zoho_whatsapp.reminder_run import plan_batches

        return plan_batches(fetched, params=dict(params), max_batches=MAX_BATCHES, max_parallel=MAX_PARALLEL_BATCHES)

    @task(trigger_rule="all_done", retries=0, multiple_outputs=False)
    def account_for_every_invoice(fetched: dict, mode: dict, params=None, dag_run=None) -> dict:  # noqa: ANN001
        """Sent, skipped, failed or unknown: every overdue invoice, or the run fails."""
        import logging

        from zoho_whatsapp.reminder_run import account_for_run

        report = account_for_run(fetched, run_id=dag_run.run_id, dry_run=bool(mode["dry_run"]),
                                 unknown_after_minutes=float(params["unknown_after_minutes"]), params=dict(params))
        if mode["dry_run"]:
            logging.getLogger(__name__).warning("%s", mode["why"])
        return {**report, "mode": mode["why"]}

    mode = check_go_live()
    org = refresh_zoho_token()
    mode >> org
    fetched = fetch_overdue_invoices(org)
    batches = plan_reminders(fetched)
    sent = WhatsAppOperator.partial(
        task_id="send_reminders",
        map_index_template="{{ task.batch_label }}",  # "batch 2/4 · 80 messages" in the grid, not "1"
        messages_per_second="{{ params.messages_per_second }}",
        min_days_between_reminders=0,  # each batch carries the policy's customer cadence (BatchRef)
        dry_run="{{ ti.xcom_pull(task_ids='check_go_live')['dry_run'] }}",  # decided once, at the run's start
        max_workers=MAX_WORKERS_PER_BATCH,
        max_active_tis_per_dag=MAX_PARALLEL_BATCHES,
        pool=WHATSAPP_SENDS_POOL,  # shared with the other organizations' DAGs: one WhatsApp number
        retries=3,
        retry_delay=pendulum.duration(seconds=30),
    ).expand(batch=batches)
    mode >> sent
    sent >> account_for_every_invoice(fetched, mode)


zoho_books_payment_reminders()
