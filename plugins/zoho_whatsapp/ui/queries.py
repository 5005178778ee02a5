"""What the audit page shows, read from the send ledger with a few indexed, grouped queries.

One organization and a range of IST days at a time (the :class:`Scope`). Reminder rows are dated
by their ``occasion`` (the reminder date) and found through ``ix_messages_batch`` (organization,
kind, occasion); alert rows by the IST day they were recorded (``ix_messages_audit_day``).
Counting happens in the database; Python sums only the balances of the reminders sent, read from
the Zoho row kept in ``source`` with the database's own JSON functions (the page never loads a
whole row), and applies the rules of :mod:`zoho_whatsapp.ui.receivables`.

Delivery receipts, replies and opt-outs exist once the ledger has migration 3 (WhatsApp's
webhooks): the live schema is looked at first; what is missing reads ``None`` and shows "—".
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any, NamedTuple
from urllib.parse import quote
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from zoho_whatsapp.ledger.schema import audit_amounts, messages
from zoho_whatsapp.ui import receivables
from zoho_whatsapp.ui.privacy import scrub

IST = ZoneInfo("Asia/Kolkata")
REMINDER = "payment_reminder"
PAYMENT_RECEIVED = "payment_received"
REMINDER_KINDS = (REMINDER,)
ALERT_KINDS = ("invoice_created", PAYMENT_RECEIVED)
ALL_KINDS = REMINDER_KINDS + ALERT_KINDS
PAID_REASONS = ("no_longer_overdue", "paid_since_fetch")  # a row retired because Zoho no longer lists it as owed
ATTEMPTED = ("sending", "sent", "failed", "unknown")
OPEN = ("fetched", "planned", "sending")
# The ledger records the claim's dag_id, run_id and map_index, not its task: the send task per kind.
SEND_TASK = {REMINDER: "send_reminders", "invoice_created": "send_alert", PAYMENT_RECEIVED: "send_alert"}
MAX_LIST = 200
ATTENTION_LIST = 50  # of each kind on the first screen (the totals say how many in all)
DELIVERY_COLUMNS = ("delivery_status", "delivered_at", "read_at", "failed_at", "delivery_error_code",
                    "delivery_error_class")
REPLIES = "whatsapp_replies"
AUDIT_AMOUNTS = "audit_amounts"
log = logging.getLogger(__name__)


class Reminded(NamedTuple):
    """A reminder sent: what the ageing and the collections need of it."""

    id: int
    invoice_id: str
    occasion: str
    days: int | None  # past due on the reminder's day
    currency: str | None
    milli: int | None  # the balance in thousandths


class Evidence(NamedTuple):
    """What later runs and webhooks say about payment (see :meth:`AuditQueries.payment_evidence`)."""

    last_seen: dict[str, tuple[str | None, str | None]]
    run_days: list[str]
    payments: dict[str, list[tuple[str, Decimal | None]]]


class _DayCounter:
    """Days between two ISO dates, each distinct date parsed once (a period has few)."""

    def __init__(self) -> None:
        self._dates: dict[str, date | None] = {}

    def _date(self, text: Any) -> date | None:
        key = str(text)[:10] if text else ""
        if key not in self._dates:
            try:
                self._dates[key] = date.fromisoformat(key)
            except ValueError:
                self._dates[key] = None
        return self._dates[key]

    def __call__(self, later: Any, earlier: Any) -> int | None:
        a, b = self._date(later), self._date(earlier)
        return (a - b).days if a and b else None


@dataclass(frozen=True)
class Scope:
    """What the page looks at: one organization, IST days ``start``..``end``, maybe one DAG or run."""

    organization_id: str
    start: date
    end: date
    kinds: tuple[str, ...] = ALL_KINDS
    dag_id: str | None = None
    run_id: str | None = None

    @property
    def reminder_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in self.kinds if k in REMINDER_KINDS)

    @property
    def alert_kinds(self) -> tuple[str, ...]:
        return tuple(k for k in self.kinds if k not in REMINDER_KINDS)

    def as_dict(self) -> dict[str, Any]:
        return {"organization_id": self.organization_id, "from": self.start.isoformat(), "to": self.end.isoformat(),
                "kinds": list(self.kinds), "dag_id": self.dag_id, "run_id": self.run_id}


@dataclass(frozen=True)
class Shape:
    """The ledger's live schema: the columns of ``messages`` and of the other tables that exist."""

    columns: frozenset[str]
    tables: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def has(self, column: str) -> bool:
        return column in self.columns

    @property
    def receipts(self) -> bool:
        """Delivery receipts are recorded (WhatsApp's status webhooks, ledger migration 3)."""
        return self.has("delivery_status")

    @property
    def replies(self) -> bool:
        return REPLIES in self.tables


def probe(engine: Engine) -> Shape:
    inspector = sa.inspect(engine)
    tables = {name: frozenset(c["name"] for c in inspector.get_columns(name)) for name in inspector.get_table_names()}
    return Shape(columns=tables.get("messages", frozenset()), tables=tables)


def ist_midnight_utc(day: date) -> datetime:
    return datetime.combine(day, dtime(0), IST).astimezone(UTC)


def today_ist() -> date:
    return datetime.now(IST).date()


def airflow_links(base: str, row: Mapping[str, Any]) -> dict[str, str | None]:
    """Where the row's DAG run and send task instance are in the Airflow 3 UI (``base``: its root path).

    >>> airflow_links("", {"dag_id": "d", "run_id": "manual__1", "kind": "payment_reminder",
    ...                    "status": "sent", "map_index": 2})["task"]
    '/dags/d/runs/manual__1/tasks/send_reminders/mapped/2'
    """
    dag_id, run_id = row.get("dag_id"), row.get("run_id")
    if not dag_id or not run_id:
        return {"run": None, "task": None}
    run = f"{base}/dags/{quote(str(dag_id), safe='')}/runs/{quote(str(run_id), safe='')}"
    task = None
    if row.get("status") in ATTEMPTED and row.get("map_index") is not None and row.get("kind") in SEND_TASK:
        task = f"{run}/tasks/{SEND_TASK[str(row['kind'])]}"
        if int(row["map_index"]) >= 0:
            task += f"/mapped/{int(row['map_index'])}"
    return {"run": run, "task": task}


def error_help(code: Any) -> dict[str, str | None]:
    """The WhatsApp error family of Meta's ``code`` and the fix a person can follow (whatsapp/errors.py)."""
    try:
        from zoho_whatsapp.whatsapp.errors import error_for

        family = error_for(int(code) if code is not None else None)
    except (ImportError, ValueError, TypeError):
        return {"error_class": None, "fix": None}
    fix_for = getattr(family, "fix_for", None)
    fix = fix_for() if callable(fix_for) else getattr(family, "fix", None)
    return {"error_class": family.__name__, "fix": fix or None}


class AuditQueries:
    """Read-only questions the audit page asks the ledger.

    .. code-block:: python

        q = AuditQueries(SendLedger.from_connection(migrate=False).engine)
        q.summary(Scope("60001234", date(2026, 11, 1), date(2026, 11, 30)))
    """

    def __init__(self, engine: Engine, *, shape: Shape | None = None, airflow_base: str = "") -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.shape = shape or probe(engine)
        self.airflow_base = airflow_base.rstrip("/")

    # -- building blocks ------------------------------------------------------------------------

    def _col(self, name: str) -> Any:
        """A column of ``messages``, or NULL when the live ledger lacks it (the page shows "—")."""
        if not self.shape.has(name):
            return sa.null()
        return messages.c[name] if name in messages.c else sa.literal_column(f"messages.{name}")

    def _ist_day(self, column: Any) -> Any:
        if self.dialect == "sqlite":  # stored as UTC text; IST is UTC+05:30 all year
            return sa.func.date(column, "+330 minutes")
        return sa.func.to_char(sa.func.timezone("Asia/Kolkata", column), "YYYY-MM-DD")

    def _tuples(self, conn: Any, query: Any) -> list[tuple[Any, ...]]:
        """All rows of ``query`` as plain tuples from the driver: for the page's few large reads (tens of
        thousands of rows), where building SQLAlchemy rows would cost more than the query. Only for
        queries whose parameters and columns are plain strings and numbers (no dates to convert)."""
        compiled = query.compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.construct_params()
        if any(isinstance(v, date | datetime) for v in params.values()):
            return [tuple(r) for r in conn.execute(query)]
        cursor = conn.connection.driver_connection.cursor()
        try:
            cursor.execute(str(compiled), [params[n] for n in compiled.positiontup] if compiled.positional else params)
            return cursor.fetchall()
        finally:
            cursor.close()

    def _json(self, column: Any, key: str) -> Any:
        if self.dialect == "sqlite":
            return sa.func.json_extract(column, f"$.{key}")
        return sa.func.json_extract_path_text(sa.cast(column, sa.JSON), key)

    def _scoped(self, query: Any, scope: Scope, kinds: Sequence[str], start: date | None = None,
                end: date | None = None) -> Any:
        """``query`` limited to the organization, ``kinds`` (all reminders or all alerts), the IST days
        (the scope's unless given) and the scope's DAG or run."""
        start, end = start or scope.start, end or scope.end
        query = query.where(messages.c.organization_id == scope.organization_id, messages.c.kind.in_(tuple(kinds)))
        if all(k in REMINDER_KINDS for k in kinds):
            query = query.where(messages.c.occasion.between(start.isoformat(), end.isoformat()))
        else:
            query = query.where(messages.c.created_at >= ist_midnight_utc(start),
                                messages.c.created_at < ist_midnight_utc(end + timedelta(days=1)))
        if scope.dag_id:
            query = query.where(messages.c.dag_id == scope.dag_id)
        if scope.run_id:
            query = query.where(messages.c.run_id == scope.run_id)
        return query

    def _one_row_per_message(self) -> list[Any]:
        """A message carrying several invoices (ledger migration 5) is counted once, on its lead row;
        skips stay per invoice."""
        if not self.shape.has("message_id"):
            return []
        return [sa.or_(messages.c.status.not_in(ATTEMPTED), messages.c.message_id.is_(None),
                       messages.c.message_id == messages.c.id)]

    def _families(self, scope: Scope) -> list[tuple[str, tuple[str, ...], Any]]:
        """(family, kinds, day expression) for the reminder rows and the alert rows of the scope."""
        parts = []
        if scope.reminder_kinds:
            parts.append(("reminders", scope.reminder_kinds, messages.c.occasion))
        if scope.alert_kinds:
            parts.append(("alerts", scope.alert_kinds, self._ist_day(messages.c.created_at)))
        return parts

    # -- what there is to choose from -------------------------------------------------------------

    def organizations(self) -> list[str]:
        """Every organization in the ledger, by skipping along the (organization, ...) index."""
        if not self.shape.columns:
            return []
        walk = sa.text(
            "WITH RECURSIVE orgs(org) AS ("
            " SELECT MIN(organization_id) FROM messages"
            " UNION ALL"
            " SELECT (SELECT MIN(m.organization_id) FROM messages m WHERE m.organization_id > orgs.org)"
            " FROM orgs WHERE orgs.org IS NOT NULL)"
            " SELECT org FROM orgs WHERE org IS NOT NULL LIMIT 100"
        )
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(walk)]

    def latest_organization(self) -> str | None:
        if not self.shape.columns:
            return None
        with self.engine.connect() as conn:
            return conn.execute(sa.select(messages.c.organization_id).order_by(messages.c.id.desc()).limit(1)).scalar()

    def run_scope(self, dag_id: str | None, run_id: str) -> Scope | None:
        """The organization and IST days of the rows a DAG run recorded or claimed (the run's tab)."""
        if not self.shape.columns:
            return None
        query = (
            sa.select(messages.c.organization_id, messages.c.kind, sa.func.min(messages.c.occasion),
                      sa.func.max(messages.c.occasion), sa.func.min(self._ist_day(messages.c.created_at)),
                      sa.func.max(self._ist_day(messages.c.created_at)))
            .where(messages.c.run_id == run_id)
            .group_by(messages.c.organization_id, messages.c.kind)
        )
        if dag_id:
            query = query.where(messages.c.dag_id == dag_id)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            return None
        days: list[str] = []
        for _org, kind, first_occ, last_occ, first_day, last_day in rows:
            days += [first_occ, last_occ] if kind in REMINDER_KINDS else [first_day, last_day]
        kinds = tuple(k for k in ALL_KINDS if k in {r[1] for r in rows}) or ALL_KINDS
        return Scope(rows[0][0], date.fromisoformat(min(days)), date.fromisoformat(max(days)), kinds,
                     dag_id=dag_id, run_id=run_id)

    # -- per day ------------------------------------------------------------------------------

    def daily(self, scope: Scope) -> dict[str, Any]:
        """Per IST day and family (reminders, alerts): sent, delivered, read, failed by code, skipped by
        reason, unknown, still open; and the totals of the scope."""
        delivery = self._col("delivery_status")
        late_code = self._col("delivery_error_code")
        group = [messages.c.status, messages.c.reason, messages.c.error_code]
        if self.shape.receipts:
            group += [delivery, late_code]
        days: dict[str, dict[str, dict[str, Any]]] = {}
        totals = {"reminders": _counts(self.shape), "alerts": _counts(self.shape)}
        for family, kinds, day in self._families(scope):
            query = sa.select(day.label("day"), messages.c.status, messages.c.reason, messages.c.error_code,
                              delivery.label("delivery"), late_code.label("late_code"), sa.func.count().label("n"))
            query = self._scoped(query, scope, kinds).where(*self._one_row_per_message()).group_by(day, *group)
            with self.engine.connect() as conn:
                for row in conn.execute(query):
                    counts = days.setdefault(row.day, {}).setdefault(family, _counts(self.shape))
                    _add(counts, row)
                    _add(totals[family], row)
        out = [{"day": d, "reminders": days.get(d, {}).get("reminders") or _counts(self.shape),
                "alerts": days.get(d, {}).get("alerts") or _counts(self.shape)}
               for d in _each_day(scope.start, scope.end)]
        return {"days": out, "totals": totals, "receipts": self.shape.receipts}

    # -- the receivables reminded ----------------------------------------------------------------

    def _source(self) -> tuple[Any, Any, Any, Any]:
        """(FROM clause, due date, balance, currency) of the Zoho row in ``source``, parsed once per row."""
        if self.dialect == "sqlite":
            field = lambda key: sa.func.json_extract(messages.c.source, f"$.{key}")  # noqa: E731
            return messages, field("due_date"), field("balance"), field("currency_code")
        src = (sa.func.json_to_record(sa.cast(messages.c.source, sa.JSON))
               .table_valued(sa.column("due_date", sa.Text), sa.column("balance", sa.Text),
                             sa.column("currency_code", sa.Text))
               .render_derived(name="src", with_types=True).lateral())
        return messages.join(src, sa.true()), src.c.due_date, src.c.balance, src.c.currency_code

    def reminded(self, scope: Scope) -> list[Reminded]:
        """Every reminder sent in the scope, with the due date, balance and currency of its Zoho row.

        Those three come from ``audit_amounts``, the page's copy of what it first read in each row's
        ``source`` JSON (the balance the page saw the day it first showed the reminder; a later
        re-run of the same date rewrites ``source`` with what Zoho says then). Only reminders never
        shown before are parsed, and remembered: the rest is read from the index and that table.
        """
        if not scope.reminder_kinds:
            return []
        cached = AUDIT_AMOUNTS in self.shape.tables
        cols = [messages.c.id, messages.c.invoice_id, messages.c.occasion]
        if cached:
            due = audit_amounts.c.due_date
            if self.dialect == "sqlite":
                days = sa.cast(sa.func.julianday(messages.c.occasion) - sa.func.julianday(due), sa.Integer)
            else:
                days = sa.case((due.op("~")(r"^\d{4}-\d{2}-\d{2}$"),
                                sa.cast(messages.c.occasion, sa.Date) - sa.cast(due, sa.Date)))
            query = sa.select(*cols, days, audit_amounts.c.currency_code, audit_amounts.c.balance_milli,
                              audit_amounts.c.message_id).select_from(
                messages.outerjoin(audit_amounts, audit_amounts.c.message_id == messages.c.id))
        else:
            query = sa.select(*cols, *(sa.null() for _ in range(4)))
        with self.engine.connect() as conn:
            rows = self._tuples(conn, self._scoped(query.where(messages.c.status == "sent"), scope,
                                                   scope.reminder_kinds))
        fresh = self._read_amounts([r[0] for r in rows if r[6] is None])  # never read before
        if cached and fresh:
            self._remember(fresh)
        counter = _DayCounter()
        out = []
        for r in rows:
            if r[6] is None and r[0] in fresh:
                due_date, milli, currency = fresh[r[0]]
                out.append(Reminded(r[0], r[1], r[2], counter(r[2], due_date), currency, milli))
            else:
                out.append(Reminded(*r[:6]))
        return out

    def _read_amounts(self, ids: Sequence[int]) -> dict[int, tuple[Any, Any, Any]]:
        """(due date, balance in thousandths, currency) from the ``source`` JSON of the rows ``ids``."""
        source, due, balance, currency = self._source()
        if self.dialect == "sqlite":
            milli = sa.cast(sa.func.round(sa.cast(balance, sa.Float) * 1000), sa.Integer)
        else:  # a malformed balance reads as missing rather than failing the page
            milli = sa.case((balance.op("~")(r"^-?\d+(\.\d+)?$"),
                             sa.cast(sa.func.round(sa.cast(balance, sa.Numeric) * 1000), sa.BigInteger)))
        found: dict[int, tuple[Any, Any, Any]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                query = sa.select(messages.c.id, sa.func.substr(due, 1, 10), milli, currency).select_from(source).where(
                    messages.c.id.in_(ids[i:i + 900]))
                found.update({r[0]: (r[1], r[2], r[3]) for r in conn.execute(query)})
        return found

    def _remember(self, amounts: Mapping[int, tuple[Any, Any, Any]]) -> None:
        """Keep what was read for the next view; skipped (not an error) when the ledger is busy or read-only."""
        now = datetime.now(UTC)
        rows = [{"message_id": k, "due_date": v[0], "balance_milli": v[1], "currency_code": v[2], "read_at": now}
                for k, v in amounts.items()]
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(audit_amounts)
        stmt = stmt.on_conflict_do_update(index_elements=["message_id"], set_={
            c: stmt.excluded[c] for c in ("due_date", "balance_milli", "currency_code", "read_at")})
        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection
            if self.dialect == "sqlite":  # never hold the page while a run writes: try again next view
                raw.execute("PRAGMA busy_timeout=200")
            try:
                with conn.begin():
                    for i in range(0, len(rows), 2000):
                        conn.execute(stmt, rows[i:i + 2000])
            except sa.exc.SQLAlchemyError as exc:
                log.info("audit page: could not keep %d amounts read (%s); reading them again next time",
                         len(rows), exc.__class__.__name__)
            finally:
                if self.dialect == "sqlite":
                    raw.execute("PRAGMA busy_timeout=60000")

    def payment_evidence(self, scope: Scope) -> Evidence:
        """What later runs and webhooks say about payment (independent of the reminders: read side by side).

        Per invoice, the last date a run listed it and the first date a row of it was retired as
        paid; the dates runs happened; the ``payment_received`` webhooks. Up to 14 days after the scope.
        """
        horizon = scope.end + timedelta(days=max(receivables.COLLECTION_DAYS))
        whole = replace(scope, run_id=None, dag_id=None)  # a payment is seen by whichever run comes next
        retired = sa.case(
            (sa.and_(messages.c.status == "skipped", messages.c.reason.in_(PAID_REASONS)), messages.c.occasion))
        seen_query = self._scoped(
            sa.select(messages.c.invoice_id, sa.func.max(messages.c.occasion), sa.func.min(retired)),
            whole, REMINDER_KINDS, scope.start, horizon).group_by(messages.c.invoice_id)
        days_query = self._scoped(sa.select(messages.c.occasion).distinct(), whole, REMINDER_KINDS, scope.start, horizon)
        pay_query = self._scoped(
            sa.select(messages.c.invoice_id, self._ist_day(messages.c.created_at),
                      self._json(messages.c.source, "amount_applied")),
            whole, (PAYMENT_RECEIVED,), scope.start, horizon)
        payments: dict[str, list[tuple[str, Decimal | None]]] = defaultdict(list)
        with self.engine.connect() as conn:
            last_seen = {r[0]: (r[1], r[2]) for r in self._tuples(conn, seen_query)}
            run_days = sorted(r[0] for r in conn.execute(days_query))
            for invoice_id, day, amount in conn.execute(pay_query):
                payments[invoice_id].append((day, receivables.amount_of(amount)))
        return Evidence(last_seen, run_days, payments)

    def collections(self, scope: Scope, reminded: Sequence[Reminded], evidence: Evidence | None = None) -> dict[str, Any]:
        """What was paid within 7 and 14 days of the scope's reminders (see :mod:`receivables`)."""
        if not reminded:
            return receivables.collections([], {}, reminded_invoices=0, as_of=None)
        last_seen, run_days, payments = evidence or self.payment_evidence(scope)
        keys = [(r[1], r[2]) for r in reminded]  # (invoice_id, occasion), by position: attributes are slower
        paid = receivables.paid_after_reminders(keys, last_seen=last_seen, run_days=run_days, payments=payments)
        wanted = {(p.invoice_id, p.reminded_on) for p in paid}
        chosen = {r.id: r for r in reminded if (r.invoice_id, r.occasion) in wanted}
        names = self._names(chosen)
        rows = {(r.invoice_id, r.occasion): {**names.get(r.id, {}), "currency_code": r.currency,
                                             "balance": None if r.milli is None else Decimal(int(r.milli)) / 1000}
                for r in chosen.values()}
        return receivables.collections(paid, rows, reminded_invoices=len({k[0] for k in keys}),
                                       as_of=run_days[-1] if run_days else None)

    def _names(self, rows: Mapping[int, Reminded]) -> dict[int, dict[str, Any]]:
        """Invoice number and customer of the rows (by id): read for the few the page lists."""
        ids = sorted(rows)
        found: dict[int, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 900):
                query = sa.select(messages.c.id, messages.c.invoice_number, messages.c.customer_id,
                                  messages.c.customer_name).where(messages.c.id.in_(ids[i:i + 900]))
                found.update({r[0]: dict(r._mapping) for r in conn.execute(query)})
        return found

    # -- rows a person reads ----------------------------------------------------------------------

    def _row_columns(self) -> list[Any]:
        cols = [messages.c[c] for c in (
            "id", "kind", "occasion", "invoice_id", "invoice_number", "customer_id", "customer_name",
            "phone_masked", "template_name", "parameters", "status", "reason", "error_code", "error_message",
            "attempts", "dag_id", "run_id", "map_index", "created_at", "claimed_at")]
        return cols + [self._col(c).label(c) for c in DELIVERY_COLUMNS]

    def present(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A ledger row as the page shows it: masked, without the recipient, the source or the wamid
        (a wamid encodes the recipient's number)."""
        try:
            params = json.loads(row["parameters"] or "{}")
        except (TypeError, ValueError):
            params = {}
        moment = row.get("claimed_at") or row.get("created_at")
        late = row.get("delivery_status") == "failed"
        out = {
            "id": row["id"], "kind": row["kind"],
            "occasion": row["occasion"] if row["kind"] in REMINDER_KINDS else None,
            "day": _ist_date(moment), "at": _iso(moment),
            "invoice_number": row["invoice_number"], "customer_id": row["customer_id"],
            "customer_name": row["customer_name"], "phone": row["phone_masked"], "template": row["template_name"],
            "amount": params.get("amount_due") or params.get("amount_received") or params.get("invoice_amount"),
            "status": row["status"], "reason": row["reason"],
            "error_code": row.get("delivery_error_code") if late else row["error_code"],
            "error": scrub(row["error_message"]), "attempts": row["attempts"],
            "dag_id": row["dag_id"], "run_id": row["run_id"], "map_index": row["map_index"],
            "delivery": ({"status": row.get("delivery_status"), "delivered_at": _iso(row.get("delivered_at")),
                          "read_at": _iso(row.get("read_at")), "failed_at": _iso(row.get("failed_at"))}
                         if self.shape.receipts else None),
            "links": airflow_links(self.airflow_base, row),
        }
        if row["status"] == "failed" or late:
            out.update(error_help(out["error_code"]))
            if late and row.get("delivery_error_class"):
                out["error_class"] = row["delivery_error_class"]
        return out

    def rows(self, scope: Scope, *, where: Sequence[Any] = (), limit: int = MAX_LIST,
             count: bool = True) -> tuple[list[dict[str, Any]], int | None]:
        """The newest rows of the scope that match ``where``, presented, and how many match in all
        (``None`` unless ``count``: the summary takes its totals from the per-day counts)."""
        found: list[dict[str, Any]] = []
        total: int | None = 0 if count else None
        for family, kinds, _day in self._families(scope):
            # Newest first in the order of the index the rows are found by: the scan stops at ``limit``.
            newest = messages.c.occasion if family == "reminders" else messages.c.created_at
            query = self._scoped(sa.select(*self._row_columns()).where(*where), scope, kinds)
            count_query = self._scoped(sa.select(sa.func.count()).select_from(messages).where(*where), scope, kinds)
            with self.engine.connect() as conn:
                found += [dict(r._mapping) for r in conn.execute(
                    query.order_by(newest.desc(), messages.c.id.desc()).limit(limit))]
                if total is not None:
                    total += conn.execute(count_query).scalar() or 0
        found.sort(key=lambda r: (_iso(r["claimed_at"] or r["created_at"]) or "", r["id"]), reverse=True)
        return [self.present(r) for r in found[:limit]], total

    def attention(self, scope: Scope, *, count: bool = True) -> dict[str, Any]:
        """What needs a person: ``unknown`` sends, failures (with their fix), replies and opt-outs (the
        newest of each; ``count``: how many in all, which the summary takes from the per-day counts)."""
        unknown, unknown_total = self.rows(scope, where=[messages.c.status == "unknown"], limit=ATTENTION_LIST,
                                           count=count)
        failed_where = messages.c.status == "failed"
        if self.shape.receipts:  # accepted by Meta, then reported failed by a status webhook
            failed_where = sa.or_(failed_where, sa.and_(messages.c.status == "sent",
                                                        self._col("delivery_status") == "failed"))
        failed, failed_total = self.rows(scope, where=[failed_where], limit=ATTENTION_LIST, count=count)
        replies = self.replies(scope, opt_outs=False, limit=ATTENTION_LIST)
        opt_outs = self.replies(scope, opt_outs=True, limit=ATTENTION_LIST)
        return {
            "unknown": unknown, "unknown_total": unknown_total, "failed": failed, "failed_total": failed_total,
            "replies": replies["rows"], "replies_total": replies["total"],
            "opt_outs": opt_outs["rows"], "opt_outs_total": opt_outs["total"], "replies_recorded": self.shape.replies,
        }

    # -- replies and opt-outs (WhatsApp's inbound messages, ledger migration 3) ---------------------

    def replies(self, scope: Scope, *, opt_outs: bool | None = None, customer_id: str | None = None,
                limit: int = MAX_LIST) -> dict[str, Any]:
        """Customers' replies in the scope: conversations (``opt_outs=False``), STOP/START (``True``) or all."""
        if not self.shape.replies:
            return {"rows": [], "total": None}
        replies = sa.table(REPLIES, *(sa.column(c) for c in (
            "id", "phone_masked", "message_type", "text", "consent_action", "sent_at", "organization_id",
            "customer_id", "customer_name", "invoice_number")))
        where = [sa.or_(replies.c.organization_id == scope.organization_id, replies.c.organization_id.is_(None)),
                 replies.c.sent_at >= ist_midnight_utc(scope.start),
                 replies.c.sent_at < ist_midnight_utc(scope.end + timedelta(days=1))]
        if opt_outs is not None:
            where.append(replies.c.consent_action.isnot(None) if opt_outs else replies.c.consent_action.is_(None))
        if customer_id:
            where.append(replies.c.customer_id == customer_id)
        query = sa.select(replies).where(*where).order_by(replies.c.sent_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            total = conn.execute(sa.select(sa.func.count()).select_from(replies).where(*where)).scalar() or 0
        return {"rows": [_present_reply(r) for r in rows], "total": total}

    # -- customers --------------------------------------------------------------------------------

    def customers(self, scope: Scope, search: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Customers messaged in the scope (most messages first), optionally whose name contains ``search``.

        Counted from the index, with each customer's newest row; names are read from those rows only.
        """
        counts: dict[str, int] = defaultdict(int)
        newest: dict[str, int] = {}
        for _family, kinds, _day in self._families(scope):
            query = sa.select(messages.c.customer_id, sa.func.count(), sa.func.max(messages.c.id)).where(
                messages.c.status.in_(ATTEMPTED), messages.c.customer_id.isnot(None), *self._one_row_per_message())
            if search:
                query = query.where(sa.func.lower(messages.c.customer_name).contains(search.lower(), autoescape=True))
            with self.engine.connect() as conn:
                for cid, n, row_id in conn.execute(self._scoped(query, scope, kinds).group_by(messages.c.customer_id)):
                    counts[cid] += n
                    newest[cid] = max(newest.get(cid, 0), row_id)
        top = sorted(counts, key=lambda c: -counts[c])[:limit]
        with self.engine.connect() as conn:
            names = {r[0]: r[1] for r in conn.execute(sa.select(messages.c.customer_id, messages.c.customer_name).where(
                messages.c.id.in_([newest[c] for c in top])))} if top else {}
        found = [{"customer_id": c, "customer_name": names.get(c), "messages": counts[c]} for c in top]
        return sorted(found, key=lambda c: (-c["messages"], c["customer_name"] or ""))

    def timeline(self, scope: Scope, customer_id: str) -> dict[str, Any]:
        """One customer's messages (invoice, amount, statuses, links), replies and opt-outs, newest first.

        Rows skipped by the cadence (already reminded within the last few days) are counted, not listed.
        """
        where = [messages.c.customer_id == customer_id]
        rows, total = self.rows(scope, where=where, limit=500)
        listed = [r for r in rows if r["reason"] != "cadence"]
        name = next((r["customer_name"] for r in rows if r["customer_name"]), None)
        replies = self.replies(scope, customer_id=customer_id)
        events = [{"type": "message", **r} for r in listed]
        events += [{"type": "opt_out" if r["consent_action"] else "reply", **r} for r in replies["rows"]]
        events.sort(key=lambda e: e.get("at") or "", reverse=True)
        return {"customer_id": customer_id, "customer_name": name, "rows_total": total,
                "cadence_skips": len(rows) - len(listed), "events": events, "replies_recorded": self.shape.replies}

    # -- the page's first screen ------------------------------------------------------------------

    def summary(self, scope: Scope) -> dict[str, Any]:
        """Everything the page's first screen shows, with how long each part took (ms).

        The parts are independent reads: they run side by side, each on its own connection.
        """
        timings: dict[str, float] = {}

        def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = fn(*args, **kwargs)
            timings[name] = round((time.perf_counter() - started) * 1000, 1)
            return result

        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="audit") as pool:
            evidence = pool.submit(timed, "evidence", self.payment_evidence, scope)

            def money() -> tuple[list[dict[str, Any]], dict[str, Any]]:
                reminded = timed("reminded", self.reminded, scope)
                ageing = timed("ageing", receivables.ageing, ((r.days, r.currency, 1, r.milli) for r in reminded))
                return ageing, timed("collections", self.collections, scope, reminded, evidence.result())

            parts = {
                "money": pool.submit(money),
                "daily": pool.submit(timed, "daily", self.daily, scope),
                "attention": pool.submit(timed, "attention", self.attention, scope, count=False),
                "messages": pool.submit(timed, "messages", self.rows, scope,
                                        where=[messages.c.status.in_(ATTEMPTED)], limit=100, count=False),
                "customers": pool.submit(timed, "customers", self.customers, scope),
            }
            done = {name: future.result() for name, future in parts.items()}
        (ageing, collections), (latest, _) = done["money"], done["messages"]
        totals = [done["daily"]["totals"][family] for family, _kinds, _day in self._families(scope)]
        attention = {**done["attention"], "unknown_total": sum(t["unknown"] for t in totals),
                     "failed_total": sum(t["failed"] for t in totals)}
        latest_total = sum(t["sent"] + t["failed"] - t["failed_late"] + t["unknown"] + t["sending"] for t in totals)
        return {
            "scope": scope.as_dict(),
            "daily": done["daily"],
            "ageing": ageing,
            "collections": collections,
            "attention": attention,
            "messages": latest,
            "messages_total": latest_total,
            "customers": done["customers"],
            "receipts": self.shape.receipts,
            "replies_recorded": self.shape.replies,
            "timings_ms": timings,
        }


def _counts(shape: Shape) -> dict[str, Any]:
    receipts = 0 if shape.receipts else None
    return {"sent": 0, "delivered": receipts, "read": receipts, "failed": 0, "failed_late": 0, "failed_by_code": {},
            "skipped": 0, "skipped_by_reason": {}, "unknown": 0, "sending": 0, "open": 0, "total": 0}


def _bump(table: dict[str, int], key: Any, n: int) -> None:
    table[str(key or "unspecified")] = table.get(str(key or "unspecified"), 0) + n


def _add(counts: dict[str, Any], row: Any) -> None:
    """Add one grouped row (status, reason, error code, delivery status, late code, count) to ``counts``."""
    n = int(row.n)
    counts["total"] += n
    if row.status == "sent":
        counts["sent"] += n
        if counts["delivered"] is not None and row.delivery in ("delivered", "read"):
            counts["delivered"] += n
            counts["read"] += n if row.delivery == "read" else 0
        if row.delivery == "failed":  # accepted by Meta, then reported failed by a status webhook
            counts["failed"] += n
            counts["failed_late"] += n
            _bump(counts["failed_by_code"], row.late_code, n)
    elif row.status == "failed":
        counts["failed"] += n
        _bump(counts["failed_by_code"], row.error_code or row.reason, n)
    elif row.status == "skipped":
        counts["skipped"] += n
        _bump(counts["skipped_by_reason"], row.reason, n)
    elif row.status == "unknown":
        counts["unknown"] += n
    elif row.status in OPEN:
        counts["open"] += n
        counts["sending"] += n if row.status == "sending" else 0


def _each_day(start: date, end: date) -> list[str]:
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite keeps UTC without an offset


def _iso(value: Any) -> str | None:
    moment = _as_datetime(value)
    return moment.astimezone(IST).isoformat(timespec="seconds") if moment else None


def _ist_date(value: Any) -> str | None:
    moment = _as_datetime(value)
    return moment.astimezone(IST).date().isoformat() if moment else None


def _present_reply(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "at": _iso(row["sent_at"]), "customer_id": row["customer_id"],
            "customer_name": row["customer_name"], "invoice_number": row["invoice_number"],
            "phone_masked": row["phone_masked"], "consent_action": row["consent_action"],
            "message_type": row["message_type"], "text": scrub(row["text"], 200)}
