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
    :param send_window: when messages may go out: ``"policy"`` (default: the reminder policy's
        ``send_window``, with the run's params such as ``send_window_start`` applied), a mapping
        shaped like that ``send_window``, or ``None`` for any hour. Outside it the task waits in
        the triggerer for the next opening (:class:`DateTimeTrigger`), then sends; a batch still
        sending when the window closes stops claiming there, waits, and sends the rest then.
    """

    template_fields: Sequence[str] = ("messages_per_second", "min_days_between_reminders", "dry_run", "send_window")
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
        send_window: str | dict[str, Any] | None = "policy",  # window_wait.FROM_POLICY
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
        self.send_window = send_window

    @property
    def batch_label(self) -> str:
        """``batch 2/4 · 80 messages``: the mapped instance's name in the UI (``map_index_template``)."""
        from zoho_whatsapp.whatsapp.batch import BatchRef

        try:
            return BatchRef.from_dict(self.batch).label
        except (KeyError, TypeError, ValueError):  # not resolved yet, or not a batch: Airflow shows the index
            return ""

    def execute(self, context: Any) -> dict[str, int]:
        return self._send_within_window(context)

    def send_when_open(self, context: Any, event: Any = None) -> dict[str, int]:
        """Resumed by the triggerer at the window's opening: check the clock again, then send."""
        return self._send_within_window(context)

    def _send_within_window(self, context: Any) -> dict[str, int]:
        # Imported here so that parsing a DAG file that uses this operator stays cheap.
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        from zoho_whatsapp.ledger import RunInfo, SendLedger
        from zoho_whatsapp.pipeline import BatchRef, send_batch
        from zoho_whatsapp.rules.window import is_within_window, next_send_time, window_closes_at
        from zoho_whatsapp.whatsapp import window_wait

        dry_run = _as_bool(self.dry_run)
        window = None if dry_run else window_wait.resolve_window(self.send_window, context.get("params"))
        started = window_wait.now()
        is_open = window is None or is_within_window(started, window)
        # Outside the window the batch still runs, with a stop already passed: rows an earlier try
        # left mid-send are recorded, nothing is claimed, and a batch with nothing left ends here.
        stop_at = None if window is None else window_closes_at(started, window) if is_open else started
        ledger = SendLedger.from_connection(self.ledger_conn_id)
        try:
            result = send_batch(
                ledger,
                BatchRef.from_dict(self.batch),
                RunInfo.of(context["ti"]),
                whatsapp_conn_id=self.whatsapp_conn_id,
                messages_per_second=float(self.messages_per_second),
                max_workers=self.max_workers,
                min_days_between=int(self.min_days_between_reminders),
                dry_run=dry_run,
                stop_at=stop_at,
            )
        finally:
            ledger.dispose()
        held = result.counts.get(window_wait.HELD_FOR_WINDOW, 0)
        if window is None or not held:
            return result.as_dict()
        opens_at = next_send_time(window_wait.now(), window)
        if is_open:
            why = (f"the send window {window_wait.describe(window)} closed at {stop_at:%H:%M} with {held} message(s) "
                   f"of this batch unsent, still planned (sent before the close: {result.counts.get('sent', 0)})")
        else:
            why = f"outside the send window {window_wait.describe(window)} ({window_wait.closed_because(started, window)})"
        self.log.warning("%s: waiting in the triggerer until %s IST", why, f"{opens_at:%Y-%m-%d %H:%M}")
        self.defer(trigger=DateTimeTrigger(moment=opens_at), method_name="send_when_open")


def _as_bool(value: bool | str) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
