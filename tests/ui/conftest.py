"""A ledger filled by the real pipeline, and a real Airflow API server showing it, for the audit page.

Filled once per module through the DAGs as a user runs them (``dag.test()`` against the sandbox):
three reminder runs twelve days apart in all, with one number Meta refuses (131026) and one send
whose answer is lost (``unknown``) on the first; invoices paid in Zoho between runs (they leave
the overdue list) and one payment announced by the payment webhook (the alert DAG).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import local_airflow
import pendulum
import pytest

from tests.conftest import _forget_cached_tokens
from tests.ui.live_airflow import LiveAirflow, api_server

REMINDER_DAG = "zoho_books_payment_reminders"
ALERT_DAG = "zoho_books_invoice_alerts"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "ui"


@dataclass
class Filled:
    sandbox: Any
    ledger: Any  # SendLedger on the SQLite file
    path: Path
    days: list[str]  # the reminder dates run, oldest first
    connections: dict[str, dict[str, Any]]
    runs: dict[str, Any] = field(default_factory=dict)  # reminder date -> DagRun
    refused: str | None = None  # the customer whose number Meta refused
    paid: list[str] = field(default_factory=list)  # invoice ids paid in Zoho between runs
    webhook_paid: str | None = None  # invoice id paid through the payment webhook
    balances: dict[str, Any] = field(default_factory=dict)  # of the paid invoices, before payment


def _run(dag_id: str, when: Any, conf: dict[str, Any] | None = None) -> Any:
    dag = local_airflow.load_dag(dag_id)
    run = dag.test(logical_date=when, run_conf={"messages_per_second": 200, **(conf or {})})
    assert str(run.state) == "success", f"{dag_id} {when}: {run.state}"
    return run


def _usable(sandbox: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sent reminders of distinct customers, for choosing whom to pay."""
    seen, found = set(), []
    for row in rows:
        if row["status"] == "sent" and row["customer_id"] not in seen:
            seen.add(row["customer_id"])
            found.append(row)
    return found


@pytest.fixture(scope="module")
def filled(airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Filled]:
    from sandbox import Sandbox
    from tests.webhooks.helpers import PAYMENTS, client, headers
    from zoho_whatsapp.ledger import SendLedger
    from zoho_whatsapp.rules.phone import UnusableNumber, to_whatsapp_number

    saved = {k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CONN_")}
    work = tmp_path_factory.mktemp("ui-ledger")
    path = work / "reminder_ledger.db"
    sb = Sandbox(host="127.0.0.1", port=0, seed=42, invoices=60).start()
    secret = sb.credentials["webhook_secret"]
    connections = {**sb.connections(), **local_airflow.sqlite_ledger(path),
                   "zoho_books_webhook": {"conn_type": "generic", "password": secret}}
    os.environ.update(local_airflow.connection_env(connections))
    _forget_cached_tokens()
    ledger = SendLedger(f"sqlite:///{path}")
    ledger.migrate()
    today = pendulum.now("Asia/Kolkata").date()
    first = today - timedelta(days=12)
    days = [first, first + timedelta(days=3), first + timedelta(days=11)]
    filled = Filled(sb, ledger, path, [d.isoformat() for d in days], connections)
    try:
        # Day 1: Meta refuses one customer's number; one send's answer is lost.
        refused = None
        for invoice in sb.overdue_invoices():
            contact = sb.contact(invoice["customer_id"]) or {}
            try:
                number = to_whatsapp_number(contact.get("mobile"), "IN")
            except UnusableNumber:
                continue
            if float(invoice["balance"]) > 0:
                refused = (invoice["customer_id"], number)
                break
        assert refused, "the sandbox has no customer with a usable mobile"
        filled.refused = refused[0]
        sb.set_faults(whatsapp_errors=[{"code": 131026, "to": refused[1]}], whatsapp_5xx_no_envelope=1)
        filled.runs[days[0].isoformat()] = _run(REMINDER_DAG, _nine(days[0]))
        sb.set_faults(whatsapp_errors=[], whatsapp_5xx_no_envelope=0)

        sent = [r for r in _usable(sb, ledger.rows()) if r["customer_id"] != refused[0]]
        assert len(sent) >= 4, "too few reminders sent on the first day to pay some"
        filled.balances = {r["invoice_id"]: sb.invoice(r["invoice_id"])["balance"] for r in sent[:4]}
        # Two paid in Zoho before day 2 (3 days after their reminder), one before day 3 (11 days after).
        for row in sent[:2]:
            sb.update_invoice(row["invoice_id"], balance=0, status="paid")
            filled.paid.append(row["invoice_id"])
        filled.runs[days[1].isoformat()] = _run(REMINDER_DAG, _nine(days[1]))
        sb.update_invoice(sent[2]["invoice_id"], balance=0, status="paid")
        filled.paid.append(sent[2]["invoice_id"])
        # One payment announced by Zoho's payment webhook: the alert DAG sends the receipt.
        webhook_row = sent[3]
        payment = sb.add_payment(webhook_row["invoice_id"])
        with client() as c:
            answer = c.post(PAYMENTS, json={"payment": payment}, headers=headers(secret))
        assert answer.status_code == 202, answer.text
        _run(ALERT_DAG, pendulum.now("UTC"))
        filled.webhook_paid = webhook_row["invoice_id"]
        filled.runs[days[2].isoformat()] = _run(REMINDER_DAG, _nine(days[2]))
        yield filled
    finally:
        sb.stop()
        ledger.dispose()
        _forget_cached_tokens()
        for key in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
            del os.environ[key]
        os.environ.update(saved)


def _nine(day: date) -> Any:
    return pendulum.datetime(day.year, day.month, day.day, 9, tz="Asia/Kolkata")


@pytest.fixture(scope="module")
def airflow_ui(filled: Filled, airflow_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAirflow]:
    """``airflow api-server`` with the plugin, on the session's metadata DB (the DAG runs above are in it)."""
    work = tmp_path_factory.mktemp("api-server")
    with api_server(airflow_db, work, {"reminder_ledger_default": filled.connections["reminder_ledger_default"]}) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium from Debian (``/usr/bin/chromium``), driven by Playwright."""
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("/usr/bin/chromium is missing: `make test` installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def screenshots() -> Path:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    return OUTPUT


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ui: drives the audit page in Chromium against a live Airflow API server")
