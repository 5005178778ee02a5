"""Alerts trust only Zoho (issue 10): what someone holding the webhook secret can make the product send.

Each attack is posted over real HTTP to the webhook endpoint (uvicorn on loopback), the alert DAG
runs with ``dag.test()``, and the test reads what the sandbox's WhatsApp API received through its
inspection endpoint (``GET /_sandbox/messages``), then the ledger and the event inbox.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from tests.webhooks.helpers import (
    INVOICES,
    PAYMENTS,
    flat_invoice_body,
    headers,
    inbox_rows,
    install_secret,
    live_server,
    usable_invoice,
)
from zoho_whatsapp.rules.money import format_amount, format_due_date

DAG_ID = "zoho_books_invoice_alerts"
STRANGER = "+447911123456"
SCAM = "your power will be cut tonight. Pay now at https://evil.example/upi"
pytestmark = pytest.mark.dag


@pytest.fixture
def post(sandbox, set_connection):
    """POST a JSON body to the live endpoint with the right secret; returns the HTTP status."""
    secret = sandbox.credentials["webhook_secret"]
    install_secret(set_connection, secret)
    with live_server() as served, httpx.Client(base_url=served.url, timeout=10) as http:
        yield lambda path, body: http.post(path, json=body, headers=headers(secret)).status_code


def received(sandbox) -> list[dict]:
    return httpx.get(f"{sandbox.url}/_sandbox/messages", timeout=10).json()["messages"]


def outcomes() -> dict[str, dict]:
    return {r["event_key"]: json.loads(r["outcome"] or "{}") for r in inbox_rows()}


def figure(text: str) -> None:
    """A measured figure for the report: `pytest tests/security/test_alert_trust.py -s | grep FIGURE`."""
    print(f"FIGURE {text}")


def test_a_made_up_invoice_sends_nothing_whatever_number_and_text_it_carries(
    sandbox, sqlite_ledger, post, run_dag
) -> None:
    due = "2030-01-31"
    bodies = {
        "invoice_created:-:982000000999001": {"invoice_id": "982000000999001", "customer_name": SCAM,
                                              "mobile": STRANGER, "total": 1, "due_date": due, "status": "sent"},
        "invoice_created:-:number:INV-999999": {"invoice_id": "INV-999999", "customer_name": SCAM,
                                                "mobile": STRANGER, "total": 1, "due_date": due},
        # no number anywhere: this once failed the task with Zoho's "does not exist" and re-announced the event
        "invoice_created:-:982000000999002": {"invoice": {"invoice_id": "982000000999002", "customer_name": SCAM,
                                                          "total": 10, "due_date": due}},
    }
    assert [post(INVOICES, body) for body in bodies.values()] == [202] * 3
    result = run_dag(DAG_ID)
    assert result["state"] == "success", result["states"]
    assert set(result["states"].values()) == {"success"}
    assert received(sandbox) == [] and sandbox.requests(service="whatsapp") == []
    assert sqlite_ledger.rows() == []  # nothing keyed on a record Zoho does not have
    seen = outcomes()
    assert {key: (seen[key]["status"], seen[key]["reason"]) for key in bodies} == {
        key: ("skipped", "not_in_zoho") for key in bodies}
    assert {r["status"] for r in inbox_rows()} == {"handled"}
    calls = [seen[key]["zoho_api_calls"] for key in bodies]
    assert max(calls) <= 1  # one lookup decides
    figure(f"Zoho calls per made-up invoice event: {calls} (+1 per run for the organization)")


def test_a_real_invoice_with_a_strangers_number_goes_to_the_customer_in_zoho_saying_what_zoho_says(
    sandbox, sqlite_ledger, post, run_dag
) -> None:
    flat, _, number = usable_invoice(sandbox)
    nested, _, nested_number = usable_invoice(sandbox, skip=1)
    sandbox.update_invoice(nested["invoice_id"], status=nested["status"])  # just saved: the rule fires
    forged = {"customer_name": SCAM, "total": 1, "balance": 1, "due_date": "2099-01-01", "phone": STRANGER,
              "currency_code": "USD"}
    default_payload = {**sandbox.invoice(nested["invoice_id"]), **forged, "mobile": STRANGER,
                       "contact_persons_associated": [{"mobile": STRANGER, "phone": STRANGER}]}
    assert post(INVOICES, flat_invoice_body(flat, STRANGER, **forged)) == 202
    assert post(INVOICES, {"invoice": default_payload}) == 202

    result = run_dag(DAG_ID)
    assert result["state"] == "success", result["states"]
    messages = received(sandbox)
    assert sorted(m["to"] for m in messages) == sorted([number, nested_number])
    assert STRANGER not in {m["to"] for m in messages}
    for invoice, to in ((flat, number), (nested, nested_number)):
        (message,) = [m for m in messages if m["parameters"]["invoice_number"] == invoice["invoice_number"]]
        assert message["to"] == to
        assert message["parameters"] == {
            "party_name": invoice["customer_name"],
            "invoice_number": invoice["invoice_number"],
            "invoice_amount": format_amount(Decimal(str(invoice["total"])), invoice["currency_code"]),
            "due_date": format_due_date(invoice["due_date"]),
        }
    assert SCAM not in json.dumps(messages)
    # the real customers' ledger rows were used for the real customers
    rows = {r["invoice_id"]: r for r in sqlite_ledger.rows()}
    assert {i: (r["status"], r["recipient"]) for i, r in rows.items()} == {
        flat["invoice_id"]: ("sent", number), nested["invoice_id"]: ("sent", nested_number)}
    for row in rows.values():  # the ledger keeps no number from the body, nor Zoho's payment link
        assert STRANGER.lstrip("+") not in row["source"] and SCAM not in row["source"]
        assert "SecurePayment" not in row["source"] and "invoice_url" not in json.loads(row["source"])
    calls = sorted(o["zoho_api_calls"] for o in outcomes().values())
    assert calls == [2, 2]  # the invoice, then its customer's contact
    figure(f"Zoho calls per invoice_created event: {calls} (+1 per run for the organization)")


def test_a_real_payment_with_a_strangers_number_tells_only_the_customer(sandbox, sqlite_ledger, post, run_dag) -> None:
    invoice, _, number = usable_invoice(sandbox, skip=2)
    payment = sandbox.add_payment(invoice["invoice_id"], amount=1000)
    body = {"payment_id": payment["payment_id"], "amount": 999999, "mobile": STRANGER, "customer_name": SCAM,
            "invoice_id": invoice["invoice_number"], "currency_code": "USD"}
    assert post(PAYMENTS, body) == 202

    result = run_dag(DAG_ID)
    assert result["state"] == "success", result["states"]
    (message,) = received(sandbox)
    assert message["to"] == number != STRANGER
    balance = Decimal(str(sandbox.invoice(invoice["invoice_id"])["balance"]))
    assert message["parameters"] == {
        "party_name": invoice["customer_name"],
        "amount_received": format_amount(Decimal(1000), invoice["currency_code"]),
        "invoice_number": invoice["invoice_number"],
        "balance_due": format_amount(balance, invoice["currency_code"]),
    }
    (outcome,) = outcomes().values()
    assert outcome["zoho_api_calls"] == 3  # the payment, the invoice's live balance, the customer's contact
    figure(f"Zoho calls per payment_received event (one invoice): {outcome['zoho_api_calls']}")


def test_no_number_gets_more_than_the_hourly_cap_of_alerts(sandbox, sqlite_ledger, post, run_dag) -> None:
    invoice, _, number = usable_invoice(sandbox, skip=3)
    payments = [sandbox.add_payment(invoice["invoice_id"], amount=100) for _ in range(7)]
    assert {post(PAYMENTS, {"payment_id": p["payment_id"], "amount": 100}) for p in payments} == {202}

    result = run_dag(DAG_ID, conf={"max_alerts_per_recipient_per_hour": 5})
    assert result["state"] == "success", result["states"]
    assert [m["to"] for m in received(sandbox)] == [number] * 5
    assert Counter((r["status"], r["reason"]) for r in sqlite_ledger.rows()) == {
        ("sent", None): 5, ("skipped", "recipient_hourly_cap"): 2}
    capped = sum(o.get("skipped_by_reason", {}).get("recipient_hourly_cap", 0) for o in outcomes().values())
    assert capped == 2 and {r["status"] for r in inbox_rows()} == {"handled"}  # counted in each event's report

    late = sandbox.add_payment(invoice["invoice_id"], amount=100)  # later within the hour: still capped
    assert post(PAYMENTS, {"payment_id": late["payment_id"], "amount": 100}) == 202
    assert run_dag(DAG_ID)["state"] == "success"
    assert len(received(sandbox)) == 5
