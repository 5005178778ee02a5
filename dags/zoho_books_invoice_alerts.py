"""Instant WhatsApp alerts when a Zoho Books invoice is created or a customer payment is received."""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, AssetWatcher, Param, dag, task

from zoho_whatsapp.webhooks.trigger import WebhookInboxTrigger

DOC = """
### Zoho Books instant alerts on WhatsApp

A Zoho Books workflow rule POSTs each new invoice or customer payment to this deployment's
webhook endpoint (`/zoho-books/webhooks/invoices`, `/zoho-books/webhooks/payments`, served by the
`zoho_whatsapp` plugin on the API server). The endpoint checks the shared secret, validates the
body and stores the event, once, in the webhook inbox of the send ledger. The triggerer watches the
inbox (`WebhookInboxTrigger`) and each stored event becomes an event of the asset
`zoho_books_webhook_events`, which starts a run of this DAG within a second or two.

| task | what it does |
| --- | --- |
| `take_events` | the inbox events this run handles: those named by its asset events; when triggered by hand, the `event_ids` param or else every pending event |
| `send_alert` | one mapped instance per event, named after it: live Zoho lookups (missing mobile → the contact; payments → the invoice's **current** balance), plan, claim, send, settle; marks the event handled |

> Dear Priya Textiles, Invoice INV-000142 for ₹48,500.00 has been issued and is due on 7 July 2026. Thank you for your business.
>
> Dear Priya Textiles, we have received ₹20,000.00 against Invoice INV-000142. Balance due: ₹28,500.00. Thank you!

**Exactly once**: the inbox keeps one row per event however often Zoho delivers it, and the send
ledger keeps one message per (organization, invoice, kind, occasion) — the occasion is the invoice
id for `invoice_created` and the payment id for `payment_received` — claimed before it is sent.
Clearing or retrying a `send_alert` instance never sends twice; a message whose outcome is unknown
(timeout after the request left) is recorded, not resent.

Connections: `zoho_books_default`, `whatsapp_default`, `reminder_ledger_default` (inbox and
ledger), and `zoho_books_webhook` (password = the shared secret; used by the API server only).
"""

WEBHOOK_EVENTS = Asset(
    name="zoho_books_webhook_events",
    uri="zoho-books-webhooks://reminder_ledger_default/webhook_events",
    watchers=[AssetWatcher(name="zoho_books_webhook_inbox", trigger=WebhookInboxTrigger())],
)


@dag(
    dag_id="zoho_books_invoice_alerts",
    schedule=[WEBHOOK_EVENTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Kolkata"),
    catchup=False,
    max_active_runs=8,
    tags=["zoho-books", "whatsapp", "receivables", "webhooks"],
    doc_md=DOC,
    default_args={
        # Ahead of queued reminder batches when the executor is busy: an alert is meant to be instant.
        "priority_weight": 100,
        "weight_rule": "absolute",
        "retries": 3,
        "retry_delay": pendulum.duration(seconds=15),
        "retry_exponential_backoff": True,
        "max_retry_delay": pendulum.duration(minutes=5),
    },
    params={
        "event_ids": Param(
            [], type="array", items={"type": "integer"},
            description="Inbox event ids to handle in a run started by hand (empty: every pending event).",
        ),
        "messages_per_second": Param(
            20, type="number", exclusiveMinimum=0, maximum=1000, description="Send rate cap for one event's messages."
        ),
    },
)
def zoho_books_invoice_alerts() -> None:
    @task
    def take_events(params=None, triggering_asset_events=None) -> list[dict]:  # noqa: ANN001
        """The inbox events this run handles, named in the log and in XCom."""
        from zoho_whatsapp.alerts import event_ids_from_asset_events, take_events

        return take_events(
            announced=event_ids_from_asset_events(triggering_asset_events),
            requested=list(params.get("event_ids") or []),
        )

    @task(map_index_template="{{ alert_event }}", max_active_tis_per_dagrun=4)
    def send_alert(event: dict, params=None, ti=None) -> dict:  # noqa: ANN001
        """One event: live lookups, plan, send through the ledger, mark the event handled."""
        from airflow.sdk import get_current_context

        from zoho_whatsapp.alerts import handle_event
        from zoho_whatsapp.ledger import RunInfo

        get_current_context()["alert_event"] = f"#{event['event_id']} {event['event_key']}"
        run = RunInfo(dag_id=ti.dag_id, run_id=ti.run_id, map_index=ti.map_index, try_number=ti.try_number)
        return handle_event(event, run=run, messages_per_second=float(params["messages_per_second"]))

    send_alert.expand(event=take_events())


zoho_books_invoice_alerts()
