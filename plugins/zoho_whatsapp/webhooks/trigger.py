"""WebhookInboxTrigger: the triggerer watches the webhook inbox and fires one event per stored webhook.

Used as the ``AssetWatcher`` of the ``zoho_books_invoice_alerts`` DAG's asset: each
:class:`~airflow.triggers.base.TriggerEvent` becomes an asset event whose ``extra["payload"]``
names the inbox row (``event_id``, ``event_key``, ``kind``), and the scheduler starts a DAG run
for it. Only the ledger connection is needed here; no Zoho or WhatsApp credential.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

log = logging.getLogger(__name__)


class WebhookInboxTrigger(BaseEventTrigger):
    """
    Poll the webhook inbox in the ledger database and yield a TriggerEvent per new event.

    .. code-block:: python

        Asset(
            "zoho_books_webhook_events",
            watchers=[AssetWatcher(name="zoho_books_webhook_inbox", trigger=WebhookInboxTrigger())],
        )

    :param ledger_conn_id: the send ledger's connection (the inbox lives in that database).
    :param poll_interval: seconds between two looks at the inbox; the endpoint answers at once,
        so this is most of the delay before a DAG run starts.
    :param redeliver_after: an event still unhandled this many seconds after its announcement is
        announced again (its run failed, or the triggerer died before Airflow stored the event).
    :param max_announcements: announcements per event in all; after that it waits for a person
        (trigger the DAG by hand: a run without asset events handles every pending event).
    """

    def __init__(
        self,
        ledger_conn_id: str = "reminder_ledger_default",
        poll_interval: float = 1.0,
        redeliver_after: float = 600.0,
        max_announcements: int = 3,
    ) -> None:
        super().__init__()
        self.ledger_conn_id = ledger_conn_id
        self.poll_interval = float(poll_interval)
        self.redeliver_after = float(redeliver_after)
        self.max_announcements = int(max_announcements)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "ledger_conn_id": self.ledger_conn_id,
                "poll_interval": self.poll_interval,
                "redeliver_after": self.redeliver_after,
                "max_announcements": self.max_announcements,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        inbox = None
        failures = 0
        try:
            while True:
                try:
                    if inbox is None:
                        # Blocking database work runs in a thread: the triggerer's event loop serves
                        # every other trigger too.
                        inbox = await asyncio.to_thread(self._open)
                    announced = await asyncio.to_thread(
                        inbox.announce,
                        redeliver_after=self.redeliver_after,
                        max_announcements=self.max_announcements,
                    )
                    failures = 0
                except Exception as exc:  # ledger briefly unreachable: keep watching, louder each time
                    failures += 1
                    log.log(logging.ERROR if failures >= 3 else logging.WARNING,
                            "cannot read the webhook inbox (%d in a row): %s", failures, exc)
                    if inbox is not None:
                        await asyncio.to_thread(inbox.dispose)
                        inbox = None
                    await asyncio.sleep(min(60.0, self.poll_interval * 2**failures))
                    continue
                for event in announced:
                    log.info("webhook event #%s %s: starting a DAG run (announcement %d)",
                             event["event_id"], event["event_key"], event["announcement"])
                    yield TriggerEvent(event)
                await asyncio.sleep(self.poll_interval)
        finally:
            if inbox is not None:
                inbox.dispose()

    def _open(self) -> Any:
        from zoho_whatsapp.webhooks.inbox import WebhookInbox

        return WebhookInbox.from_connection(self.ledger_conn_id)
