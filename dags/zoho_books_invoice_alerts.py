"""Instant WhatsApp alerts when a Zoho Books invoice is created or a customer payment is received.

A Zoho Books workflow rule POSTs a notification to this deployment's webhook endpoint
(`/zoho-books/webhooks/invoices`, `/zoho-books/webhooks/payments`, served by the `zoho_whatsapp`
plugin on the API server), which checks the shared secret and stores the event once in the inbox. The
triggerer turns each stored event into an event of the asset `zoho_books_webhook_events`, which starts
a run of this DAG within seconds; `send_alert` has one instance per event, named after it.

> Dear Priya Textiles, Invoice INV-000142 for ₹48,500.00 has been issued and is due on 7 July 2026. Thank you for your business.

**The webhook only says that something happened.** The invoice, its customer, the amounts, the balance
and the mobile are read from Zoho Books right before the send; an event naming nothing in the connected
organization is skipped (`not_in_zoho`). **Exactly once**: one message per invoice created and per
payment received, however often Zoho delivers the event; clearing or retrying `send_alert` never sends
twice. Triggered by hand, the run handles the `event_ids` param, or else every pending event.

**Unpaused when it first appears**, even where new DAGs start paused (docker compose sets
`DAGS_ARE_PAUSED_AT_CREATION`): events only arrive once someone has given Zoho this deployment's URL
and secret, and a paused DAG would let them wait unseen. Pause it to hold alerts: events then wait in
the inbox (the endpoint's 202 answer carries a `note` saying so) and are sent when it is unpaused.

Connections: `zoho_books_default`, `whatsapp_default`, `reminder_ledger_default` (inbox and ledger),
`zoho_books_webhook` (type Zoho Books webhook: the shared secret; read by the API server only).

In the repository: `docs/webhooks.md` (Zoho set-up, endpoint answers), `docs/security.md`,
`docs/exactly-once.md`, `docs/troubleshooting.md`.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, AssetWatcher, Param, dag, task

from zoho_whatsapp.webhooks.trigger import WebhookInboxTrigger

WEBHOOK_EVENTS = Asset(
    name="zoho_books_webhook_events",
    uri="zoho-books-webhooks://reminder_ledger_default/webhook_events",
    watchers=[AssetWatcher(name="zoho_books_webhook_inbox", trigger=WebhookInboxTrigger())],
)
# The Celery queue of the alert tasks, from the deployment (docker-compose.yaml sets "alerts", served by a
# worker of its own); unset, Airflow's default queue, which every worker serves.
ALERTS_QUEUE = {"queue": os.environ["ZOHO_WHATSAPP_ALERTS_QUEUE"]} if os.environ.get("ZOHO_WHATSAPP_ALERTS_QUEUE") else {}


@dag(
    dag_id="zoho_books_invoice_alerts",
    schedule=[WEBHOOK_EVENTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Kolkata"),
    catchup=False,
    is_paused_upon_creation=False,  # see the doc above: a webhook is the opt-in
    max_active_runs=8,
    tags=["zoho-books", "whatsapp", "receivables", "webhooks"],
    doc_md=__doc__,
    default_args={
        # Ahead of queued reminder batches when the executor is busy: an alert is meant to be instant.
        "priority_weight": 100,
        "weight_rule": "absolute",
        "retries": 3,
        "retry_delay": pendulum.duration(seconds=15),
        "retry_exponential_backoff": True,
        "max_retry_delay": pendulum.duration(minutes=5),
        **ALERTS_QUEUE,
    },
    params={
        "event_ids": Param(
            [], type="array", items={"type": "integer"},
            description="Inbox event ids to handle in a run started by hand (empty: every pending event).",
        ),
        "messages_per_second": Param(
            20, type="number", exclusiveMinimum=0, maximum=1000, description="Send rate cap for one event's messages."
        ),
        "max_alerts_per_recipient_per_hour": Param(
            5, type="integer", minimum=1, maximum=100,
            description="Most alerts one number receives in a rolling hour; more are skipped (recipient_hourly_cap).",
        ),
        "not_on_whatsapp_days": Param(
            30, type="number", minimum=0,
            description="Skip a number WhatsApp reported as not on WhatsApp for this many days (0: try it every time).",
        ),
    },
)
def zoho_books_invoice_alerts() -> None:
    @task
    def take_events(params=None, triggering_asset_events=None, ti=None) -> list[list[dict]]:  # noqa: ANN001
        """The inbox events this run handles, named in the log and in XCom, in up to 4 groups."""
        from zoho_whatsapp.alerts import MAX_PARALLEL_GROUPS, event_ids_from_asset_events, group_events, take_events
        from zoho_whatsapp.ledger import RunInfo

        return group_events(take_events(
            announced=event_ids_from_asset_events(triggering_asset_events),
            requested=list(params.get("event_ids") or []),
            run=RunInfo.of(ti),
        ), MAX_PARALLEL_GROUPS)

    @task(map_index_template="{{ alert_event }}", max_active_tis_per_dagrun=4)
    def send_alert(event: list[dict], params=None, ti=None) -> list[dict]:  # noqa: ANN001
        """A group of events (one, unless a backlog built up), each: read its records from Zoho, send through
        the ledger, mark it handled."""
        from airflow.sdk import get_current_context

        from zoho_whatsapp.alerts import group_name, handle_events
        from zoho_whatsapp.ledger import RunInfo

        get_current_context()["alert_event"] = group_name(event)
        return handle_events(event, run=RunInfo.of(ti), messages_per_second=float(params["messages_per_second"]),
                             max_per_recipient_hour=int(params["max_alerts_per_recipient_per_hour"]),
                             not_on_whatsapp_days=float(params["not_on_whatsapp_days"]))

    send_alert.expand(event=take_events())


zoho_books_invoice_alerts()
