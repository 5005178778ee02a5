"""WebhookInbox: the durable, de-duplicated record of every Zoho Books workflow event.

The webhook endpoint writes here (and nowhere else) before it answers 2xx; the triggerer's
:class:`~zoho_whatsapp.webhooks.trigger.WebhookInboxTrigger` reads new rows and starts a DAG run;
the alerts DAG marks each event handled. It lives in the send ledger's database (table
``webhook_events``, ledger migration 2), never in Airflow's metadata DB.

Statuses: ``received`` (stored, not yet handled) → ``handled`` (every message of the event is
settled: sent, skipped, failed or unknown).

The inbox is bounded: at most ``max_pending`` events may wait unhandled; a new event beyond that
raises :class:`InboxFull` (the endpoint answers 429) while deliveries of stored events still count.
Rows are never deleted, so an event key, once stored, makes every later delivery of that event a
duplicate: this is what stops a replayed delivery from doing anything twice.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from zoho_whatsapp.ledger import LedgerUnavailable, SendLedger
from zoho_whatsapp.ledger.ledger import DEFAULT_CONN_ID, utcnow
from zoho_whatsapp.ledger.schema import webhook_events
from zoho_whatsapp.webhooks.payloads import AlertEvent

log = logging.getLogger(__name__)

RECEIVED = "received"
HANDLED = "handled"
# Two-key advisory lock (its own key space, apart from the ledger's one-key locks per invoice):
# serialises the endpoint's "count the pending events, then insert" on PostgreSQL.
_INBOX_LOCK = (zlib.crc32(b"zoho_whatsapp") & 0x7FFFFFFF, zlib.crc32(b"webhook_inbox") & 0x7FFFFFFF)


class InboxFull(Exception):
    """Too many events wait unhandled: a new one is refused until the alerts DAG catches up."""

    def __init__(self, pending: int, cap: int) -> None:
        super().__init__(f"{pending} events wait unhandled (the cap is {cap})")
        self.pending = pending
        self.cap = cap


@dataclass(frozen=True)
class Stored:
    """What recording one delivery did."""

    event_id: int
    event_key: str
    duplicate: bool  # the event was already in the inbox: this delivery adds nothing
    deliveries: int
    status: str


class WebhookInbox:
    """
    Webhook events in the ledger database, one row per event key.

    .. code-block:: python

        inbox = WebhookInbox.from_connection("reminder_ledger_default")
        stored = inbox.record(parse_event("invoice_created", body), body_sha256)
        if stored.duplicate:
            ...  # Zoho retried: nothing new to do
    """

    def __init__(self, ledger: SendLedger) -> None:
        self.ledger = ledger
        self.engine = ledger.engine

    @classmethod
    def from_connection(cls, conn_id: str = DEFAULT_CONN_ID) -> WebhookInbox:
        """Open the ledger behind ``conn_id`` and make sure the inbox table exists.

        Two processes migrating a fresh database at once make one of them fail on the
        ``schema_version`` key; the second attempt then finds the migration applied.
        """
        try:
            return cls(SendLedger.from_connection(conn_id))
        except LedgerUnavailable as exc:
            if not isinstance(exc.__cause__, sa.exc.IntegrityError):
                raise
            log.info("another process migrated the ledger at the same moment; opening it again")
            return cls(SendLedger.from_connection(conn_id))

    def _insert(self) -> Any:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert

    # -- the endpoint ---------------------------------------------------------------------------

    def record(self, event: AlertEvent, body_sha256: str, *, max_pending: int | None = None) -> Stored:
        """Store a delivery; a second delivery of the same event only counts itself.

        One transaction that starts by writing: the delivery count of a stored event goes up
        (a duplicate, accepted whatever the cap), else the pending events are counted and the new
        one is inserted, or :class:`InboxFull` is raised when ``max_pending`` already wait. SQLite
        has one writer at a time and PostgreSQL takes an advisory lock, so concurrent deliveries
        never push the inbox over the cap; the insert keeps ``ON CONFLICT DO NOTHING`` on the
        unique event key, so ten concurrent deliveries of one event still store one row.
        """
        now = utcnow()
        key = webhook_events.c.event_key == event.event_key
        bump = webhook_events.update().where(key).values(
            deliveries=webhook_events.c.deliveries + 1, last_delivery_at=now
        )
        stmt = self._insert()(webhook_events).values(
            event_key=event.event_key,
            kind=event.kind,
            organization_id=event.organization_id,
            reference=event.reference,
            payload=event.to_json(),
            body_sha256=body_sha256,
            status=RECEIVED,
            deliveries=1,
            received_at=now,
            last_delivery_at=now,
            announcements=0,
        ).on_conflict_do_nothing(index_elements=["event_key"])
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": _INBOX_LOCK[0], "b": _INBOX_LOCK[1]})
            created = False
            if conn.execute(bump).rowcount == 0:
                if max_pending is not None:
                    pending = self._pending_count(conn)
                    if pending >= max_pending:
                        raise InboxFull(pending, max_pending)
                created = conn.execute(stmt).rowcount == 1
                if not created:  # stored by a writer the advisory lock does not cover (another cap)
                    conn.execute(bump)
            row = conn.execute(
                sa.select(webhook_events.c.id, webhook_events.c.deliveries, webhook_events.c.status).where(key)
            ).one()
        return Stored(row.id, event.event_key, not created, row.deliveries, row.status)

    def pending_count(self) -> int:
        """How many events wait unhandled."""
        with self.engine.connect() as conn:
            return self._pending_count(conn)

    @staticmethod
    def _pending_count(conn: Any) -> int:
        query = sa.select(sa.func.count()).select_from(webhook_events).where(webhook_events.c.status == RECEIVED)
        return int(conn.execute(query).scalar_one())

    # -- the trigger ----------------------------------------------------------------------------

    def announce(self, *, redeliver_after: float, max_announcements: int, limit: int = 100) -> list[dict[str, Any]]:
        """Take the events a DAG run should be started for, and stamp them announced.

        New events are announced once. An event still ``received`` ``redeliver_after`` seconds
        after its announcement (its run failed, or the triggerer died before Airflow stored the
        asset event) is announced again, at most ``max_announcements`` times in all. The stamp
        is a conditional update, so two triggerers never both announce one event.
        """
        now = utcnow()
        due = sa.or_(
            webhook_events.c.announced_at.is_(None),
            sa.and_(
                webhook_events.c.announced_at < now - timedelta(seconds=redeliver_after),
                webhook_events.c.announcements < max_announcements,
            ),
        )
        taken: list[dict[str, Any]] = []
        with self.engine.connect() as conn:
            candidates = conn.execute(
                sa.select(webhook_events.c.id, webhook_events.c.event_key, webhook_events.c.kind,
                          webhook_events.c.announcements)
                .where(webhook_events.c.status == RECEIVED, due)
                .order_by(webhook_events.c.id)
                .limit(limit)
            ).all()
        if not candidates:
            return taken
        # A write transaction of its own: on SQLite a read that turns into a write can fail at once
        # when the endpoint wrote meanwhile, while a transaction that starts by writing waits its turn.
        with self.engine.begin() as conn:
            for row in candidates:
                stamped = conn.execute(
                    webhook_events.update()
                    .where(webhook_events.c.id == row.id, webhook_events.c.status == RECEIVED, due)
                    .values(announced_at=now, announcements=webhook_events.c.announcements + 1)
                ).rowcount
                if stamped == 1:
                    taken.append({"event_id": row.id, "event_key": row.event_key, "kind": row.kind,
                                  "announcement": row.announcements + 1})
        return taken

    # -- the DAG --------------------------------------------------------------------------------

    def get(self, event_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The rows with these ids, oldest first (unknown ids are simply absent)."""
        if not event_ids:
            return []
        query = sa.select(webhook_events).where(webhook_events.c.id.in_(list(event_ids))).order_by(webhook_events.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def pending(self, limit: int = 500) -> list[dict[str, Any]]:
        """Events stored but not handled yet, oldest first."""
        query = (
            sa.select(webhook_events)
            .where(webhook_events.c.status == RECEIVED)
            .order_by(webhook_events.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def rows(self, **where: Any) -> list[dict[str, Any]]:
        """Rows matching column equalities, oldest first (reports and tests)."""
        query = sa.select(webhook_events).order_by(webhook_events.c.id)
        for column, value in where.items():
            query = query.where(webhook_events.c[column] == value)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def mark_handled(self, event_id: int, *, dag_id: str | None, run_id: str | None, outcome: dict[str, Any]) -> bool:
        """Record that the event's messages are all settled; the first run to get there keeps the credit."""
        with self.engine.begin() as conn:
            return conn.execute(
                webhook_events.update()
                .where(webhook_events.c.id == event_id, webhook_events.c.status == RECEIVED)
                .values(
                    status=HANDLED,
                    handled_at=utcnow(),
                    dag_id=dag_id,
                    run_id=run_id,
                    outcome=json.dumps(outcome, default=str, sort_keys=True),
                )
            ).rowcount == 1

    def dispose(self) -> None:
        self.ledger.dispose()
