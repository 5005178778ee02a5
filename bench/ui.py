"""UI: the audit page's default view (the last 30 days) over a year of ledger rows, SQLite and PostgreSQL.

A year of reminder runs and alerts (1,000,000 rows by default) is written straight into a fresh
ledger: every day each open invoice is listed (sent every 3 days, otherwise skipped for the
cadence; a few failures, unknowns, numbers that cannot be used), invoices get paid and leave the
list, payments and new invoices raise alerts; sent messages carry delivery receipts. Each row keeps
a Zoho invoice row of realistic size in ``source``, as the fetch task stores it.

The figure (target 1 s) is the default view's data as the page gets it: its data routes
(``/api/organizations`` and ``/api/summary``) answered by a real ``airflow api-server`` with the
plugin, logged in (median of 5 after one warm-up request). When ``/usr/bin/chromium`` is there, the
page drawn in it (navigation to every number on screen) is reported beside it. The details keep each part's time and the query plans
(EXPLAIN QUERY PLAN / EXPLAIN) of the page's queries.

    python -m bench.run --only ui                # 1,000,000 rows on SQLite and on PostgreSQL
    python -m bench.ui --rows 200000 --keep DIR  # on its own, keeping the ledger files
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, nullcontext
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.harness import Section, base_env, run_child, scratch_postgres

IST = ZoneInfo("Asia/Kolkata")
TARGET_SECONDS = 1.0
# PostgreSQL is measured too when a server answers here (make services starts one).
POSTGRES_ADMIN = os.environ.get("ZW_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
DEFAULT_ROWS = 1_000_000
ORG = "60012345678"
OTHER_ORG = "60087654321"  # a second, small organization: the page shows one at a time
REMINDER_DAG, ALERT_DAG = "zoho_books_payment_reminders", "zoho_books_invoice_alerts"
SKIP_REASONS = (("no_mobile", 0.02), ("not_mobile", 0.01), ("invalid_mobile", 0.005), ("opted_out", 0.003))
COLUMNS = ("organization_id", "invoice_id", "kind", "occasion", "invoice_number", "customer_id", "customer_name",
           "source", "recipient", "phone_masked", "template_name", "template_language", "parameters", "status",
           "reason", "error_code", "error_message", "wamid", "batch", "dag_id", "run_id", "map_index", "try_number",
           "attempts", "seen_run_id", "seen_at", "created_at", "updated_at", "claimed_at", "claimed_on", "settled_at",
           "delivery_status", "sent_at", "delivered_at", "read_at", "failed_at", "delivery_error_code",
           "delivery_error_class", "delivery_updated_at")


def _at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=IST).astimezone(UTC)


def synthetic_rows(rows: int, *, end: date, seed: int = 7) -> Iterator[dict[str, Any]]:
    """About ``rows`` ledger rows: a year of daily reminder runs ending ``end`` (IST), and alerts."""
    rng = random.Random(seed)
    days = [end - timedelta(days=364 - i) for i in range(365)]
    alerts_share = 0.045
    population = max(10, int(rows * (1 - alerts_share) / len(days) * 1.03))  # ~rows in all, not fewer
    customers = [(f"98200{i:07d}", f"Customer {i:04d} Traders Pvt Ltd", f"+91 98XXXXXX{i % 100:02d}")
                 for i in range(max(50, population // 2))]
    next_id = [982000000500000]

    def new_invoice(day: date, overdue_for: int) -> dict[str, Any]:
        next_id[0] += 1
        cid, name, masked = rng.choice(customers)
        currency = "USD" if rng.random() < 0.02 else "INR"
        balance = round(rng.lognormvariate(10.5, 0.9), 2) if currency == "INR" else round(rng.uniform(200, 5000), 2)
        reason = next((r for r, p in SKIP_REASONS if rng.random() < p), None)
        due = day - timedelta(days=overdue_for)
        return {"id": str(next_id[0]), "number": f"INV-{next_id[0] % 10**7:07d}", "customer": (cid, name, masked),
                "currency": currency, "balance": balance, "due": due, "reason": reason,
                "left": max(1, int(rng.expovariate(1 / 30))), "last_claim": None}

    def source(inv: dict[str, Any]) -> str:
        if "source" in inv:  # an invoice's row does not change while it stays overdue
            return inv["source"]
        cid, name, _ = inv["customer"]
        row = {"invoice_id": inv["id"], "ach_payment_initiated": False, "customer_name": name, "customer_id": cid,
               "company_name": name, "status": "overdue", "invoice_number": inv["number"], "reference_number": "",
               "date": (inv["due"] - timedelta(days=15)).isoformat(), "due_date": inv["due"].isoformat(),
               "due_days": "Overdue", "currency_id": "982000000000064", "schedule_time": "",
               "currency_code": inv["currency"], "is_viewed_by_client": False, "has_attachment": False,
               "client_viewed_time": "", "total": inv["balance"], "balance": inv["balance"],
               "created_time": f"{inv['due'].isoformat()}T18:01:28+0530",
               "last_modified_time": f"{inv['due'].isoformat()}T18:01:28+0530", "is_emailed": True,
               "reminders_sent": 0, "last_reminder_sent_date": "", "payment_expected_date": "",
               "last_payment_date": "", "custom_fields": [], "documents": "", "salesperson_id": "",
               "salesperson_name": "", "shipping_charge": 0.0, "adjustment": 0.0, "write_off_amount": 0.0,
               "exchange_rate": 1.0, "invoice_url": "https://books.zoho.in/SecurePayment?CInvoiceID=" + "0" * 40,
               "_contact": {"mobile": f"+91 98200 {int(inv['id']) % 100000:05d}", "phone": ""}}
        inv["source"] = json.dumps(row)
        return inv["source"]

    # A second organization with a few rows, written first: the page must not mix them in, and the
    # default view (the organization of the newest row) is the big one.
    for i in range(200):
        yield {"organization_id": OTHER_ORG, "invoice_id": f"77{i}", "kind": "payment_reminder",
               "occasion": end.isoformat(), "invoice_number": f"B-{i}", "customer_id": f"77{i % 20}",
               "customer_name": f"Other {i % 20}", "source": "{}", "status": "sent", "created_at": _at(end, 8),
               "updated_at": _at(end, 8), "attempts": 1, "dag_id": REMINDER_DAG, "run_id": "other"}
    open_invoices = [new_invoice(days[0], rng.randint(1, 180)) for _ in range(population)]
    for day in days:
        run_id = f"scheduled__{(_at(day, 9)).isoformat()}"
        seen = _at(day, 9, 0, 5)
        arrivals = 0
        for inv in open_invoices:
            cid, name, masked = inv["customer"]
            row: dict[str, Any] = {
                "organization_id": ORG, "invoice_id": inv["id"], "kind": "payment_reminder",
                "occasion": day.isoformat(), "invoice_number": inv["number"], "customer_id": cid,
                "customer_name": name, "source": source(inv), "dag_id": REMINDER_DAG, "run_id": run_id,
                "seen_run_id": run_id, "seen_at": seen, "created_at": seen, "updated_at": seen, "attempts": 0,
                "phone_masked": None if inv["reason"] == "no_mobile" else masked,
            }
            if inv["reason"]:
                row.update(status="skipped", reason=inv["reason"])
            elif inv["last_claim"] is not None and (day - inv["last_claim"]).days < 3:
                row.update(status="skipped", reason="cadence", error_message=f"already sent for {inv['last_claim']}")
            else:
                inv["last_claim"] = day
                claimed = _at(day, 9, 1, rng.randint(0, 59))
                row.update(recipient=f"+9198200{int(inv['id']) % 100000:05d}", template_name="payment_reminder",
                           template_language="en", map_index=rng.randint(0, 3), try_number=1, attempts=1,
                           batch=0, claimed_at=claimed, claimed_on=day.isoformat(), settled_at=claimed,
                           parameters=json.dumps({"party_name": name, "invoice_number": inv["number"],
                                                  "amount_due": f"₹{inv['balance']:,.2f}",
                                                  "due_date": inv["due"].isoformat()}, ensure_ascii=False))
                draw = rng.random()
                if draw < 0.015:
                    row.update(status="failed", error_code=rng.choice((131026, 132001, 100)),
                               error_message="(#131026) Message undeliverable")
                elif draw < 0.017:
                    row.update(status="unknown", reason="timeout", error_message="no answer within 30 s")
                else:
                    row.update(status="sent", wamid=f"wamid.{inv['id']}{day:%j}", **_receipt(rng, claimed))
            yield row
            inv["left"] -= 1
        paid = [inv for inv in open_invoices if inv["left"] <= 0]
        open_invoices = [inv for inv in open_invoices if inv["left"] > 0]
        for inv in paid:
            if rng.random() < 0.3:
                yield _alert(inv, "payment_received", day, rng, amount=inv["balance"])
        while len(open_invoices) < population * rng.uniform(0.97, 1.03):
            inv = new_invoice(day, 1)
            open_invoices.append(inv)
            arrivals += 1
            yield _alert(inv, "invoice_created", day, rng)


def _receipt(rng: random.Random, sent: datetime) -> dict[str, Any]:
    draw = rng.random()
    out: dict[str, Any] = {"sent_at": sent, "delivery_updated_at": sent}
    if draw < 0.02:
        out.update(delivery_status="failed", failed_at=sent + timedelta(seconds=3), delivery_error_code=131026,
                   delivery_error_class="NotOnWhatsApp")
    elif draw < 0.10:
        out.update(delivery_status="sent")
    else:
        out.update(delivery_status="delivered", delivered_at=sent + timedelta(seconds=2))
        if draw < 0.65:
            out.update(delivery_status="read", read_at=sent + timedelta(minutes=rng.randint(1, 600)))
    return out


def _alert(inv: dict[str, Any], kind: str, day: date, rng: random.Random, amount: float | None = None) -> dict[str, Any]:
    cid, name, masked = inv["customer"]
    at = _at(day, rng.randint(10, 18), rng.randint(0, 59))
    occasion = f"{inv['id']}" if kind == "invoice_created" else f"pay{inv['id']}"
    src = {"event": f"{kind}:{ORG}:{occasion}", "amount_applied": amount} if amount is not None else {
        "event": f"{kind}:{ORG}:{occasion}", "total": inv["balance"], "due_date": inv["due"].isoformat()}
    return {"organization_id": ORG, "invoice_id": inv["id"], "kind": kind, "occasion": occasion,
            "invoice_number": inv["number"], "customer_id": cid, "customer_name": name, "source": json.dumps(src),
            "recipient": "+919820000000", "phone_masked": masked, "template_name": kind, "template_language": "en",
            "parameters": "{}", "status": "sent", "wamid": f"wamid.a{occasion}", "dag_id": ALERT_DAG,
            "run_id": f"asset_triggered__{at.isoformat()}", "map_index": 0, "try_number": 1, "attempts": 1,
            "created_at": at, "updated_at": at, "claimed_at": at, "claimed_on": day.isoformat(), "settled_at": at,
            **_receipt(rng, at)}


def load(url: str, rows: int, end: date) -> dict[str, Any]:
    """(child) A fresh, migrated ledger at ``url`` filled with ``synthetic_rows``; returns counts and timing.

    The secondary indexes are dropped for the load and built again after it, as a bulk load would.
    """
    import sqlalchemy as sa

    from zoho_whatsapp.ledger import SendLedger
    from zoho_whatsapp.ledger.schema import messages

    ledger = SendLedger(url)
    ledger.reset()
    started = time.perf_counter()
    indexes = [ix for ix in messages.indexes if ix.name and ix.name.startswith("ix_")]
    with ledger.engine.begin() as conn:
        for ix in indexes:
            ix.drop(conn)
    columns = [c for c in COLUMNS if c in ledger_columns(ledger.engine)]
    written = 0
    chunk: list[dict[str, Any]] = []
    for row in synthetic_rows(rows, end=end):
        chunk.append({c: row.get(c) for c in columns})
        if len(chunk) >= 20_000:
            with ledger.engine.begin() as conn:
                written += _write(conn, columns, chunk)
            chunk = []
    with ledger.engine.begin() as conn:
        written += _write(conn, columns, chunk)
        for ix in indexes:
            ix.create(conn)
    # Fresh statistics for the planner (and PostgreSQL's visibility map, for index-only scans).
    with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE messages" if ledger.engine.dialect.name == "postgresql" else "ANALYZE"))
    seconds = time.perf_counter() - started
    ledger.dispose()
    return {"rows": written, "load_seconds": round(seconds, 1)}


def ledger_columns(engine: Any) -> set[str]:
    import sqlalchemy as sa

    return {c["name"] for c in sa.inspect(engine).get_columns("messages")}


def _write(conn: Any, columns: list[str], rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    cursor = conn.connection.dbapi_connection.cursor()
    if conn.dialect.name == "postgresql":  # COPY: a million rows in seconds rather than minutes
        buf = io.StringIO()
        writer = csv.writer(buf)
        for row in rows:
            writer.writerow(["\\N" if row[c] is None else row[c] for c in columns])
        buf.seek(0)
        cursor.copy_expert(f"COPY messages ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buf)
    else:  # the DB-API directly: SQLAlchemy's per-row processing would take most of the time
        values = [tuple(_sqlite(row[c]) for c in columns) for row in rows]
        cursor.executemany(f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                           values)
    cursor.close()
    return len(rows)


def _sqlite(value: Any) -> Any:
    """A value as SQLAlchemy stores it in SQLite: datetimes as naive UTC text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return value


def plans(url: str, end: date) -> dict[str, Any]:
    """(child) Each query of the default view with its plan, and the view's time straight from the ledger."""
    import sqlalchemy as sa

    from zoho_whatsapp.ledger import SendLedger
    from zoho_whatsapp.ui.queries import AuditQueries, Scope

    engine = SendLedger(url).engine
    queries = AuditQueries(engine)
    scope = Scope(ORG, end - timedelta(days=29), end)
    captured: list[tuple[str, dict[str, Any]]] = []

    @sa.event.listens_for(engine, "before_cursor_execute")
    def _capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    cold = time.perf_counter()
    summary = queries.summary(scope)
    cold = time.perf_counter() - cold
    sa.event.remove(engine, "before_cursor_execute", _capture)
    warm = []
    for _ in range(3):
        started = time.perf_counter()
        queries.summary(scope)
        warm.append(time.perf_counter() - started)
    explained = []
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        for statement, parameters in captured:
            cursor = raw.cursor()
            cursor.execute(prefix + statement, parameters)
            lines = [" | ".join(str(c) for c in r) if engine.dialect.name == "sqlite" else str(r[0])
                     for r in cursor.fetchall()]
            cursor.close()
            explained.append({"query": " ".join(statement.split())[:400], "plan": lines})
    engine.dispose()
    return {"cold_seconds": round(cold, 3), "warm_seconds": round(statistics.median(warm), 3),
            "timings_ms": summary["timings_ms"], "sent_in_view": summary["daily"]["totals"]["reminders"]["sent"],
            "plans": explained}


def served(url: str, work: Path, end: date) -> dict[str, Any]:
    """The default view through a real API server: the data routes, and the page in Chromium if present."""
    import httpx
    import local_airflow

    from tests.ui import live_airflow  # the tests' API server with the plugin and a known login

    home = work / "airflow-home"

    local_airflow.migrate_db(local_airflow.environment(home, drop=("AIRFLOW", "PYTEST")))
    conn = {"reminder_ledger_default": _connection(url)}
    out: dict[str, Any] = {}
    with live_airflow.api_server(home, work, conn) as server:
        token = server.token()
        head = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=head, timeout=60) as http:
            http.get("/whatsapp-audit/api/summary").raise_for_status()  # the app and the engine are built
            times = []
            for _ in range(5):
                started = time.perf_counter()
                http.get("/whatsapp-audit/api/organizations").raise_for_status()
                answer = http.get("/whatsapp-audit/api/summary")
                answer.raise_for_status()
                times.append(time.perf_counter() - started)
            out["api_seconds"] = round(statistics.median(times), 3)
            out["api_server_ms"] = answer.json()["elapsed_ms"]
            out["bytes"] = len(answer.content)
        if Path("/usr/bin/chromium").exists():
            out["browser_seconds"] = _browser(server)
    return out


def _browser(server: Any) -> float | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server.url}/auth/login/")
        page.fill("input[name='username']", server.user)
        page.fill("input[name='password']", server.password)
        page.click("button[type='submit']")
        page.wait_for_url(lambda u: "/auth/login" not in u, timeout=60_000)
        page.goto(f"{server.url}/whatsapp-audit/")
        page.wait_for_selector("body[data-loaded='true']", timeout=60_000)  # warm-up
        times = []
        for _ in range(3):
            started = time.perf_counter()
            page.reload()
            page.wait_for_selector("body[data-loaded='true']", timeout=60_000)
            times.append(time.perf_counter() - started)
        browser.close()
    return round(statistics.median(times), 3)


def _connection(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"conn_type": "sqlite", "host": url.split("///", 1)[1]}
    return {"conn_type": "postgres", "extra": {"sqlalchemy_url": url}}


def run(work: Path, *, rows: int = DEFAULT_ROWS, postgres: str | None = None, keep: bool = False) -> Section:
    """Measure the default view on SQLite, and on PostgreSQL when ``postgres`` (an admin URL) answers."""
    section = Section("ui")
    end = datetime.now(IST).date()
    env = base_env(work / "child-home")
    backends = [("SQLite", None)] + ([("PostgreSQL", postgres)] if postgres else [])
    for label, admin in backends:
        with ExitStack() as stack:
            if admin:
                try:
                    url = stack.enter_context(scratch_postgres(admin))
                except Exception as exc:  # no server here: say so rather than fail the whole bench
                    section.details[f"{label} skipped"] = f"{exc.__class__.__name__}: {exc}"
                    continue
            else:
                url = f"sqlite:///{work / 'ui-ledger.db'}"
            loaded = run_child(load, env, timeout=3600, url=url, rows=rows, end=end)
            planned = run_child(plans, env, timeout=600, url=url, end=end)
            live = run_child(served, env, timeout=900, url=url, work=work / f"served-{label.lower()}", end=end)
            name = f"default view, {loaded['rows']:,} rows, {label}"
            section.add(f"{name}: data over HTTP", live["api_seconds"], "s", TARGET_SECONDS,
                        note=f"/api/organizations + /api/summary, logged in, median of 5 (server {live['api_server_ms']} "
                             f"ms); queries in-process cold {planned['cold_seconds']} s (amounts read from the Zoho "
                             f"rows once) / warm {planned['warm_seconds']} s; load {loaded['load_seconds']} s")
            if live.get("browser_seconds"):
                section.add(f"{name}: page drawn in Chromium", live["browser_seconds"], "s",
                            note="navigation to every number on screen (HTML, scripts, data, charts, tables), median of 3")
            section.details[label] = {**loaded, **{k: v for k, v in planned.items() if k != "plans"}, **live}
            section.details[f"{label} plans"] = planned["plans"]
            if keep and not admin:
                section.details[f"{label} ledger"] = url
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--postgres", default=None, help="admin URL of a PostgreSQL server to measure too")
    parser.add_argument("--keep", type=Path, default=None, help="work in DIR and keep the ledger files there")
    args = parser.parse_args(argv)
    with nullcontext(args.keep) if args.keep else _tmp() as work:
        Path(work).mkdir(parents=True, exist_ok=True)
        section = run(Path(work), rows=args.rows, postgres=args.postgres, keep=bool(args.keep))
    for fig in section.figures:
        print(f"{fig.name}: {fig.value:.3f} {fig.unit} (target ≤ {fig.target}) — {fig.note}")
    for label in ("SQLite plans", "PostgreSQL plans"):
        for item in section.details.get(label, []):
            print(f"\n[{label}] {item['query']}\n  " + "\n  ".join(item["plan"]))
    return 0


def _tmp() -> Any:
    import tempfile

    return tempfile.TemporaryDirectory(prefix="zw-bench-ui-")


if __name__ == "__main__":
    sys.exit(main())
