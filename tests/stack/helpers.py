"""What the stack tests and bench/stack.py read: the sandbox's messages and the ledger's rows, and waits."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

REMINDER_DAG = "zoho_books_payment_reminders"
ALERT_DAG = "zoho_books_invoice_alerts"
OPEN = ("fetched", "planned", "sending")


def message_key(message: dict[str, Any]) -> tuple[str, str]:
    """(recipient, invoice) of a message the sandbox accepted, from the ledger key every send echoes."""
    opaque = str(message.get("biz_opaque_callback_data") or "")
    parts = opaque.split(":", 3)
    invoice = parts[2] if len(parts) == 4 else opaque
    return message["wa_id"], invoice


def duplicates(messages: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """Recipient+invoice pairs that received more than one message."""
    return {key: n for key, n in Counter(message_key(m) for m in messages).items() if n > 1}


def ledger_rows(stack: Any, where: str = "", **params: Any) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    engine = sa.create_engine(stack.ledger_url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("messages"):
                return []
            return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM messages {where}"), params)]
    finally:
        engine.dispose()


def wait_idle(stack: Any, timeout: float = 300) -> None:
    """Until no run of either DAG is queued or running."""
    from local_stack import wait_for

    def idle() -> bool:
        return not [r for dag in (REMINDER_DAG, ALERT_DAG) for r in stack.runs(dag) if r["state"] in ("queued", "running")]

    wait_for("every run to finish", idle, timeout, every=1)


def wait_for_first_run(stack: Any, timeout: float = 120) -> dict[str, Any]:
    """The run the scheduler starts when the reminder DAG is unpaused (its latest 09:00)."""
    from local_stack import wait_for

    return wait_for("the scheduled 09:00 run", lambda: next(iter(stack.runs(REMINDER_DAG)), None), timeout, every=1)


def trigger_reminders(stack: Any, **conf: Any) -> str:
    """A reminder run now, through the REST API, as the UI's Trigger button does."""
    return stack.trigger(REMINDER_DAG, conf=conf, logical_date=datetime.now(UTC).isoformat())


def wait_for_messages(stack: Any, count: int, timeout: float = 180) -> int:
    """Until the sandbox has accepted at least ``count`` messages; returns how many it has."""
    from local_stack import wait_for

    return wait_for(f"{count} messages at the sandbox", lambda: (n := len(stack.sandbox.messages())) >= count and n,
                    timeout, every=0.2)


def running_sends(stack: Any, run_id: str) -> list[dict[str, Any]]:
    return [ti for ti in stack.task_instances(REMINDER_DAG, run_id)
            if ti["task_id"] == "send_reminders" and ti["state"] == "running" and ti.get("pid")]


def by_status(rows: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["status"] for r in rows)


def leads(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that are messages: a customer's statement is one message, its lead row; the rows of its
    other invoices point to the lead (``message_id``) and share its status."""
    return [r for r in rows if r.get("message_id") in (None, r["id"])]


def ledger_key(message: dict[str, Any]) -> tuple[str, str]:
    """(invoice, occasion): the ledger row a message the sandbox accepted belongs to."""
    parts = str(message.get("biz_opaque_callback_data") or "").split(":", 3)
    return (parts[2], parts[3]) if len(parts) == 4 else ("", "")


def settle_check(stack: Any, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The ledger against what reached the sandbox: each sent message (lead row) arrived once, nothing arrived
    unrecorded, every invoice of a statement has its message's status. ``by_status`` counts messages."""
    rows = ledger_rows(stack)
    messages_ = leads(rows)
    arrived = Counter(ledger_key(m) for m in messages)
    status = {(r["invoice_id"], r["occasion"]): r["status"] for r in messages_}
    lead_status = {r["id"]: r["status"] for r in messages_}
    return {
        "rows": rows,
        "by_status": by_status(messages_),
        "sent_not_arrived_once": [key for key, s in status.items() if s == "sent" and arrived[key] != 1],
        "arrived_not_sent_or_unknown": [key for key in arrived if status.get(key) not in ("sent", "unknown")],
        "open": [r["id"] for r in rows if r["status"] in OPEN],
        "apart_from_their_message": [r["id"] for r in rows if r.get("message_id") not in (None, r["id"])
                                     and r["status"] != lead_status.get(r["message_id"])],
    }


def wait_for_backfill(stack: Any, expected: int, timeout: float = 600) -> list[dict[str, Any]]:
    """The backfill's runs, once ``expected`` of them exist and none is queued or running."""
    from local_stack import wait_for

    def finished() -> list[dict[str, Any]] | None:
        runs = [r for r in stack.runs(REMINDER_DAG) if r["run_type"] == "backfill"]
        return runs if len(runs) >= expected and all(r["state"] in ("success", "failed") for r in runs) else None

    return wait_for(f"{expected} backfill runs to finish", finished, timeout, every=2)
