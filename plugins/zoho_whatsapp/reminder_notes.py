"""Opt-in notes in Zoho Books: after a reminder run, a note on each sent message's first invoice.

Off unless the reminder policy says ``zoho_notes: {enabled: true}``: every note is a write against
the organization's daily API quota. A note is written once per message (``noted_at`` on its rows),
so re-running the account task, or the date, writes none twice; a task killed between Zoho's answer
and that mark may leave one note written twice — a note, never a customer message.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from zoho_whatsapp.ledger import SendKey, SendLedger
from zoho_whatsapp.rules.policy import ZohoNotes, stage_key
from zoho_whatsapp.zoho import ZohoBooksHook
from zoho_whatsapp.zoho.comments import ZohoComments

log = logging.getLogger(__name__)


def note_sent_reminders(ledger: SendLedger, key: SendKey, notes: ZohoNotes, *, zoho_conn_id: str | None = None,
                        calls_used_before: int = 0) -> dict[str, Any] | None:
    """Write the note of every sent message of ``key`` that has none yet; ``None`` when notes are off.

    Returns what the run report shows: notes written, those not written by reason, why writing stopped.
    """
    if not notes.enabled:
        return None
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in ledger.rows(key=key, status=("sent",)):
        groups[row["message_id"] or row["id"]].append(row)
    todo = {lead: rows for lead, rows in sorted(groups.items()) if all(r["noted_at"] is None for r in rows)}
    if not todo:
        return {"written": 0, "not_written": {}, "stopped": None}
    # The run's organization, not the connection's: several organizations may share one connection.
    hook = ZohoBooksHook.for_organization(zoho_conn_id, key.organization_id)
    comments = ZohoComments(hook, reserve_calls=notes.reserve_calls, daily_quota=notes.daily_quota,
                            calls_used_before=calls_used_before)
    for lead_id, rows in todo.items():
        rows.sort(key=lambda r: r["id"] != lead_id)  # the lead row first: its invoice carries the note
        stages = [r["stage"] for r in rows if r["stage"] is not None]
        written = comments.note_reminder(
            str(rows[0]["customer_id"] or ""), rows[0]["phone_masked"] or "", [r["invoice_number"] for r in rows],
            stage_key(max(stages)) if stages else "-", invoice_ids=[r["invoice_id"] for r in rows],
        )
        if written:
            ledger.mark_noted([r["id"] for r in rows])
        if comments.stopped:
            break
    summary = comments.summary()
    log.info("notes in Zoho Books for %s: %d written, not written %s%s", key.occasion, summary["written"],
             summary["not_written"] or "none", f"; stopped: {summary['stopped']}" if summary["stopped"] else "")
    return summary
