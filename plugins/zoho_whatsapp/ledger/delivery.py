"""What became of each message after "sent": delivery receipts, replies and opt-outs from WhatsApp's webhooks.

The ``/whatsapp/webhook`` endpoint hands every validated event to :meth:`DeliveryLedger.record`,
which stores it once (Meta retries for days: the event key de-duplicates) and then applies it to
the send ledger, in the ledger's own database (migration 3 of ``ledger.schema``):

* a **status** (``sent``, ``delivered``, ``read``, ``failed``) finds its ``messages`` row by
  ``wamid``, else by ``biz_opaque_callback_data`` (:func:`callback_data`, set on every send), and
  moves the row's ``delivery_status`` forward only: sent < failed < delivered < read, so duplicates
  and any arrival order end in the same row (a ``delivered`` after ``read`` only fills in
  ``delivered_at``). Each status keeps Meta's timestamp. A row recorded ``unknown`` (the send's
  answer was lost) becomes ``sent`` with its wamid: any status proves Meta accepted it. A ``failed``
  status is classified by the same error families as a synchronous failure; a number that is not
  on WhatsApp is remembered (suppression ``not_on_whatsapp``).
* an inbound **message** is kept as a reply (masked number, text truncated, the customer of the
  message it answers or of the latest ledger row to that number); a reply that is exactly an
  opt-out keyword (``rules.consent``) suppresses the number (``opted_out``), ``START`` lifts it.
  Any message from a number proves it is on WhatsApp.
* a **user_preferences** change (marketing stop/resume) is recorded as ``marketing_stopped``; it
  does not stop utility reminders.

The send pipeline asks :func:`suppressed_recipients` before messaging anyone: at planning, and
again inside each claim's transaction (a STOP stored a moment before the claim is seen by it).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from zoho_whatsapp.ledger.ledger import (
    DEFAULT_CONN_ID,
    DEFAULT_NOT_ON_WHATSAPP_DAYS,
    LedgerUnavailable,
    SendLedger,
    utcnow,
)
from zoho_whatsapp.ledger.schema import messages, suppressions, whatsapp_events, whatsapp_replies
from zoho_whatsapp.rules.consent import DEFAULT_OPT_IN_KEYWORDS, DEFAULT_OPT_OUT_KEYWORDS, OPT_OUT, consent_action
from zoho_whatsapp.rules.phone import mask_phone
from zoho_whatsapp.webhooks.whatsapp_events import (
    Event,
    InboundMessage,
    PreferenceChange,
    StatusUpdate,
    event_from_json,
    event_to_json,
)
from zoho_whatsapp.whatsapp.errors import NotOnWhatsApp, error_for

log = logging.getLogger(__name__)

OPTED_OUT = "opted_out"
NOT_ON_WHATSAPP = "not_on_whatsapp"
MARKETING_STOPPED = "marketing_stopped"
SUPPRESSING = (OPTED_OUT, NOT_ON_WHATSAPP)  # what stops a utility reminder or alert
ACTIVE, LIFTED = "active", "lifted"
DEFAULT_UNKNOWN_AFTER = timedelta(hours=1)  # Meta reports within seconds: unknown beyond this needs a person

# Forward only. ``failed`` ranks above ``sent`` (it is news about a sent message) and below
# ``delivered``: a message that reached the phone was not lost, whatever else arrives.
DELIVERY_RANK = {"sent": 1, "failed": 2, "delivered": 3, "read": 4}
_TIMESTAMP_COLUMN = {"sent": "sent_at", "delivered": "delivered_at", "read": "read_at", "failed": "failed_at"}
# Statuses a receipt proves wrong: the message went out although the row says it may not have.
_PROVED_SENT = ("unknown", "planned")


def later_delivery_status(current: str | None, new: str) -> str:
    """The delivery status a row ends with, whatever order the two statuses came in.

    >>> later_delivery_status("read", "delivered"), later_delivery_status("sent", "failed")
    ('read', 'failed')
    """
    return new if DELIVERY_RANK[new] > DELIVERY_RANK.get(current or "", 0) else current  # type: ignore[return-value]


def callback_data(organization_id: str, kind: str, invoice_id: str, occasion: str) -> str:
    """The ``biz_opaque_callback_data`` a send sets: the row's unique key, echoed in every status.

    >>> callback_data("600", "payment_reminder", "982000000567001", "2026-11-25")
    '600:payment_reminder:982000000567001:2026-11-25'
    """
    return f"{organization_id}:{kind}:{invoice_id}:{occasion}"


def parse_callback_data(text: str | None) -> tuple[str, str, str, str] | None:
    """(organization_id, kind, invoice_id, occasion) from :func:`callback_data`, or None.

    The occasion is last because an alert's occasion (an event id) may itself contain colons.
    """
    parts = (text or "").split(":", 3)
    if len(parts) != 4 or not all(parts):
        return None
    return parts[0], parts[1], parts[2], parts[3]


# -- what the send pipeline asks ------------------------------------------------------------------


# Built once: the send path asks it inside every claim, hundreds of times a second.
_SUPPRESSED = sa.select(suppressions.c.recipient, suppressions.c.reason).where(
    suppressions.c.recipient.in_(sa.bindparam("b_recipients", expanding=True)),
    suppressions.c.state == ACTIVE,
    suppressions.c.reason.in_(sa.bindparam("b_reasons", expanding=True)),
    sa.or_(suppressions.c.reason != NOT_ON_WHATSAPP, suppressions.c.since > sa.bindparam("b_remembered_since")),
)


def suppression_reason(
    conn: Connection,
    recipient: str,
    *,
    now: datetime | None = None,
    not_on_whatsapp_days: float = DEFAULT_NOT_ON_WHATSAPP_DAYS,
    reasons: Sequence[str] = SUPPRESSING,
) -> str | None:
    """Why ``recipient`` (E.164) must not be messaged now — ``opted_out`` or ``not_on_whatsapp`` — or None.

    Takes the caller's connection so the claim can ask inside its own transaction: a STOP stored
    a moment before the claim is seen by it. ``opted_out`` wins when both apply.
    """
    found = suppressed_recipients(conn, [recipient], now=now, not_on_whatsapp_days=not_on_whatsapp_days,
                                  reasons=reasons)
    return found.get(recipient)


def suppression_detail(reason: str, not_on_whatsapp_days: float = DEFAULT_NOT_ON_WHATSAPP_DAYS) -> str:
    """Why a skipped row was not sent, as the audit shows it, and what lifts it.

    >>> suppression_detail("not_on_whatsapp", 30)
    'WhatsApp reported this number is not on WhatsApp in the last 30 days; it is tried again after that, or as soon as it writes to us'
    """
    if reason == OPTED_OUT:
        return "the customer opted out by replying STOP (or another opt-out keyword); a START reply opts back in"
    if reason == NOT_ON_WHATSAPP:
        return (f"WhatsApp reported this number is not on WhatsApp in the last {not_on_whatsapp_days:g} days; "
                "it is tried again after that, or as soon as it writes to us")
    return f"suppressed: {reason}"


def suppressed_recipients(
    conn: Connection,
    recipients: Iterable[str],
    *,
    now: datetime | None = None,
    not_on_whatsapp_days: float = DEFAULT_NOT_ON_WHATSAPP_DAYS,
    reasons: Sequence[str] = SUPPRESSING,
    chunk_size: int = 500,
) -> dict[str, str]:
    """{recipient: reason} for those of ``recipients`` that must not be messaged now (planning, in bulk)."""
    wanted = sorted({r for r in recipients if r})
    limits = {"b_reasons": list(reasons),
              "b_remembered_since": (now or utcnow()) - timedelta(days=not_on_whatsapp_days)}
    found: dict[str, str] = {}
    for start in range(0, len(wanted), chunk_size):
        rows = conn.execute(_SUPPRESSED, {"b_recipients": wanted[start:start + chunk_size], **limits})
        for recipient, reason in rows:
            if found.get(recipient) != OPTED_OUT:
                found[recipient] = reason
    return found


def resolve_unknown_by_receipts(conn: Connection, *, now: datetime | None = None) -> int:
    """Rows settled ``unknown`` after their receipt had already arrived become ``sent``.

    Meta's first status can beat the send's own answer: the receipt is recorded on the row while
    it is still ``sending``, and a sender whose answer was then lost settles it ``unknown``. Call
    this before reporting a run (the endpoint resolves every later receipt itself).
    """
    now = now or utcnow()
    return conn.execute(
        messages.update()
        .where(messages.c.status == "unknown", messages.c.delivery_status.is_not(None))
        .values(status="sent", reason="confirmed_by_meta", updated_at=now,
                error_message="the send's answer was lost; Meta's status webhook confirmed it went out")
    ).rowcount


def delivery_summary(
    conn: Connection,
    *,
    now: datetime | None = None,
    unknown_after: timedelta = DEFAULT_UNKNOWN_AFTER,
    **where: Any,
) -> dict[str, Any]:
    """What became of the sent messages matching ``where`` (column equalities, e.g. occasion=...), each
    message counted once however many invoices it carried.

    ``by_delivery``: sent (accepted, no receipt yet) / delivered / read / failed; ``failed_by_class``:
    the error family of each asynchronous failure; ``unknown_waiting``: unknown rows younger than
    ``unknown_after`` (a receipt may still settle them); ``unknown_to_check``: the only ones a
    person needs to look at.
    """
    now = now or utcnow()
    # Messages, not invoices: a statement carrying 11 invoices is one message (its lead row).
    query = sa.select(messages.c.status, messages.c.delivery_status, messages.c.delivery_error_class,
                      messages.c.updated_at).where(messages.c.status.in_(("sent", "unknown")),
                                                   sa.or_(messages.c.message_id.is_(None),
                                                          messages.c.message_id == messages.c.id))
    for column, value in where.items():
        query = query.where(messages.c[column] == value)
    by_delivery: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    waiting = to_check = 0
    cutoff = now - unknown_after
    for status, delivery, error_class, updated_at in conn.execute(query):
        if status == "unknown":
            if _aware(updated_at) > cutoff:
                waiting += 1
            else:
                to_check += 1
            continue
        by_delivery[delivery or "sent"] += 1
        if delivery == "failed":
            failed[error_class or "unclassified"] += 1
    return {"by_delivery": dict(by_delivery), "failed_by_class": dict(failed),
            "unknown_waiting": waiting, "unknown_to_check": to_check}


def recent_replies(conn: Connection, *, since: datetime | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Replies customers sent, newest first (masked numbers only)."""
    query = sa.select(whatsapp_replies).order_by(whatsapp_replies.c.sent_at.desc(), whatsapp_replies.c.id.desc())
    if since is not None:
        query = query.where(whatsapp_replies.c.sent_at >= since)
    return [dict(r._mapping) for r in conn.execute(query.limit(limit))]


# -- the endpoint's side ----------------------------------------------------------------------------


@dataclass
class Recorded:
    """What one webhook delivery did."""

    stored: int = 0
    duplicates: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # applied events by what they did
    pending: int = 0  # stored, applying failed: :meth:`DeliveryLedger.apply_pending` retries


class DeliveryLedger:
    """
    Receipts, replies and suppressions in the send ledger's database.

    .. code-block:: python

        deliveries = DeliveryLedger.from_connection("reminder_ledger_default")
        recorded = deliveries.record(parse_notification(document).events, body_sha256)
        with deliveries.engine.connect() as conn:
            suppression_reason(conn, "+919820012345")  # 'opted_out' after a STOP
    """

    def __init__(
        self,
        engine: Engine,
        *,
        opt_out: Iterable[str] = DEFAULT_OPT_OUT_KEYWORDS,
        opt_in: Iterable[str] = DEFAULT_OPT_IN_KEYWORDS,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.opt_out = tuple(opt_out)
        self.opt_in = tuple(opt_in)
        self.now = now
        self._backlog = False
        self._ledger: SendLedger | None = None

    @classmethod
    def from_connection(cls, conn_id: str = DEFAULT_CONN_ID, **options: Any) -> DeliveryLedger:
        """Open the ledger behind ``conn_id``, its schema brought up to date.

        Two processes migrating a fresh database at once make one fail on the ``schema_version``
        key; opening again then finds the migration applied.
        """
        try:
            ledger = SendLedger.from_connection(conn_id)
        except LedgerUnavailable as exc:
            if not isinstance(exc.__cause__, sa.exc.IntegrityError):
                raise
            ledger = SendLedger.from_connection(conn_id)
        deliveries = cls(ledger.engine, **options)
        deliveries._ledger = ledger
        return deliveries

    def dispose(self) -> None:
        self.engine.dispose()

    def record(self, events: Sequence[Event], body_sha256: str) -> Recorded:
        """Store the events (a duplicate is only counted) and apply the new ones, in one transaction.

        When applying fails (a bug, an event the rules did not foresee), that transaction is rolled
        back and the events are stored again on their own, unapplied: they are kept and acknowledged
        (Meta would otherwise retry them for days) and :meth:`apply_pending` applies them later. Only
        a ledger that cannot store raises.
        """
        if self._backlog:
            self.apply_pending()
        recorded = Recorded()
        try:
            with self.engine.begin() as conn:
                for event_id, event in self._store(conn, events, body_sha256, recorded):
                    recorded.outcomes[self._apply_one(conn, event_id, event)] += 1
            return recorded
        except Exception:
            log.exception("applying %d WhatsApp event(s) failed; storing them to apply later", len(events))
        recorded = Recorded()
        with self.engine.begin() as conn:
            recorded.pending = len(self._store(conn, events, body_sha256, recorded))
        self._backlog = bool(recorded.pending)
        return recorded

    def apply_pending(self, limit: int = 500) -> Counter[str]:
        """Apply stored events that were not applied yet, oldest first, each in its own transaction."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(whatsapp_events.c.id, whatsapp_events.c.kind, whatsapp_events.c.payload)
                .where(whatsapp_events.c.applied_at.is_(None))
                .order_by(whatsapp_events.c.id)
                .limit(limit)
            ).all()
        outcomes: Counter[str] = Counter()
        self._backlog = False
        for row in rows:
            try:
                with self.engine.begin() as conn:
                    outcomes[self._apply_one(conn, row.id, event_from_json(row.kind, row.payload))] += 1
            except Exception:
                self._backlog = True
                outcomes["pending"] += 1
                log.exception("stored WhatsApp event #%d still cannot be applied", row.id)
        return outcomes

    def events(self, **where: Any) -> list[dict[str, Any]]:
        """Stored webhook events matching column equalities, oldest first (reports and tests)."""
        query = sa.select(whatsapp_events).order_by(whatsapp_events.c.id)
        for column, value in where.items():
            query = query.where(whatsapp_events.c[column] == value)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # -- internals ------------------------------------------------------------------------------

    def _store(self, conn: Connection, events: Sequence[Event], body_sha256: str,
               recorded: Recorded) -> list[tuple[int, Event]]:
        now = self.now()
        insert = _dialect_insert(conn)
        new: list[tuple[int, Event]] = []
        for event in events:
            stmt = insert(whatsapp_events).values(
                event_key=event.event_key,
                kind=event.kind,
                wamid=getattr(event, "wamid", None),
                status=getattr(event, "status", None),
                event_at=event.at,
                payload=event_to_json(event),
                body_sha256=body_sha256,
                deliveries=1,
                received_at=now,
                last_delivery_at=now,
            ).on_conflict_do_nothing(index_elements=["event_key"]).returning(whatsapp_events.c.id)
            event_id = conn.execute(stmt).scalar()
            if event_id is not None:
                new.append((event_id, event))
                recorded.stored += 1
                continue
            recorded.duplicates += 1
            conn.execute(
                whatsapp_events.update()
                .where(whatsapp_events.c.event_key == event.event_key)
                .values(deliveries=whatsapp_events.c.deliveries + 1, last_delivery_at=now)
            )
        return new

    def _apply_one(self, conn: Connection, event_id: int, event: Event) -> str:
        now = self.now()
        row_id: int | None = None
        if isinstance(event, StatusUpdate):
            outcome, row_id = apply_status(conn, event, now=now)
        elif isinstance(event, InboundMessage):
            outcome, row_id = apply_reply(conn, event, now=now, opt_out=self.opt_out, opt_in=self.opt_in)
        else:
            outcome = apply_preference(conn, event, now=now)
        conn.execute(
            whatsapp_events.update()
            .where(whatsapp_events.c.id == event_id)
            .values(applied_at=now, outcome=outcome, message_row_id=row_id)
        )
        return outcome


# -- applying one event (each runs inside the caller's transaction) ---------------------------------


def apply_status(conn: Connection, event: StatusUpdate, *, now: datetime) -> tuple[str, int | None]:
    """Move the matching row's delivery forward; returns (outcome, row id).

    The row's new state is computed by the UPDATE itself (forward only, first timestamp kept), so two
    statuses of one message applied at the same moment cannot undo each other; the outcome label is
    read from the row as matched, for the log.
    """
    row = _match(conn, event.wamid, event.callback_data)
    if event.status == "failed" and event.error_code is not None and issubclass(error_for(event.error_code), NotOnWhatsApp):
        number = (row.recipient if row is not None else None) or event.recipient
        if number:
            _set_suppression(conn, number, NOT_ON_WHATSAPP, ACTIVE, event.at, source="failed_status",
                             detail=event.error_title, now=now, restart=True)
    if row is None:
        return "unmatched", None
    rank = DELIVERY_RANK[event.status]
    outcome = event.status if DELIVERY_RANK.get(row.delivery_status or "", 0) < rank else "stale"
    if row.status in _PROVED_SENT:
        # A row settled unknown later than this read is caught by resolve_unknown_by_receipts.
        resolved = conn.execute(
            messages.update()
            .where(_message_rows(row), messages.c.status.in_(_PROVED_SENT))
            .values(status="sent", reason="confirmed_by_meta", error_code=None,
                    error_message=f"recorded {row.status}; Meta's {event.status} webhook confirmed it went out",
                    settled_at=sa.func.coalesce(messages.c.settled_at, now), updated_at=now)
        ).rowcount
        if resolved:
            outcome = f"resolved_{row.status}"
            log.info("message row %d was %s: Meta's %s status proves it went out; now sent", row.id, row.status,
                     event.status)
    current = sa.case(*((messages.c.delivery_status == s, r) for s, r in DELIVERY_RANK.items()), else_=0)
    stamp = messages.c[_TIMESTAMP_COLUMN[event.status]]
    values: dict[str, Any] = {
        "delivery_status": sa.case((current < rank, event.status), else_=messages.c.delivery_status),
        stamp.name: sa.func.coalesce(stamp, event.at),
        "wamid": sa.func.coalesce(messages.c.wamid, event.wamid),
        "delivery_updated_at": now,
    }
    if event.status == "failed":
        family = error_for(event.error_code).__name__ if event.error_code is not None else None
        values.update(
            delivery_error_code=sa.func.coalesce(messages.c.delivery_error_code, event.error_code),
            delivery_error_title=sa.func.coalesce(messages.c.delivery_error_title, event.error_title),
            delivery_error_class=sa.func.coalesce(messages.c.delivery_error_class, family),
        )
    conn.execute(messages.update().where(_message_rows(row)).values(**values))
    return outcome, row.id


def _message_rows(row: Any) -> Any:
    """Every row of the matched row's message: a statement's receipt is each of its invoices' receipt."""
    lead = row.message_id or row.id
    return sa.or_(messages.c.id == lead, messages.c.message_id == lead)


def apply_reply(
    conn: Connection, event: InboundMessage, *, now: datetime, opt_out: Iterable[str], opt_in: Iterable[str]
) -> tuple[str, int | None]:
    """Keep the reply with the customer it maps to; act on an opt-out / opt-in keyword."""
    row = _match(conn, event.context_wamid, None) if event.context_wamid else None
    if row is None:
        row = conn.execute(
            sa.select(*_MATCH_COLUMNS).where(messages.c.recipient == event.sender).order_by(messages.c.id.desc()).limit(1)
        ).first()
    action = consent_action(event.text, opt_out, opt_in) if event.text else None
    conn.execute(
        _dialect_insert(conn)(whatsapp_replies).values(
            message_id=event.message_id,
            phone_masked=mask_phone(event.sender),
            message_type=event.type,
            text=event.text,
            consent_action=action,
            sent_at=event.at,
            received_at=now,
            ledger_message_id=row.id if row is not None else None,
            organization_id=row.organization_id if row is not None else None,
            customer_id=row.customer_id if row is not None else None,
            customer_name=row.customer_name if row is not None else None,
            invoice_number=row.invoice_number if row is not None else None,
            context_wamid=event.context_wamid,
        ).on_conflict_do_nothing(index_elements=["message_id"])
    )
    # Whoever writes to us is on WhatsApp, whatever an earlier failure said.
    conn.execute(
        suppressions.update()
        .where(suppressions.c.recipient == event.sender, suppressions.c.reason == NOT_ON_WHATSAPP,
               suppressions.c.state == ACTIVE, suppressions.c.event_at <= event.at)
        .values(state=LIFTED, since=event.at, event_at=event.at, source="reply", updated_at=now)
    )
    if action is None:
        return "reply", row.id if row is not None else None
    state = ACTIVE if action == OPT_OUT else LIFTED
    changed = _set_suppression(conn, event.sender, OPTED_OUT, state, event.at, source="reply_keyword",
                               detail=(event.text or "")[:255], now=now)
    log.info("%s replied %s: %s", mask_phone(event.sender), action, "applied" if changed else "older than the latest")
    return (action if changed else f"{action}_stale"), row.id if row is not None else None


def apply_preference(conn: Connection, event: PreferenceChange, *, now: datetime) -> str:
    """Record a marketing stop/resume (utility reminders are not affected)."""
    if event.category != "marketing_messages":
        return "preference_ignored"
    state = ACTIVE if event.value == "stop" else LIFTED
    changed = _set_suppression(conn, event.recipient, MARKETING_STOPPED, state, event.at, source="user_preferences",
                               detail=f"{event.category}: {event.value}", now=now)
    return f"marketing_{event.value}" if changed else f"marketing_{event.value}_stale"


_MATCH_COLUMNS = (messages.c.id, messages.c.message_id, messages.c.status, messages.c.delivery_status, messages.c.recipient,
                  messages.c.organization_id, messages.c.customer_id, messages.c.customer_name,
                  messages.c.invoice_number)


def _match(conn: Connection, wamid: str | None, opaque: str | None) -> Any:
    if wamid:
        row = conn.execute(sa.select(*_MATCH_COLUMNS).where(messages.c.wamid == wamid).order_by(messages.c.id)
                           .limit(1)).first()
        if row is not None:
            return row
    key = parse_callback_data(opaque)
    if key is None:
        return None
    organization_id, kind, invoice_id, occasion = key
    return conn.execute(
        sa.select(*_MATCH_COLUMNS).where(
            messages.c.organization_id == organization_id,
            messages.c.kind == kind,
            messages.c.invoice_id == invoice_id,
            messages.c.occasion == occasion,
        )
    ).first()


def _set_suppression(
    conn: Connection,
    recipient: str,
    reason: str,
    state: str,
    at: datetime,
    *,
    source: str,
    detail: str | None,
    now: datetime,
    restart: bool = False,
) -> bool:
    """Upsert one suppression; an event older than the one recorded loses (STOP/START out of order).

    ``since`` is when the current state began; ``restart`` moves it to this event even when the
    state does not change (a number failing again is remembered from its latest failure).
    """
    insert = _dialect_insert(conn)
    stmt = insert(suppressions).values(
        recipient=recipient, reason=reason, state=state, phone_masked=mask_phone(recipient), since=at,
        event_at=at, source=source, detail=detail, updated_at=now,
    )
    since = stmt.excluded.since if restart else sa.case(
        (suppressions.c.state == stmt.excluded.state, suppressions.c.since), else_=stmt.excluded.since
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["recipient", "reason"],
        set_={"state": stmt.excluded.state, "since": since, "event_at": stmt.excluded.event_at,
              "source": stmt.excluded.source, "detail": stmt.excluded.detail, "updated_at": stmt.excluded.updated_at},
        where=suppressions.c.event_at <= stmt.excluded.event_at,
    )
    return conn.execute(stmt).rowcount == 1


def _dialect_insert(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
