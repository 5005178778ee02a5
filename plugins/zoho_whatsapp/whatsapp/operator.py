"""WhatsAppOperator: send one batch of planned messages from the send ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator


class WhatsAppOperator(BaseOperator):
    """
    Send the planned messages of one ledger batch through the WhatsApp Cloud API.

    Rows come from the send ledger, not XCom: ``batch`` only says where they are. Each row is
    claimed in the ledger before its request and settled right after, so clearing, retrying
    or running this task twice never sends a message twice. Map it over a planning task's
    batch list:

    .. code-block:: python

        WhatsAppOperator.partial(task_id="send_batches", map_index_template="{{ task.batch_label }}").expand(
            batch=plan_reminders()
        )

    :param batch: a :class:`BatchRef` as a dict (organization_id, kind, occasion, batch,
        parallel_share, messages, batches); ``map_index_template="{{ task.batch_label }}"`` names
        the mapped instance after it.
    :param messages_per_second: the run's total send rate; each of ``parallel_share`` batches
        running at once takes its share.
    :param max_workers: concurrent requests within the batch.
    :param min_days_between_reminders: skip an invoice reminded within this many days.
    :param dry_run: render and validate every message, send none.
    """

    template_fields: Sequence[str] = ("messages_per_second", "min_days_between_reminders", "dry_run")
    ui_color = "#25D366"

    def __init__(
        self,
        *,
        batch: dict[str, Any],
        whatsapp_conn_id: str = "whatsapp_default",
        ledger_conn_id: str = "reminder_ledger_default",
        messages_per_second: float | str = 20.0,
        max_workers: int = 8,
        min_days_between_reminders: int | str = 0,
        dry_run: bool | str = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.batch = batch
        self.whatsapp_conn_id = whatsapp_conn_id
        self.ledger_conn_id = ledger_conn_id
        self.messages_per_second = messages_per_second
        self.max_workers = max_workers
        self.min_days_between_reminders = min_days_between_reminders
        self.dry_run = dry_run

    @property
    def batch_label(self) -> str:
        """``batch 2/4 · 80 messages``: the mapped instance's name in the UI (``map_index_template``)."""
        from zoho_whatsapp.whatsapp.batch import BatchRef

        try:
            return BatchRef.from_dict(self.batch).label
        except (KeyError, TypeError, ValueError):  # not resolved yet, or not a batch: Airflow shows the index
            return ""

    def execute(self, context: Any) -> dict[str, int]:
        # Imported here so that parsing a DAG file that uses this operator stays cheap.
        from zoho_whatsapp.ledger import RunInfo, SendLedger
        from zoho_whatsapp.pipeline import BatchRef, send_batch

        ledger = SendLedger.from_connection(self.ledger_conn_id)
        try:
            return send_batch(
                ledger,
                BatchRef.from_dict(self.batch),
                RunInfo.of(context["ti"]),
                whatsapp_conn_id=self.whatsapp_conn_id,
                messages_per_second=float(self.messages_per_second),
                max_workers=self.max_workers,
                min_days_between=int(self.min_days_between_reminders),
                dry_run=_as_bool(self.dry_run),
            ).as_dict()
        finally:
            ledger.dispose()


def _as_bool(value: bool | str) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
