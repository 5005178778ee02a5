"""The audit page as a person uses it: logged into a real Airflow, in Chromium, after real runs.

The ledger is filled by the DAGs against the sandbox (tests/ui/conftest.py); every number the page
shows is compared with the ledger's rows, read here directly, or with what the test did in Zoho.
Screenshots: test-output/ui/*.png.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pendulum
import pytest

from zoho_whatsapp.rules.money import format_amount

pytestmark = [pytest.mark.dag, pytest.mark.ui]

PAGE = "/whatsapp-audit/"


def login(browser: Any, server: Any, **viewport: int) -> Any:
    """A browser page logged into Airflow through its own login form."""
    context = browser.new_context(viewport={"width": viewport.get("width", 1440), "height": viewport.get("height", 1000)})
    page = context.new_page()
    page.goto(f"{server.url}/")
    page.wait_for_url(re.compile(r".*/auth/login.*"), timeout=60_000)
    page.fill("input[name='username']", server.user)
    page.fill("input[name='password']", server.password)
    page.click("button[type='submit']")
    page.wait_for_url(lambda url: "/auth/login" not in url, timeout=60_000)
    return page


def text(locator: Any) -> str:
    return " ".join(locator.inner_text().split())


def numbers_of(rows: list[dict[str, Any]], start: str, end: str) -> dict[str, Any]:
    """What the page should show for reminders dated ``start``..``end``, counted from the ledger rows."""
    mine = [r for r in rows if r["kind"] == "payment_reminder" and start <= r["occasion"] <= end]
    status = Counter(r["status"] for r in mine)
    # A message carries all its customer's invoices: what was sent, failed or unknown counts messages
    # (each invoice's row points to the message's lead row); a skip is an invoice's.
    messages = Counter(r["status"] for r in {(r["message_id"] or r["id"]): r for r in mine}.values()
                       if r["status"] != "skipped")
    return {"sent": messages["sent"], "failed": messages["failed"], "skipped": status["skipped"],
            "unknown": messages["unknown"], "rows": mine}


def bucket_amount(rows: list[dict[str, Any]], low: int, high: int) -> Decimal:
    total = Decimal(0)
    for row in rows:
        if row["status"] != "sent":
            continue
        source = json.loads(row["source"])
        days = (date.fromisoformat(row["occasion"]) - date.fromisoformat(source["due_date"][:10])).days
        if low <= days <= high and source.get("currency_code", "INR") == "INR":
            total += Decimal(str(source["balance"]))
    return total


def test_the_page_shows_the_ledgers_numbers(filled, airflow_ui, browser, screenshots) -> None:
    page = login(browser, airflow_ui)
    # The navigation entry, as a person finds it.
    page.get_by_role("link", name=re.compile("WhatsApp reminders")).first.click()
    frame = page.frame_locator("iframe[title='WhatsApp reminders']")
    frame.locator("body[data-loaded='true']").wait_for(timeout=60_000)
    page.screenshot(path=str(screenshots / "audit-in-airflow.png"))

    today = pendulum.now("Asia/Kolkata").date()
    start, end = (today - timedelta(days=29)).isoformat(), today.isoformat()
    assert text(frame.get_by_test_id("scope-label")).startswith(f"{filled.ledger.rows()[0]['organization_id']} · "
                                                               f"{start} → {end}")
    expected = numbers_of(filled.ledger.rows(), start, end)
    assert expected["sent"] > 10 and expected["failed"] >= 1 and expected["unknown"] == 1 and expected["skipped"]
    kpi = {name: text(frame.get_by_test_id(f"kpi-{name}-value")) for name in ("reminders-sent", "failed", "skipped",
                                                                               "unknown")}
    assert kpi == {"reminders-sent": f"{expected['sent']:,}", "failed": f"{expected['failed']:,}",
                   "skipped": f"{expected['skipped']:,}", "unknown": f"{expected['unknown']:,}"}
    assert "131026" in text(frame.get_by_test_id("kpi-failed"))

    # The receivables reminded, by age: the 0–30 bucket's amount is the sum of the balances sent.
    row = frame.locator("[data-testid='ageing-table'] tr[data-bucket='0–30']")
    amount = bucket_amount(expected["rows"], 0, 30)
    assert amount > 0
    assert format_amount(amount, "INR") in text(row.locator("[data-col='amount']"))

    # Collected after reminders: what the test paid in Zoho, and nothing else.
    day1 = filled.days[0]
    paid_7 = filled.paid[:2]
    paid_14 = filled.paid + [filled.webhook_paid]
    within = {w: text(frame.locator(f"[data-testid='collections-table'] tr[data-window='{w}']")) for w in (7, 14)}
    for days, invoices in ((7, paid_7), (14, paid_14)):
        total = sum(Decimal(str(filled.balances[i])) for i in invoices)
        assert f"{len(invoices)} " in within[days] and format_amount(total, "INR") in within[days], within[days]
    paid_table = text(frame.get_by_test_id("paid-table"))
    numbers = {r["invoice_id"]: r["invoice_number"] for r in filled.ledger.rows()}
    assert all(numbers[i] in paid_table for i in paid_14) and day1 in paid_table

    # What needs a person: the refused number with Meta's code and the fix, and the unknown send.
    frame.get_by_test_id("tab-failed").click()
    failed = text(frame.get_by_test_id("attention-failed"))
    assert "131026" in failed and "NotOnWhatsApp" in failed and "correct the mobile in Zoho" in failed
    frame.get_by_test_id("tab-unknown").click()
    unknown_row = next(r for r in expected["rows"] if r["status"] == "unknown")
    assert unknown_row["invoice_number"] in text(frame.get_by_test_id("attention-unknown"))

    # One customer's timeline: each message with its invoice and status, and links to the run and task.
    refused = [r for r in filled.ledger.rows() if r["customer_id"] == filled.refused and r["reason"] != "cadence"]
    frame.locator(f"#customer-list button[data-customer-id='{filled.refused}']").click()
    items = frame.locator("[data-testid='timeline'] li[data-type='message']")
    items.first.wait_for()
    shown = sorted((items.nth(i).get_attribute("data-invoice"), items.nth(i).get_attribute("data-status"))
                   for i in range(items.count()))
    assert shown == sorted((r["invoice_number"], r["status"]) for r in refused)
    failed_row = next(r for r in refused if r["status"] == "failed")
    task_link = frame.locator(f"[data-testid='timeline'] li[data-row-id='{failed_row['id']}'] a.af-link", has_text="task")
    assert task_link.get_attribute("href") == (
        f"/dags/{failed_row['dag_id']}/runs/{failed_row['run_id'].replace(':', '%3A').replace('+', '%2B')}"
        f"/tasks/send_reminders/mapped/{failed_row['map_index']}")
    frame.locator("#timeline-card").screenshot(path=str(screenshots / "audit-timeline.png"))
    # The link opens the task instance in the Airflow UI around the page (not inside the iframe).
    task_link.click()
    page.wait_for_url(re.compile(r".*/tasks/send_reminders/mapped/\d+$"), timeout=30_000)
    page.locator("iframe[title='WhatsApp reminders']").wait_for(state="detached", timeout=30_000)
    page.get_by_text("send_reminders").first.wait_for(timeout=30_000)
    page.wait_for_timeout(3000)  # the task instance and the first lines of its log
    page.screenshot(path=str(screenshots / "audit-link-to-task.png"))
    # The task instance the link names exists in Airflow, and claimed that row.
    ti = httpx.get(f"{airflow_ui.url}/api/v2/dags/{failed_row['dag_id']}/dagRuns/{failed_row['run_id']}/taskInstances"
                   f"/send_reminders/{failed_row['map_index']}", headers={"Authorization": f"Bearer {airflow_ui.token()}"},
                   timeout=60)
    assert ti.status_code == 200 and ti.json()["state"] == "success", ti.text

    # The same page on its own, full length.
    standalone = page.context.new_page()
    standalone.set_viewport_size({"width": 1440, "height": 1000})
    standalone.goto(f"{airflow_ui.url}{PAGE}")
    standalone.wait_for_selector("body[data-loaded='true'][data-timeline]")
    standalone.screenshot(path=str(screenshots / "audit-page.png"), full_page=True)
    page.context.close()


def test_the_dag_run_tab_shows_that_run_only(filled, airflow_ui, browser, screenshots) -> None:
    day = filled.days[0]
    run = filled.runs[day]
    page = login(browser, airflow_ui)
    page.goto(f"{airflow_ui.url}/dags/{run.dag_id}/runs/{run.run_id}/plugin/whatsapp-run")
    frame = page.frame_locator("iframe[title='WhatsApp messages']")
    frame.locator("body[data-loaded='true']").wait_for(timeout=60_000)
    mine = [r for r in filled.ledger.rows() if r["run_id"] == run.run_id]
    sent = len({r["message_id"] or r["id"] for r in mine if r["status"] == "sent"})  # messages, not invoices
    assert sent and text(frame.get_by_test_id("kpi-reminders-sent-value")) == f"{sent:,}"
    assert run.run_id in text(frame.get_by_test_id("run-banner"))
    assert f"{day} → {day}" in text(frame.get_by_test_id("scope-label"))
    page.screenshot(path=str(screenshots / "audit-dag-run-tab.png"))
    page.context.close()


def test_csv_export_is_what_is_on_screen_and_safe(filled, airflow_ui) -> None:
    assert httpx.get(f"{airflow_ui.url}{PAGE}api/export.csv?section=messages", timeout=30).status_code == 401
    token = airflow_ui.token()
    with httpx.Client(base_url=airflow_ui.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        answer = http.get(f"{PAGE}api/export.csv", params={"section": "messages"})
        summary = http.get(f"{PAGE}api/summary").json()
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    body = answer.text.lstrip("\ufeff")
    lines = body.splitlines()
    assert lines[0].startswith("at,kind,occasion,invoice_number,customer_name,phone")
    assert len(lines) - 1 == len(summary["messages"])
    recipients = {r["recipient"] for r in filled.ledger.rows() if r["recipient"]}
    assert recipients and not any(number in body or number[1:] in body for number in recipients)
    assert "wamid" not in body
    # A masked number starts with "+": a spreadsheet would read it as a formula without the quote.
    assert ",'+91" in body
