"""SendLedger: every message is recorded before and after it goes out.

The WhatsApp Cloud API has no idempotency key, so this database is what makes retries,
re-runs, backfills and two simultaneous runs safe: a message is sent only by the one process
that atomically moves its row from ``planned`` to ``sending``.

Statuses: ``fetched`` (seen in Zoho, not yet planned) → ``planned`` or ``skipped`` →
``sending`` → ``sent`` | ``failed`` | ``unknown`` (the request may have been accepted: never
resent unless a person asks) | back to ``planned`` (the API proved nothing was sent).
"""

from __future__ import annotations

import json
import logging
import os
import random
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException
from sqlalchemy.engine import Connection, Engine

from zoho_whatsapp.ledger.schema import MIGRATIONS, SCHEMA_VERSION, messages, metadata, schema_version
from zoho_whatsapp.rules.policy import stage_key

log = logging.getLogger(__name__)

IST = ZoneInfo("Asia/Kolkata")
DEFAULT_CONN_ID = "reminder_ledger_default"
FINAL = ("sent", "skipped", "failed", "unknown")
OPEN = ("fetched", "planned", "sending")
DELIVERED_OR_MAYBE = ("sent", "sending", "unknown")  # what the cadence counts as "reminded"
RECIPIENT_CAP = "recipient_hourly_cap"  # the skip reason of a claim over a RecipientCap
DEFAULT_NOT_ON_WHATSAPP_DAYS = 30.0  # a number may join WhatsApp later: try it again after this
# Whose doing a row's state is: a claim stamps run_id on the rows it sends; planning happens in the
# run that fetched the row (seen_run_id).
_SETTLED_BY_RUN = ("sending", "sent", "failed", "unknown")
# PostgreSQL aborts one of two transactions that wait on each other's rows (or cannot be serialised);
# the aborted one wrote nothing and is meant to be run again.
_RETRYABLE = {"40P01": "deadlock", "40001": "serialization failure"}
_ATTEMPTS = 5
_T = TypeVar("_T")


class LedgerUnavailable(AirflowFailException):
    """The ledger database cannot be reached: nothing may be sent without it."""


@dataclass(frozen=True)
class SendKey:
    """This kind of message on this occasion in this organization: the unit every step works on.

    The occasion is the reminder date (IST) for reminders, the invoice or payment id for alerts.
    """

    organization_id: str
    kind: str
    occasion: str


@dataclass(frozen=True)
class RunInfo:
    """Who is acting, for the audit trail."""

    dag_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None

    @classmethod
    def of(cls, ti: Any) -> RunInfo:
        """The running task instance (``ti`` of the task context)."""
        return cls(dag_id=ti.dag_id, run_id=ti.run_id, map_index=ti.map_index, try_number=ti.try_number)


@dataclass(frozen=True)
class RecipientCap:
    """At most ``limit`` messages of ``kinds`` to one number within ``window`` (claimed or possibly sent)."""

    limit: int
    kinds: tuple[str, ...]
    window: timedelta = timedelta(hours=1)


@dataclass
class Claim:
    """Outcome of trying to take a row for sending."""

    claimed: bool
    # why not: "taken" (not planned any more), "cadence", RECIPIENT_CAP, or a suppression
    # ("opted_out", "not_on_whatsapp")
    reason: str | None = None
    row: dict[str, Any] = field(default_factory=dict)


def utcnow() -> datetime:
    return datetime.now(UTC)


def ledger_url_from_connection(conn_id: str = DEFAULT_CONN_ID) -> str:
    """SQLAlchemy URL for the ledger connection; an embedded SQLite file when it is not defined.

    ``sqlite`` connections take the file path from ``host`` (or ``extra.path``);
    ``postgres`` connections take host, port, login, password and schema (the database).
    """
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow"))
        path = home / "reminder_ledger.db"
        log.info("connection %r is not defined: using the embedded SQLite ledger %s", conn_id, path)
        return f"sqlite:///{path}"
    conn_type = (conn.conn_type or "").lower()
    extra = conn.extra_dejson
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    if conn_type == "sqlite":
        path = conn.host or extra.get("path")
        if not path:
            raise LedgerUnavailable(f"connection {conn_id!r} (sqlite) needs the database file path in host")
        return f"sqlite:///{path}"
    if conn_type in ("postgres", "postgresql"):
        url = sa.engine.URL.create(
            "postgresql+psycopg2",
            username=conn.login or None,
            password=conn.password or None,
            host=conn.host or "localhost",
            port=conn.port or 5432,
            database=conn.schema or "postgres",
        )
        return url.render_as_string(hide_password=False)
    raise LedgerUnavailable(f"connection {conn_id!r} has type {conn_type!r}: use sqlite or postgres")


def _create_private(path: Path) -> None:
    """Create an empty database file readable by this user only (it holds customers' names and numbers).

    SQLite gives its -wal and -shm files the database file's mode. The file is made under a
    temporary name and linked into place: closing a descriptor of a database file that a
    connection of this process has open would drop that connection's locks.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    except OSError as exc:  # no hard links here: SQLite creates it, with the umask's mode
        log.warning("could not create %s readable by its owner only: %s", path, exc)
    finally:
        os.unlink(temporary)


def _plannable() -> Any:
    return sa.or_(messages.c.status == "fetched", messages.c.status == "planned")


def _group(lead_id: Any) -> Any:
    """The rows of the message whose lead row is ``lead_id``: itself and the invoices it carries."""
    return sa.or_(messages.c.id == lead_id, messages.c.message_id == lead_id)


def _is_lead() -> Any:
    """A row that holds a message (what is sent): a lead row, or a row that is a message on its own."""
    return sa.or_(messages.c.message_id.is_(None), messages.c.message_id == messages.c.id)


class _PartGroup(Exception):
    """A message's rows are not all ``planned``: the claim takes none of them."""


def _of(key: SendKey) -> tuple[Any, ...]:
    return (
        messages.c.organization_id == key.organization_id,
        messages.c.kind == key.kind,
        messages.c.occasion == key.occasion,
    )


def _select(key: SendKey | None, status: Sequence[str] | None, where: Mapping[str, Any]) -> Any:
    query = sa.select(messages).order_by(messages.c.id)
    if key is not None:
        query = query.where(*_of(key))
    for column, value in where.items():
        query = query.where(messages.c[column] == value)
    if status:
        query = query.where(messages.c.status.in_(tuple(status)))
    return query


def _suppressed_in(conn: Connection, recipients: Sequence[str], now: datetime, not_on_whatsapp_days: float) -> dict[str, str]:
    # delivery.py builds on this module: imported here, not at the top.
    from zoho_whatsapp.ledger.delivery import suppressed_recipients

    return suppressed_recipients(conn, recipients, now=now, not_on_whatsapp_days=not_on_whatsapp_days) if recipients else {}


def _suppression_refusal(row: Mapping[str, Any], suppressed: Mapping[str, str],
                         not_on_whatsapp_days: float) -> tuple[str, str] | None:
    from zoho_whatsapp.ledger.delivery import suppression_detail

    reason = suppressed.get(row["recipient"]) if row["recipient"] else None
    return (reason, suppression_detail(reason, not_on_whatsapp_days)) if reason else None


def claim_lock_keys(row: Mapping[str, Any], *, capped: bool) -> list[int]:
    """PostgreSQL advisory lock keys a claim of this message (its lead row) holds: its customer's (or,
    without one, its invoice's) messages of its kind, and its number's when a recipient cap counts it."""
    who = f"customer:{row['customer_id']}" if row["customer_id"] else row["invoice_id"]
    keys = [zlib.crc32(f"{row['organization_id']}:{who}:{row['kind']}".encode())]
    if capped:
        keys.append(zlib.crc32(f"recipient:{row['recipient']}".encode()))
    return keys


def ist_day(moment: datetime) -> str:
    return moment.astimezone(IST).date().isoformat()


# The send path's statements, built once: a claim or a settle per message at hundreds of messages a
# second spends its CPU on building SQL otherwise.
_B = sa.bindparam
_TOUCH = messages.update().where(messages.c.id == _B("b_id")).values(updated_at=messages.c.updated_at)
_SELECT_LEADS = sa.select(messages).where(messages.c.id.in_(_B("b_ids", expanding=True)))
_SELECT_MEMBERS = sa.select(messages.c.id, messages.c.message_id, messages.c.status).where(
    sa.or_(messages.c.id.in_(_B("b_ids", expanding=True)), messages.c.message_id.in_(_B("b_leads", expanding=True))))
_ADVISORY_LOCKS = sa.text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")
_STAMP = {"claim_token": _B("b_token"), "claimed_at": _B("b_now"), "claimed_on": _B("b_today"),
          "dag_id": _B("b_dag_id"), "run_id": _B("b_run_id"), "map_index": _B("b_map_index"),
          "try_number": _B("b_try_number"), "attempts": messages.c.attempts + 1, "updated_at": _B("b_now")}
_TAKE = (messages.update().where(messages.c.id.in_(_B("b_rows", expanding=True)), messages.c.status == "planned")
         .values(status="sending", **_STAMP))
_REFUSE = (messages.update().where(messages.c.id.in_(_B("b_rows", expanding=True)), messages.c.status == "planned")
           .values(**{**_STAMP, "status": "skipped", "reason": _B("b_reason"), "error_message": _B("b_error"),
                      "claimed_at": None, "claimed_on": None, "settled_at": _B("b_now")}))
_CADENCE_ROWS = sa.select(
    messages.c.id, messages.c.organization_id, messages.c.kind, messages.c.occasion, messages.c.status,
    messages.c.invoice_number, messages.c.customer_id, messages.c.invoice_id, messages.c.currency_code,
).where(
    messages.c.organization_id.in_(_B("b_orgs", expanding=True)),
    sa.or_(messages.c.customer_id.in_(_B("b_customers", expanding=True)),
           messages.c.invoice_id.in_(_B("b_invoices", expanding=True))),
    messages.c.kind.in_(_B("b_kinds", expanding=True)),
    messages.c.id.not_in(_B("b_groups", expanding=True)),
    sa.or_(messages.c.message_id.is_(None), messages.c.message_id.not_in(_B("b_group_leads", expanding=True))),
    messages.c.status.in_(DELIVERED_OR_MAYBE),
    messages.c.claimed_on > _B("b_cutoff"),
).order_by(messages.c.id)
_CAP_COUNTS = sa.select(messages.c.recipient, sa.func.count()).where(
    messages.c.recipient.in_(_B("b_recipients", expanding=True)),
    messages.c.kind.in_(_B("b_kinds", expanding=True)),
    messages.c.id.not_in(_B("b_ids", expanding=True)),
    messages.c.status.in_(DELIVERED_OR_MAYBE),
    messages.c.claimed_at >= _B("b_since"),
    _is_lead(),  # messages, not the invoices they carry
).group_by(messages.c.recipient)
_OUTCOME = {"status": _B("b_status"), "reason": _B("b_reason"), "error_code": _B("b_code"),
            "error_message": _B("b_error"), "updated_at": _B("b_now")}
_SETTLE = (messages.update().where(_group(_B("b_row")), messages.c.claim_token == _B("b_token"))
           .values(**_OUTCOME, settled_at=_B("b_now"), wamid=sa.func.coalesce(_B("b_wamid"), messages.c.wamid)))
_RELEASE = (messages.update().where(_group(_B("b_row")), messages.c.claim_token == _B("b_token"))
            .values(**_OUTCOME, claim_token=None, claimed_at=None, claimed_on=None, settled_at=None))


class SendLedger:
    """
    The send ledger in its own database (never Airflow's metadata DB).

    .. code-block:: python

        ledger = SendLedger.from_connection("reminder_ledger_default")
        claim = ledger.claim(row_id, RunInfo(...), claim_token, min_days_between=3)
        if claim.claimed:
            ...send...
            ledger.settle(row_id, claim_token, "sent", wamid=wamid)
    """

    def __init__(self, url: str, *, conn_id: str = DEFAULT_CONN_ID, now: Any = utcnow) -> None:
        self.url = url
        self.conn_id = conn_id
        self.now = now
        self.engine = self._create_engine(url)
        self._lock_per_invoice = self.engine.dialect.name == "postgresql"

    @classmethod
    def from_connection(cls, conn_id: str = DEFAULT_CONN_ID, *, migrate: bool = True) -> SendLedger:
        """Open the ledger, check it answers and bring its schema up to date.

        Raises :class:`LedgerUnavailable` naming the connection when the database is unreachable.
        """
        url = ledger_url_from_connection(conn_id)
        ledger = cls(url, conn_id=conn_id)
        try:
            if migrate:
                ledger.migrate()
            else:
                with ledger.engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as exc:
            safe = sa.engine.make_url(url).render_as_string(hide_password=True)
            raise LedgerUnavailable(
                f"the send ledger (connection {conn_id!r}, {safe}) is unreachable: {exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0]}. Nothing was sent."
            ) from exc
        return ledger

    @staticmethod
    def _create_engine(url: str) -> Engine:
        if url.startswith("sqlite"):
            path = sa.engine.make_url(url).database
            if path and path != ":memory:":
                _create_private(Path(path))
            engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

            @sa.event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                cursor = dbapi_conn.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
                cursor.execute("PRAGMA busy_timeout=60000")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

            return engine
        return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)

    # -- schema -------------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply pending migrations; returns the schema version now in force."""
        with self.engine.begin() as conn:
            schema_version.create(conn, checkfirst=True)
            applied = {row[0] for row in conn.execute(sa.select(schema_version.c.version))}
            for version, title, tables in MIGRATIONS:
                if version in applied:
                    continue
                for table in tables:
                    table.create(conn, checkfirst=True)
                conn.execute(schema_version.insert().values(version=version, applied_at=utcnow()))
                log.info("ledger schema migrated to version %d (%s)", version, title)
        return SCHEMA_VERSION

    def reset(self) -> None:
        """Drop everything (tests and ``make demo`` only)."""
        metadata.drop_all(self.engine)
        self.migrate()

    @contextmanager
    def transaction(self, connection: Connection | None = None) -> Iterator[Connection]:
        """A transaction on a connection from the pool, or on ``connection`` (a caller's own, held
        across many short transactions: no pool check-out, liveness ping and reset for each)."""
        if connection is None:
            with self.engine.begin() as conn:
                yield conn
        else:
            with connection.begin():
                yield connection

    def _write(self, what: str, work: Callable[[Connection], _T], connection: Connection | None = None) -> _T:
        """``work`` in one transaction (see :meth:`transaction`), run again when PostgreSQL aborted it to
        break a deadlock with another writer: a multi-row write of another run or task may lock the same
        rows in another order (the physical order of its scan), and the aborted attempt wrote nothing."""
        for attempt in range(1, _ATTEMPTS):
            try:
                with self.transaction(connection) as conn:
                    return work(conn)
            except sa.exc.DBAPIError as error:
                code = getattr(error.orig, "pgcode", None)
                if code not in _RETRYABLE:
                    raise
                log.warning("ledger %s: PostgreSQL aborted it in a %s with another writer (nothing was written); "
                            "trying again (%d of %d)", what, _RETRYABLE[code], attempt + 1, _ATTEMPTS)
                time.sleep(random.uniform(0, 0.05 * attempt))  # two victims of one cycle must not meet again
        with self.transaction(connection) as conn:  # the last attempt: what fails now is the caller's
            return work(conn)

    # -- recording what Zoho says is overdue -----------------------------------------------------

    def record_fetched(
        self, key: SendKey, invoices: Iterable[Mapping[str, Any]], run: RunInfo, *, chunk_size: int = 1000
    ) -> tuple[int, int]:
        """Upsert one row per invoice seen in Zoho for ``key``; retire its rows no longer seen.

        Each invoice mapping is kept as the row's ``source``: pass only what the product needs.
        Rows already ``planned`` or ``skipped`` are re-planned from the fresh data; rows that were
        claimed, sent, failed or are unknown keep their status. Returns (seen, retired).
        """
        seen_at = self.now()
        insert = self._insert()
        seen = 0
        with self.transaction() as conn:
            batch: list[dict[str, Any]] = []
            for inv in invoices:
                batch.append(
                    {
                        "organization_id": key.organization_id,
                        "invoice_id": str(inv["invoice_id"]),
                        "kind": key.kind,
                        "occasion": key.occasion,
                        "invoice_number": inv.get("invoice_number"),
                        "customer_id": inv.get("customer_id"),
                        "customer_name": inv.get("customer_name"),
                        "source": json.dumps(inv, default=str, ensure_ascii=False),
                        "status": "fetched",
                        "seen_run_id": run.run_id,
                        "seen_at": seen_at,
                        "dag_id": run.dag_id,
                        "run_id": run.run_id,
                        "attempts": 0,
                        "created_at": seen_at,
                        "updated_at": seen_at,
                    }
                )
                if len(batch) >= chunk_size:
                    seen += self._upsert_fetched(conn, insert, batch)
                    batch = []
            if batch:
                seen += self._upsert_fetched(conn, insert, batch)
            retired = conn.execute(
                messages.update()
                .where(*_of(key), messages.c.status.in_(("fetched", "planned")), messages.c.seen_at < seen_at)
                .values(status="skipped", reason="no_longer_overdue", updated_at=seen_at)
            ).rowcount
        return seen, retired

    def _insert(self) -> Any:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert

    def _upsert_fetched(self, conn: Connection, insert: Any, rows: list[dict[str, Any]]) -> int:
        stmt = insert(messages)
        # Spelled out: an IN list cannot be expanded inside an executemany statement.
        replannable = sa.or_(*(messages.c.status == s for s in ("fetched", "planned", "skipped")))
        stmt = stmt.on_conflict_do_update(
            index_elements=["organization_id", "invoice_id", "kind", "occasion"],
            set_={
                "source": stmt.excluded.source,
                "invoice_number": stmt.excluded.invoice_number,
                "customer_id": stmt.excluded.customer_id,
                "customer_name": stmt.excluded.customer_name,
                "seen_run_id": stmt.excluded.seen_run_id,
                "seen_at": stmt.excluded.seen_at,
                "updated_at": stmt.excluded.updated_at,
                "status": sa.case((replannable, "fetched"), else_=messages.c.status),
                "reason": sa.case((replannable, None), else_=messages.c.reason),
            },
        )
        conn.execute(stmt, rows)
        return len(rows)

    def rows(
        self, *, key: SendKey | None = None, status: Sequence[str] | None = None, **where: Any
    ) -> list[dict[str, Any]]:
        """Rows of ``key`` matching column equalities (and statuses), oldest first."""
        query = _select(key, status, where)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def iter_rows(
        self, *, key: SendKey | None = None, status: Sequence[str] | None = None, chunk_size: int = 1000, **where: Any
    ) -> Iterator[dict[str, Any]]:
        """Like :meth:`rows`, read ``chunk_size`` rows at a time: memory stays flat at any size.

        Pages by id, each page a short read of its own, so the rows may be updated between pages
        (planning turns the ``fetched`` rows it reads into ``planned`` or ``skipped``).
        """
        last = 0
        while True:
            query = _select(key, status, where).where(messages.c.id > last).limit(chunk_size)
            with self.engine.connect() as conn:
                page = [dict(r._mapping) for r in conn.execute(query)]
            yield from page
            if len(page) < chunk_size:
                return
            last = page[-1]["id"]

    # -- planning -----------------------------------------------------------------------------

    def recently_reminded(self, key: SendKey, *, min_days_between: int, today: str | None = None) -> set[str]:
        """Invoice ids of ``key``'s organization and kind reminded (or possibly) within the cadence window.

        Counted in IST days, over every occasion.
        """
        if min_days_between <= 0:
            return set()
        today = today or ist_day(self.now())
        cutoff = (date.fromisoformat(today) - timedelta(days=min_days_between)).isoformat()
        query = sa.select(messages.c.invoice_id).where(
            messages.c.organization_id == key.organization_id,
            messages.c.kind == key.kind,
            messages.c.status.in_(DELIVERED_OR_MAYBE),
            messages.c.claimed_on > cutoff,
        )
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(query)}

    def stages_reached(self, key: SendKey, invoice_ids: Iterable[str]) -> dict[str, dict[int, date]]:
        """For each invoice, the reminder stages it reached (sent, being sent or maybe sent) and on which day.

        The day is the occasion (the reminder date) of the message that carried the stage, over
        every occasion of ``key``'s organization and kind.
        """
        reached: dict[str, dict[int, date]] = {}
        ids = sorted(set(invoice_ids))
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                query = sa.select(messages.c.invoice_id, messages.c.stage, messages.c.occasion).where(
                    messages.c.organization_id == key.organization_id,
                    messages.c.kind == key.kind,
                    messages.c.invoice_id.in_(ids[start:start + 500]),
                    messages.c.status.in_(DELIVERED_OR_MAYBE),
                    messages.c.stage.is_not(None),
                )
                for invoice_id, stage, occasion in conn.execute(query):
                    day = date.fromisoformat(occasion[:10])
                    stages = reached.setdefault(invoice_id, {})
                    stages[stage] = max(stages.get(stage, day), day)
        return reached

    def customers_messaged(self, key: SendKey, *, since_day: str) -> dict[str, list[tuple[str, str, str | None]]]:
        """The messages of ``key``'s organization and kind claimed after IST day ``since_day`` that the
        cadence counts (sent, sending, unknown), per customer: (claimed on, occasion, currency)."""
        query = sa.select(messages.c.customer_id, messages.c.claimed_on, messages.c.occasion,
                          messages.c.currency_code).where(
            messages.c.organization_id == key.organization_id,
            messages.c.kind == key.kind,
            messages.c.status.in_(DELIVERED_OR_MAYBE),
            messages.c.claimed_on > since_day,
            _is_lead(),
        )
        found: dict[str, list[tuple[str, str, str | None]]] = {}
        with self.engine.connect() as conn:
            for customer_id, claimed_on, occasion, currency in conn.execute(query):
                found.setdefault(str(customer_id), []).append((claimed_on, occasion, currency))
        return found

    def plan_many(self, plans: Sequence[Mapping[str, Any]], skips: Sequence[Mapping[str, Any]]) -> None:
        """``fetched`` rows become ``planned`` (with what will be sent) or ``skipped``, in bulk.

        ``plans`` items: ``id``, ``recipient``, ``phone_masked``, ``template_name``,
        ``template_language``, ``parameters``; ``skips`` items: ``id``, ``reason`` and optional
        ``detail`` and ``phone_masked``. A row that moved on meanwhile (claimed by a concurrent
        run) is left alone.

        Several invoices in one message: every plan of the group names the lead row's id as
        ``message_id`` (the lead row too) and only the lead carries ``parameters`` (the others
        ``None``); ``stage`` and ``currency_code`` are optional on plans and skips.
        """
        planned = [
            {"id": p["id"], "status": "planned", "reason": None, "error_message": None, "recipient": p["recipient"],
             "phone_masked": p["phone_masked"], "template_name": p["template_name"],
             "template_language": p["template_language"],
             "parameters": None if p["parameters"] is None else json.dumps(dict(p["parameters"]), ensure_ascii=False),
             "message_id": p.get("message_id"), "stage": p.get("stage"), "currency_code": p.get("currency_code")}
            for p in plans
        ]
        skipped = [
            {"id": s["id"], "status": "skipped", "reason": s["reason"], "error_message": s.get("detail"),
             "phone_masked": s.get("phone_masked"), "message_id": None, "stage": s.get("stage"),
             "currency_code": s.get("currency_code")}
            for s in skips
        ]
        now = self.now()

        def write(conn: Connection) -> None:
            # In row order: two runs planning one date at once then lock rows in the same order, and wait for
            # each other instead of deadlocking (their grouping may list customers in different orders).
            for rows in (sorted(planned, key=lambda r: r["id"]), sorted(skipped, key=lambda r: r["id"])):
                if not rows:
                    continue
                # A bound parameter may not share a column's name in an UPDATE's SET clause.
                columns = [c for c in rows[0] if c != "id"]
                conn.execute(
                    messages.update()
                    .where(messages.c.id == sa.bindparam("p_id"), _plannable())
                    .values({**{c: sa.bindparam(f"p_{c}") for c in columns}, "updated_at": now}),
                    [{f"p_{c}": v for c, v in row.items()} for row in rows],
                )

        self._write("plan", write)

    def replan_message(self, lead_id: int, stages: Mapping[int, int], dropped: Mapping[int, tuple[str, str]],
                       *, template_name: str, parameters: Mapping[str, str]) -> int | None:
        """Re-plan a ``planned`` message before its claim: the rows in ``stages`` ({row id: stage}) stay in
        it, with new ``template_name`` and ``parameters`` on the new lead row (the smallest id), and the
        rows in ``dropped`` ({row id: (reason, detail)}) are skipped. Returns the lead row's id, or
        ``None`` when a row of the message is no longer ``planned`` (nothing is changed then).
        """
        now = self.now()
        with self.transaction() as conn:
            rows = {r.id: r.status for r in conn.execute(sa.select(messages.c.id, messages.c.status)
                                                         .where(_group(lead_id)))}
            if set(rows) != set(stages) | set(dropped) or set(rows.values()) != {"planned"}:
                return None
            for row_id, (reason, detail) in dropped.items():
                conn.execute(messages.update().where(messages.c.id == row_id).values(
                    status="skipped", reason=reason, error_message=detail, message_id=None, parameters=None,
                    updated_at=now))
            if not stages:
                return None
            lead = min(stages)
            for row_id, stage in stages.items():
                conn.execute(messages.update().where(messages.c.id == row_id).values(
                    message_id=lead, stage=stage, template_name=template_name, updated_at=now,
                    parameters=json.dumps(dict(parameters), ensure_ascii=False) if row_id == lead else None))
        return lead

    def planned_recipients(self, key: SendKey) -> list[tuple[int, str | None]]:
        """(row id, recipient) of every ``planned`` message of ``key`` (its lead row), oldest first: what
        batching needs."""
        query = sa.select(messages.c.id, messages.c.recipient).where(*_of(key), messages.c.status == "planned",
                                                                      _is_lead())
        with self.engine.connect() as conn:
            return [(row_id, recipient) for row_id, recipient in conn.execute(query.order_by(messages.c.id))]

    def store_batches(self, batches: Mapping[int, int]) -> None:
        """Record the batch number of each message (``{lead row id: batch}``, its rows with it), as decided
        by the batching rules."""
        if not batches:
            return
        self._write("batch numbers", lambda conn: conn.execute(
            messages.update().where(_group(sa.bindparam("row_id"))).values(batch=sa.bindparam("batch_no")),
            # In row order, like plan_many: two runs of one date lock the same rows in the same order.
            [{"row_id": row_id, "batch_no": batch} for row_id, batch in sorted(batches.items())],
        ))

    def reopen_unknown(self, key: SendKey) -> int:
        """A person checked the ``unknown`` rows and asked to resend them: back to ``planned``."""
        with self.transaction() as conn:
            return conn.execute(
                messages.update()
                .where(*_of(key), messages.c.status == "unknown")
                .values(status="planned", reason="resend_unknown", updated_at=self.now())
            ).rowcount

    # -- sending ------------------------------------------------------------------------------

    def batch_rows(self, key: SendKey, batch: int) -> list[dict[str, Any]]:
        return self.rows(key=key, batch=batch)

    def mark_interrupted(self, row_ids: Sequence[int], run: RunInfo) -> int:
        """Rows left ``sending`` by an earlier, dead try of this task become ``unknown``.

        Airflow runs one try of a task instance at a time, so a ``sending`` row claimed by an
        earlier try of the same run and map index was interrupted mid-flight: the request may or
        may not have reached Meta.
        """
        if not row_ids:
            return 0
        return self._interrupted(
            messages.c.id.in_(list(row_ids)),
            messages.c.run_id == run.run_id,
            messages.c.map_index == run.map_index,
            messages.c.try_number < (run.try_number or 0),
        )

    def close_dead_claims(self, key: SendKey, *, run_id: str) -> int:
        """After every batch of a run has ended, its leftover ``sending`` rows died in flight."""
        return self._interrupted(*_of(key), messages.c.run_id == run_id)

    def _interrupted(self, *where: Any) -> int:
        now = self.now()
        return self._write("interrupted claims", lambda conn: conn.execute(
            messages.update()
            .where(*where, messages.c.status == "sending")
            .values(
                status="unknown",
                reason="interrupted",
                error_message="the task died while this message was being sent; it may have been delivered",
                updated_at=now,
                settled_at=now,
            )
        ).rowcount)

    def claim(
        self,
        row_id: int,
        run: RunInfo,
        claim_token: str,
        *,
        min_days_between: int = 0,
        recipient_cap: RecipientCap | None = None,
        not_on_whatsapp_days: float = DEFAULT_NOT_ON_WHATSAPP_DAYS,
    ) -> Claim:
        """Atomically take a ``planned`` message for sending, unless a suppression, the cadence or the cap forbids it.

        ``row_id`` is the message's lead row: the message's rows (one per invoice it carries) all
        move to ``sending`` together, and only if every one of them is still ``planned`` (else none
        does: ``taken``). Within the same transaction, checked once for the message: a suppression
        of its number (the customer replied STOP since planning: ``opted_out``; a delivery failed
        as not on WhatsApp within ``not_on_whatsapp_days``: ``not_on_whatsapp``); another message
        to the same customer (or, without a customer, for the same invoice) of the same kind that
        was sent, is being sent or may have been, claimed within ``min_days_between`` IST days
        (``cadence``; a message of the same occasion in another currency does not count); and
        ``recipient_cap.limit`` such messages of its kinds to the same number within the cap's
        window (``recipient_hourly_cap``). A refusal skips every row of the message with that
        reason. PostgreSQL serialises claims of one customer (and of one number, under a cap) with
        advisory locks; SQLite has a single writer.
        """
        return self.claim_many([row_id], run, claim_token, min_days_between=min_days_between,
                               recipient_cap=recipient_cap, not_on_whatsapp_days=not_on_whatsapp_days)[0]

    def claim_many(
        self,
        row_ids: Sequence[int],
        run: RunInfo,
        claim_token: str,
        *,
        min_days_between: int = 0,
        recipient_cap: RecipientCap | None = None,
        not_on_whatsapp_days: float = DEFAULT_NOT_ON_WHATSAPP_DAYS,
        connection: Connection | None = None,
    ) -> list[Claim]:
        """:meth:`claim` for several messages (their lead rows) in one transaction, in their order, under one token.

        The outcome of each is what claiming them one after another would give (a message refused
        for the cadence or the cap by one claimed before it in the list, too): the sender claims a
        message for each of its threads ready to send at once, for a fraction of a transaction each.
        ``connection``: see :meth:`transaction`.
        """
        if not row_ids:
            return []
        limits = {"min_days_between": min_days_between, "recipient_cap": recipient_cap,
                  "not_on_whatsapp_days": not_on_whatsapp_days}
        try:
            return self._write("claim", lambda conn: self._claim_in(conn, row_ids, run, claim_token, **limits),
                               connection)
        except _PartGroup:
            if len(row_ids) == 1:
                return [Claim(False, "taken")]
        # Another writer changed a row between reading and taking it: take them one at a time.
        return [self.claim_many([row_id], run, claim_token, connection=connection, **limits)[0] for row_id in row_ids]

    def _claim_in(self, conn: Connection, ids: Sequence[int], run: RunInfo, claim_token: str, *,
                  min_days_between: int, recipient_cap: RecipientCap | None,
                  not_on_whatsapp_days: float) -> list[Claim]:
        now = self.now()
        today = ist_day(now)
        ids = list(ids)
        if not self._lock_per_invoice:
            # SQLite: write first, so this transaction holds the single writer's lock before it reads.
            conn.execute(_TOUCH, {"b_id": ids[0]})
        leads = {r.id: dict(r._mapping) for r in conn.execute(_SELECT_LEADS, {"b_ids": ids})}

        def capped(row: Mapping[str, Any]) -> bool:
            return recipient_cap is not None and row["kind"] in recipient_cap.kinds

        if self._lock_per_invoice:
            keys = {key for row in leads.values() for key in claim_lock_keys(row, capped=capped(row))}
            # One order for every claim, however many messages it takes: no two claims wait on each other.
            conn.execute(_ADVISORY_LOCKS, {"keys": sorted(keys)})
        members: dict[int, list[tuple[int, str]]] = {row_id: [] for row_id in leads}
        for member_id, message_id, status in conn.execute(_SELECT_MEMBERS, {"b_ids": ids, "b_leads": ids}):
            lead_id = member_id if member_id in members else message_id
            if lead_id in members:
                members[lead_id].append((member_id, status))
        takeable = [row_id for row_id in ids if row_id in leads
                    and all(status == "planned" for _, status in members[row_id])]
        rows = [leads[row_id] for row_id in takeable]
        suppressed = _suppressed_in(conn, [r["recipient"] for r in rows if r["recipient"]], now, not_on_whatsapp_days)
        earlier = self._cadence_rows(conn, rows, today, min_days_between)
        recent = self._cap_counts(conn, [r for r in rows if capped(r)], now, recipient_cap)
        claimed_rows: list[dict[str, Any]] = []
        refusals: dict[int, tuple[str, str]] = {}
        for row in rows:
            refusal = (_suppression_refusal(row, suppressed, not_on_whatsapp_days)
                       or self._cadence(row, earlier, claimed_rows, min_days_between))
            if refusal is None and capped(row):
                assert recipient_cap is not None
                refusal = self._over_cap(row, recent, claimed_rows, recipient_cap)
            if refusal is None:
                claimed_rows.append(row)
            else:
                refusals[row["id"]] = refusal
        # The claim's stamp on every row of each message, refused or not (the audit shows who refused it).
        stamp = {"b_token": claim_token, "b_now": now, "b_today": today, "b_dag_id": run.dag_id,
                 "b_run_id": run.run_id, "b_map_index": run.map_index, "b_try_number": run.try_number}
        to_take = [member for row in claimed_rows for member, _ in members[row["id"]]]
        taken = conn.execute(_TAKE, {**stamp, "b_rows": to_take}).rowcount if to_take else 0
        for lead_id, (reason, message) in refusals.items():
            rows_of = [member for member, _ in members[lead_id]]
            taken += conn.execute(_REFUSE, {**stamp, "b_rows": rows_of, "b_reason": reason,
                                            "b_error": message}).rowcount
        if taken != sum(len(members[row["id"]]) for row in rows):
            raise _PartGroup  # rolls every claim of this transaction back
        out = []
        for row_id in ids:
            if row_id not in leads:
                out.append(Claim(False, "missing"))
            elif row_id in refusals:
                out.append(Claim(False, refusals[row_id][0], leads[row_id]))
            else:
                out.append(Claim(row_id in takeable, None if row_id in takeable else "taken", leads[row_id]))
        return out

    @staticmethod
    def _cadence_rows(conn: Connection, rows: Sequence[Mapping[str, Any]], today: str,
                      min_days_between: int) -> list[dict[str, Any]]:
        """Messages claimed within the cadence for the customers (or invoices without one) of ``rows``."""
        if min_days_between <= 0 or not rows:  # pragma: no mutate - < is the same: a cutoff of today matches no claim
            return []
        cutoff = (date.fromisoformat(today) - timedelta(days=min_days_between)).isoformat()
        groups = [r["id"] for r in rows]
        found = conn.execute(_CADENCE_ROWS, {
            "b_orgs": sorted({r["organization_id"] for r in rows}),
            "b_customers": sorted({r["customer_id"] for r in rows if r["customer_id"]}),
            "b_invoices": sorted({r["invoice_id"] for r in rows if not r["customer_id"]}),
            "b_kinds": sorted({r["kind"] for r in rows}), "b_groups": groups, "b_group_leads": groups,
            "b_cutoff": cutoff,
        })
        return [dict(r._mapping) for r in found]

    @staticmethod
    def _cadence(row: Mapping[str, Any], earlier: Sequence[Mapping[str, Any]], claimed: Sequence[Mapping[str, Any]],
                 min_days_between: int) -> tuple[str, str] | None:
        if min_days_between <= 0:  # pragma: no mutate - < is the same: a cutoff of today matches no claim
            return None

        def same_customer(other: Mapping[str, Any]) -> bool:
            if other["organization_id"] != row["organization_id"] or other["kind"] != row["kind"]:
                return False
            return other["customer_id"] == row["customer_id"] if row["customer_id"] else (
                other["invoice_id"] == row["invoice_id"])

        def other_currency(other: Mapping[str, Any]) -> bool:
            # The same day's statement in another currency is a message of its own, not a repeat.
            return bool(row.get("currency_code")) and other["occasion"] == row["occasion"] and (
                (other["currency_code"] or "") != row["currency_code"])

        for other in [*earlier, *({**c, "status": "sending"} for c in claimed)]:
            if same_customer(other) and not other_currency(other):
                return "cadence", (f"this customer's reminder for {other['occasion']} (with {other['invoice_number']}, "
                                   f"row {other['id']}) is {other['status']}, within {min_days_between} day(s)")
        return None

    @staticmethod
    def _cap_counts(conn: Connection, rows: Sequence[Mapping[str, Any]], now: datetime,
                    cap: RecipientCap | None) -> Counter[str]:
        """Messages of the cap's kinds claimed within its window, by number, for the numbers of ``rows``."""
        if cap is None or not rows:
            return Counter()
        found = conn.execute(_CAP_COUNTS, {"b_recipients": sorted({r["recipient"] for r in rows}),
                                           "b_kinds": list(cap.kinds), "b_ids": [r["id"] for r in rows],
                                           "b_since": now - cap.window})
        return Counter(dict(found.all()))

    @staticmethod
    def _over_cap(row: Mapping[str, Any], recent: Counter[str], claimed: Sequence[Mapping[str, Any]],
                  cap: RecipientCap) -> tuple[str, str] | None:
        count = recent[row["recipient"]] + sum(
            1 for c in claimed if c["recipient"] == row["recipient"] and c["kind"] in cap.kinds)
        if count < cap.limit:
            return None
        window = int(cap.window.total_seconds() // 60)
        return RECIPIENT_CAP, f"{count} message(s) to this number in the last {window} min (cap {cap.limit})"

    def settle(
        self,
        row_id: int,
        claim_token: str,
        status: str,
        *,
        wamid: str | None = None,
        reason: str | None = None,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> bool:
        """Record how a claimed send ended, on every row of the message. Only the claim's holder can settle it."""
        return self.settle_many([{"row_id": row_id, "claim_token": claim_token, "status": status, "wamid": wamid,
                                  "reason": reason, "error_code": error_code, "error_message": error_message}]) >= 1

    def settle_many(self, outcomes: Sequence[Mapping[str, Any]], *, connection: Connection | None = None) -> int:
        """:meth:`settle` for several messages in one transaction: each a mapping of its arguments
        (``row_id``, ``claim_token``, ``status`` and the optional ones). Returns the rows written.
        ``connection``: see :meth:`transaction`."""
        for outcome in outcomes:
            if outcome["status"] not in ("sent", "failed", "unknown", "planned"):
                raise ValueError(f"cannot settle a message as {outcome['status']!r}")
        now = self.now()
        # released: Meta proved nothing was sent, so the cadence is free again
        by_statement: dict[Any, list[dict[str, Any]]] = {_SETTLE: [], _RELEASE: []}
        for outcome in outcomes:
            by_statement[_RELEASE if outcome["status"] == "planned" else _SETTLE].append({
                "b_row": outcome["row_id"], "b_token": outcome["claim_token"], "b_status": outcome["status"],
                "b_reason": outcome.get("reason"), "b_code": outcome.get("error_code"),
                "b_error": outcome.get("error_message"), "b_wamid": outcome.get("wamid"), "b_now": now,
            })

        def write(conn: Connection) -> int:  # every invoice of the message: the claim took them together
            return sum(conn.execute(statement, params if len(params) > 1 else params[0]).rowcount
                       for statement, params in by_statement.items() if params)

        return self._write("settle", write, connection)

    def mark_noted(self, row_ids: Sequence[int]) -> int:
        """Record that a note about these rows' message was written in Zoho Books (never written twice)."""
        if not row_ids:
            return 0
        with self.transaction() as conn:
            return conn.execute(messages.update().where(messages.c.id.in_(list(row_ids)))
                                .values(noted_at=self.now())).rowcount

    # -- accounting ---------------------------------------------------------------------------

    def account(self, key: SendKey, *, run_id: str | None = None) -> dict[str, Any]:
        """Counts for one key: by status, skipped by reason, failed by code.

        With ``run_id``, only what that run did: the rows it claimed (sent, failed, unknown, still
        sending) and the rows it planned or skipped. A re-run of a date already sent counts none of
        the earlier run's messages.
        """
        where = list(_of(key))
        if run_id is not None:
            where.append(sa.or_(
                sa.and_(messages.c.status.in_(_SETTLED_BY_RUN), messages.c.run_id == run_id),
                sa.and_(messages.c.status.not_in(_SETTLED_BY_RUN), messages.c.seen_run_id == run_id),
            ))
        query = (
            sa.select(messages.c.status, messages.c.reason, messages.c.error_code, sa.func.count())
            .where(*where)
            .group_by(messages.c.status, messages.c.reason, messages.c.error_code)
        )
        # A message carrying several invoices is one message: counted by its lead row.
        message_query = (
            sa.select(messages.c.status, sa.func.count()).where(*where, messages.c.status.in_(_SETTLED_BY_RUN + ("planned",)),
                                                                _is_lead())
            .group_by(messages.c.status)
        )
        by_status: Counter[str] = Counter()
        skipped: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        with self.engine.connect() as conn:
            for status, reason, code, count in conn.execute(query):
                by_status[status] += count
                if status == "skipped":
                    skipped[reason or "unspecified"] += count
                elif status == "failed":
                    failed[str(code or reason or "unspecified")] += count
            message_counts = {status: count for status, count in conn.execute(message_query)}
            stage_query = (sa.select(messages.c.stage, sa.func.count())
                           .where(*where, messages.c.status == "sent", messages.c.stage.is_not(None))
                           .group_by(messages.c.stage))
            by_stage = {stage_key(stage): count for stage, count in sorted(conn.execute(stage_query))}
        return {
            "total": sum(by_status.values()),
            "by_status": dict(by_status),
            "skipped_by_reason": dict(skipped),
            "failed_by_code": dict(failed),
            "messages_by_status": message_counts,
            "sent_by_stage": by_stage,  # invoices reminded, by the stage each reached ("-3", "0", "+7", "+45")
        }

    def dispose(self) -> None:
        self.engine.dispose()
