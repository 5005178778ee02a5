"""Opt-in notes in Zoho Books: one note per sent reminder, on its first invoice, never twice; off by default."""

from __future__ import annotations

from pathlib import Path

import pendulum
import pytest
import yaml

from tests.conftest import xcom_result
from zoho_whatsapp.rules.policy import DEFAULT_POLICY_PATH, POLICY_PATH_ENV

DAG_ID = "zoho_books_payment_reminders"
WHEN = pendulum.datetime(2026, 11, 24, 9, tz="Asia/Kolkata")
OPEN_ALL_DAY = {"send_window_start": "00:00", "send_window_end": "23:59"}
pytestmark = [pytest.mark.dag, pytest.mark.sandbox(invoices=20)]


def note_posts(sandbox) -> list[dict]:
    return [r for r in sandbox.requests(service="zoho_books") if r["method"] == "POST" and r["path"].endswith("/comments")]


@pytest.fixture
def notes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    policy["zoho_notes"] = {"enabled": True, "daily_quota": 1000, "reserve_calls": 200}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    monkeypatch.setenv(POLICY_PATH_ENV, str(path))


def test_each_sent_reminder_gets_one_note_on_its_first_invoice(sandbox, sqlite_ledger, run_dag, notes_on) -> None:
    result = run_dag(DAG_ID, WHEN, OPEN_ALL_DAY)
    assert result["state"] == "success", result["states"]
    sent = [r for r in sqlite_ledger.rows() if r["status"] == "sent"]
    leads = {r["message_id"] or r["id"]: r for r in sent if (r["message_id"] or r["id"]) == r["id"]}
    assert leads and len(leads) == len(sandbox.messages())
    for lead_id, lead in leads.items():
        members = [r for r in sent if (r["message_id"] or r["id"]) == lead_id]
        (note,) = sandbox.comments(lead["invoice_id"])
        assert f"WhatsApp reminder sent to {lead['phone_masked']}" in note["description"]
        assert all(m["invoice_number"] in note["description"] for m in members)
        assert all(m["noted_at"] is not None for m in members)
    assert len(note_posts(sandbox)) == len(leads)
    report = xcom_result(result["run"], "account_for_every_invoice")
    assert report["zoho_notes"] == {"written": len(leads), "not_written": {}, "stopped": None}

    again = run_dag(DAG_ID, WHEN, OPEN_ALL_DAY)  # the same date again: no message, and no note, twice
    assert again["state"] == "success", again["states"]
    assert len(note_posts(sandbox)) == len(leads)
    assert xcom_result(again["run"], "account_for_every_invoice")["zoho_notes"]["written"] == 0


def test_notes_stop_at_the_reserve_of_the_days_quota(sandbox, sqlite_ledger, run_dag, tmp_path, monkeypatch) -> None:
    policy = yaml.safe_load(DEFAULT_POLICY_PATH.read_text())
    policy["zoho_notes"] = {"enabled": True, "daily_quota": 12, "reserve_calls": 8}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    monkeypatch.setenv(POLICY_PATH_ENV, str(path))
    result = run_dag(DAG_ID, WHEN, OPEN_ALL_DAY)
    assert result["state"] == "success", result["states"]
    report = xcom_result(result["run"], "account_for_every_invoice")
    notes = report["zoho_notes"]
    # The fetch spent some of the 12 calls; notes never take the day below 8 left.
    assert notes["written"] == len(note_posts(sandbox)) == max(0, 12 - 8 - report["zoho_api_calls"])
    assert notes["not_written"].get("quota_reserve", 0) >= 1 and notes["stopped"]


def test_notes_are_off_by_default(sandbox, sqlite_ledger, run_dag, monkeypatch) -> None:
    monkeypatch.delenv(POLICY_PATH_ENV, raising=False)
    result = run_dag(DAG_ID, WHEN, OPEN_ALL_DAY)
    assert result["state"] == "success", result["states"]
    assert sandbox.messages() and note_posts(sandbox) == []
    assert "zoho_notes" not in xcom_result(result["run"], "account_for_every_invoice")
