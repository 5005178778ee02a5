"""What a new user hits in the first hour, against a real Airflow (see conftest.py) and the sandbox.

* Admin → Connections → **Test** on each of the four connections (clicked in Chromium);
* unpausing the reminder DAG runs the latest 09:00 slot at once: a dry run until go-live, then real;
* the mapped send batches are named ``batch 2/4 · 6 messages``;
* the alerts DAG is unpaused on arrival, and a webhook accepted while it is paused says the event waits.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.ui.test_audit_page import login
from tests.ui_first_hour.conftest import ALERT_DAG, REMINDER_DAG, FirstHour, wait_for

# What each connection's Test answers (the toast's text), from what the sandbox holds.
EXPECTED = {
    "zoho_books_default": r"Connected to Zoho Books organization \d+ \(.+\)",
    "whatsapp_default": r"WhatsApp number .+ is reachable",
    "reminder_ledger_default": r"Connection successfully tested",
    "zoho_books_webhook": r"The webhook endpoint accepts deliveries carrying the \d+-character secret",
}


def test_the_test_button_works_for_every_connection(first_hour: FirstHour, browser: Any, screenshots: Any) -> None:
    sb = first_hour.sandbox
    before = {s: len(sb.requests(service=s)) for s in ("zoho_oauth", "zoho_books", "whatsapp")}
    page = login(browser, first_hour.server)
    page.goto(f"{first_hour.server.url}/connections")
    toasts = page.get_by_role("status").filter(has_text="Test Connection")
    for conn_id, expected in EXPECTED.items():
        seen = set(toasts.all_inner_texts())
        page.get_by_role("row").filter(has_text=conn_id).get_by_role("button", name="Test Connection").click()
        new = wait_for(f"the answer to {conn_id}'s Test", lambda s=seen: set(toasts.all_inner_texts()) - s, 60, 0.2)
        (text,) = new
        assert text.startswith("Test Connection Successful") and re.search(expected, text), (conn_id, text)
    page.screenshot(path=str(screenshots / "first-hour-connection-tests.png"), full_page=True)
    # The tests reached the sandbox: a token and the organization from Zoho, the number from Meta.
    assert len(sb.requests(service="zoho_oauth")) > before["zoho_oauth"]
    assert len(sb.requests(service="zoho_books")) > before["zoho_books"]
    assert len(sb.requests(service="whatsapp")) > before["whatsapp"]


def test_the_test_endpoint_still_refuses_another_destination(first_hour: FirstHour) -> None:
    """The UI's ``port: 0`` is taken as "no port"; a new host still needs its own credentials, and a
    new host in the extras is refused by the hooks' allow-list before anything is sent."""
    sb = first_hour.sandbox
    body = {"connection_id": "whatsapp_default", "conn_type": "whatsapp", "host": "", "port": 0, "password": "***",
            "extra": json.dumps({**first_hour.connections["whatsapp_default"]["extra"]})}
    with first_hour.api() as api:
        same = api.post("/api/v2/connections/test", json=body)
        assert same.status_code == 200 and same.json()["status"] is True, same.text
        moved = api.post("/api/v2/connections/test", json={**body, "host": "evil.example.com"})
        assert moved.status_code == 400 and "differs from the stored connection" in moved.text
        sent = len(sb.requests(service="whatsapp"))
        extra = {**first_hour.connections["whatsapp_default"]["extra"], "base_url": "https://evil.example.com"}
        refused = api.post("/api/v2/connections/test", json={**body, "extra": json.dumps(extra)})
        assert refused.status_code == 200 and refused.json()["status"] is False
        assert "https://graph.facebook.com" in refused.json()["message"]  # names what is allowed
        assert len(sb.requests(service="whatsapp")) == sent


def _runs(api: Any, run_type: str) -> list[dict[str, Any]]:
    answer = api.get(f"/api/v2/dags/{REMINDER_DAG}/dagRuns", params={"run_type": run_type})
    answer.raise_for_status()
    return answer.json()["dag_runs"]


def _finished(api: Any, run_id: str) -> dict[str, Any] | None:
    run = api.get(f"/api/v2/dags/{REMINDER_DAG}/dagRuns/{run_id}").json()
    return run if run["state"] in ("success", "failed") else None


def _xcom(api: Any, run_id: str, task_id: str) -> Any:
    answer = api.get(f"/api/v2/dags/{REMINDER_DAG}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value",
                     params={"deserialize": True})
    answer.raise_for_status()
    value = answer.json()["value"]
    return json.loads(value) if isinstance(value, str) else value


def test_unpausing_runs_a_dry_run_until_go_live_then_sends(first_hour: FirstHour) -> None:
    sb = first_hour.sandbox
    with first_hour.api() as api:
        assert api.get(f"/api/v2/dags/{REMINDER_DAG}").json()["is_paused"] is True  # compose's default
        assert api.patch(f"/api/v2/dags/{REMINDER_DAG}", json={"is_paused": False}).status_code == 200
        # The scheduler starts the latest 09:00 slot at once: the surprise this guards against.
        run = wait_for("the scheduled run", lambda: _runs(api, "scheduled"), 180)[0]
        run_id = run["dag_run_id"]
        done = wait_for("the scheduled run to finish", lambda: _finished(api, run_id), 600, 2)
        assert done["state"] == "success"
        # Not live: no send reached WhatsApp (the Test button's read of the number is a GET).
        assert [r for r in sb.requests(service="whatsapp") if r["method"] == "POST"] == [] and sb.messages() == []
        summary = _xcom(api, run_id, "account_for_every_invoice")
        this_run = summary["this_run"]
        assert summary["dry_run"] is True and this_run["sent"] == 0 and this_run["would_send"] > 0
        assert "not live yet" in summary["mode"] and "zoho_whatsapp_go_live" in summary["mode"]
        mode = _xcom(api, run_id, "check_go_live")
        assert mode == {"dry_run": True, "live": False, "why": summary["mode"]}

        # Go live, then clear the run: it decides again, and sends.
        assert api.post("/api/v2/variables", json={"key": "zoho_whatsapp_go_live", "value": "true"}).status_code == 201
        cleared = api.post(f"/api/v2/dags/{REMINDER_DAG}/clearTaskInstances",
                           json={"dag_run_id": run_id, "dry_run": False, "only_failed": False, "reset_dag_runs": True})
        assert cleared.status_code == 200, cleared.text
        wait_for("the cleared run to start", lambda: api.get(
            f"/api/v2/dags/{REMINDER_DAG}/dagRuns/{run_id}").json()["state"] != "success", 60, 0.5)
        done = wait_for("the live run to finish", lambda: _finished(api, run_id), 600, 2)
        assert done["state"] == "success"
        live = _xcom(api, run_id, "account_for_every_invoice")
        assert live["dry_run"] is False and live["mode"] == "live: messages are sent"
        # would_send counts messages; "sent" the invoices they carried (one message per customer)
        assert live["this_run"]["messages"]["sent"] == len(sb.messages()) == this_run["would_send"]
        assert live["this_run"]["sent"] >= len(sb.messages())

        # The grid names each mapped batch instead of 0-3.
        tis = api.get(f"/api/v2/dags/{REMINDER_DAG}/dagRuns/{run_id}/taskInstances",
                      params={"task_id": "send_reminders"}).json()["task_instances"]
        labels = sorted(ti["rendered_map_index"] for ti in tis)
        pattern = re.compile(rf"batch (\d+)/{len(tis)} · (\d+) messages?")
        matches = [pattern.fullmatch(label or "") for label in labels]
        assert all(matches), labels
        assert sorted(int(m[1]) for m in matches) == list(range(1, len(tis) + 1))
        assert sum(int(m[2]) for m in matches) == live["this_run"]["messages"]["sent"]


def test_alerts_dag_starts_unpaused_and_a_paused_one_is_reported(first_hour: FirstHour) -> None:
    from tests.webhooks.helpers import flat_invoice_body, usable_invoice

    sb = first_hour.sandbox
    secret = first_hour.connections["zoho_books_webhook"]["password"]
    url = f"{first_hour.server.url}/zoho-books/webhooks/invoices"
    invoice, _, number = usable_invoice(sb)
    other, _, other_number = usable_invoice(sb, skip=1)
    with first_hour.api() as api:
        assert api.get(f"/api/v2/dags/{ALERT_DAG}").json()["is_paused"] is False  # despite compose's default
        first = api.post(url, json=flat_invoice_body(invoice, number), headers={"X-Zoho-Webhook-Secret": secret})
        assert first.status_code == 202 and "note" not in first.json(), first.text
        assert api.patch(f"/api/v2/dags/{ALERT_DAG}", json={"is_paused": True}).status_code == 200
        time.sleep(11)  # the endpoint re-reads the pause state at most every 10 s
        second = api.post(url, json=flat_invoice_body(other, other_number), headers={"X-Zoho-Webhook-Secret": secret})
        assert second.status_code == 202, second.text
        assert f"{ALERT_DAG} is paused" in second.json()["note"] and "waits" in second.json()["note"]
        # Without the secret: 401, and nothing about the DAG.
        refused = api.post(url, json=flat_invoice_body(invoice, number), headers={"X-Zoho-Webhook-Secret": "x" * 32})
        assert refused.status_code == 401 and ALERT_DAG not in refused.text

