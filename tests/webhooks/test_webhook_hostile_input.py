"""Each class of hostile input found by the security review, over real HTTP, on SQLite and PostgreSQL:
a clear 4xx (never a 5xx), nothing stored, no request to Zoho or WhatsApp."""

from __future__ import annotations

import json
from typing import Any

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
)
from zoho_whatsapp.ledger.schema import messages, webhook_events
from zoho_whatsapp.webhooks.app import MAX_BODY_BYTES

JSON = "application/json"


@pytest.fixture
def secret(sandbox, set_connection) -> str:
    value = sandbox.credentials["webhook_secret"]
    install_secret(set_connection, value)
    return value


def hostile_cases(sandbox: Any) -> list[tuple[str, str, bytes, str | None, int]]:
    """(name, path, body, content type, expected status)."""
    invoice = sandbox.invoices("sent")[0]
    flat = flat_invoice_body(invoice, "9820012345")
    record = sandbox.invoice(invoice["invoice_id"])
    payment = {"payment_id": "982000000900001", "amount": 100, "invoice_id": invoice["invoice_number"]}

    def with_(base: dict[str, Any], **fields: Any) -> bytes:
        return json.dumps({**base, **fields}).encode()  # ensure_ascii: "\ud800" travels as the escape JSON allows

    cases: list[tuple[str, str, bytes, str | None, int]] = []
    for char, label in [("\ud800", "lone surrogate"), ("\udfff", "lone low surrogate"), ("\u202e", "RLO"),
                        ("\u200b", "ZWSP"), ("\ufeff", "BOM"), ("\U000e0041", "tag character"),
                        ("\u2028", "line separator"), ("\x07", "bell"), ("\ue000", "private use")]:
        cases += [
            (f"{label} in customer_name", INVOICES, with_(flat, customer_name=f"Priya{char} Textiles"), JSON, 422),
            (f"{label} in the invoice number", INVOICES, with_(flat, invoice_id=f"INV-{char}1"), JSON, 422),
            (f"{label} in mobile", INVOICES, with_(flat, mobile=f"98200{char}12345"), JSON, 422),
            (f"{label} in a Default Payload", INVOICES,
             json.dumps({"invoice": {**record, "customer_name": f"A{char}B"}}).encode(), JSON, 422),
            (f"{label} in a payment's customer_name", PAYMENTS, with_(payment, customer_name=f"B{char}C"), JSON, 422),
        ]
    org_width = webhook_events.c.organization_id.type.length
    cases += [
        (f"organization_id of {n} digits", INVOICES, with_(flat, organization_id="6" * n), JSON, 422)
        for n in (org_width + 1, 48, 64, 65)
    ]
    cases += [
        ("organization_id not digits", INVOICES, with_(flat, organization_id="org-60012345"), JSON, 422),
        ("invoice number over its column", INVOICES, with_(flat, invoice_id="I" * (messages.c.invoice_number.type.length + 1)),
         JSON, 422),
        ("customer_name over its column", INVOICES, with_(flat, customer_name="N" * (messages.c.customer_name.type.length + 1)),
         JSON, 422),
        ("customer_id that is a path", INVOICES, with_(flat, customer_id="../contacts"), JSON, 422),
        ("payment_id that is a path", PAYMENTS, with_(payment, payment_id="1/../2"), JSON, 422),
        ("applied invoice id that is a path", PAYMENTS,
         json.dumps({"payment": {**payment, "invoices": [{"invoice_id": "../../settings"}]}}).encode(), JSON, 422),
        ("status with spaces", INVOICES, with_(flat, status="sent; drop"), JSON, 422),
        ("duplicate key", INVOICES, b'{"customer_name": "A", ' + json.dumps(flat).encode()[1:], JSON, 400),
        ("duplicate nested key", INVOICES,
         b'{"invoice": {"total": 1, ' + json.dumps(record).encode()[1:] + b"}", JSON, 400),
        ("NaN literal", INVOICES, json.dumps({**flat, "total": float("nan")}).encode(), JSON, 400),
        ("Infinity literal", PAYMENTS, json.dumps({**payment, "amount": float("inf")}).encode(), JSON, 400),
        ("1e400", INVOICES, json.dumps(flat).encode().replace(b'"total": ', b'"total": 1e400, "x": '), JSON, 400),
        ("5000-digit integer", INVOICES, with_(flat)[:-1] + b', "total2": ' + b"9" * 5000 + b"}", JSON, 400),
        ("nested 10000 deep", INVOICES, b'{"a": ' + b"[" * 10000 + b"]" * 10000 + b"}", JSON, 400),
        ("no content type", INVOICES, with_(flat), None, 415),
        ("text/plain", INVOICES, with_(flat), "text/plain", 415),
        ("form encoded", INVOICES, b"invoice_id=INV-1&total=5", "application/x-www-form-urlencoded", 415),
        ("latin-1 JSON", INVOICES, with_(flat), "application/json; charset=latin-1", 415),
        ("oversized", INVOICES, with_(flat, notes="x" * MAX_BODY_BYTES), JSON, 413),
    ]
    return cases


def widest_valid_body(sandbox: Any) -> dict[str, Any]:
    """Every stored field at the width of its column (and a name that needs a zero-width joiner)."""
    invoice = sandbox.invoices("sent")[0]
    name = "क्\u200dष " * 50
    return {
        "invoice": {
            "invoice_id": "9" * messages.c.invoice_id.type.length,
            "invoice_number": "N" * messages.c.invoice_number.type.length,
            "customer_id": "8" * messages.c.customer_id.type.length,
            "customer_name": (name + "x" * 255)[: messages.c.customer_name.type.length],
            "total": invoice["total"], "due_date": invoice["due_date"], "status": "draft",
        },
        "organization_id": "6" * webhook_events.c.organization_id.type.length,
    }


def test_each_hostile_input_class_is_a_clear_4xx_and_stores_nothing(sandbox, ledger, secret, caplog) -> None:
    cases = hostile_cases(sandbox)
    wrong: list[str] = []
    with live_server() as served, httpx.Client(base_url=served.url, timeout=60) as http:
        for name, path, body, content_type, expected in cases:
            sent = {**headers(secret), **({"Content-Type": content_type} if content_type else {})}
            answer = http.post(path, content=body, headers=sent)
            if answer.status_code != expected or not answer.json().get("error"):
                wrong.append(f"{name}: {answer.status_code} {answer.text[:160]}")
        assert wrong == []
        assert inbox_rows() == []
        widest = http.post(INVOICES, json=widest_valid_body(sandbox), headers=headers(secret))
    assert widest.status_code == 202, widest.text
    (row,) = inbox_rows()
    assert len(row["organization_id"]) == webhook_events.c.organization_id.type.length
    assert len(row["event_key"]) <= webhook_events.c.event_key.type.length
    assert len(row["reference"]) <= webhook_events.c.reference.type.length
    assert sandbox.requests() == []  # the endpoint asks neither Zoho nor WhatsApp anything
    assert "Traceback" not in caplog.text
    print(f"FIGURE hostile input classes ({ledger.engine.dialect.name}): {len(cases)} refused with the expected 4xx")
