"""The webhook endpoint as Zoho Books reaches it: the real FastAPI app, the real inbox, the real secret check."""

from __future__ import annotations

import json
import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.webhooks.helpers import (
    INVOICES,
    PAYMENTS,
    client,
    flat_invoice_body,
    headers,
    inbox_rows,
    install_secret,
    live_server,
    usable_invoice,
)
from zoho_whatsapp.webhooks.app import MAX_BODY_BYTES


@pytest.fixture
def secret(sandbox, set_connection) -> str:
    value = sandbox.credentials["webhook_secret"]
    install_secret(set_connection, value)
    return value


def test_valid_flat_invoice_is_stored_once_and_answered_fast(sandbox, sqlite_ledger, secret) -> None:
    invoice, _, _ = usable_invoice(sandbox)
    body = flat_invoice_body(invoice, "9820012345")
    with client() as c:
        c.post(INVOICES, json=body, headers=headers(secret))  # first request warms up the lazy inbox
        sqlite_ledger.reset()
        timings = []
        for i in range(20):
            started = time.perf_counter()
            answer = c.post(INVOICES, json={**body, "invoice_id": f"INV-9{i:05d}"}, headers=headers(secret))
            timings.append(time.perf_counter() - started)
            assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "accepted"
    rows = inbox_rows()
    assert len(rows) == 20 and {r["status"] for r in rows} == {"received"}
    assert rows[0]["event_key"] == "invoice_created:-:number:INV-900000"
    payload = json.loads(rows[0]["payload"])
    assert (payload["invoice_number"], payload["invoice_id"], payload["phones"]) == ("INV-900000", None, ["9820012345"])
    assert payload["total"] == str(invoice["total"]) and payload["due_date"] == invoice["due_date"]
    assert sandbox.requests() == []  # the endpoint calls neither Zoho nor WhatsApp
    print(f"FIGURE endpoint answer time over 20 stores: median {statistics.median(timings) * 1000:.1f} ms, "
          f"worst {max(timings) * 1000:.1f} ms")
    assert max(timings) < 1.0


def test_default_payloads_for_invoices_and_payments_are_accepted(sandbox, sqlite_ledger, secret) -> None:
    invoice, _, _ = usable_invoice(sandbox)
    payment = sandbox.add_payment(invoice["invoice_id"], amount=1000)
    with client() as c:
        a = c.post(INVOICES, json={"invoice": sandbox.invoice(invoice["invoice_id"])}, headers=headers(secret))
        b = c.post(PAYMENTS, json={"payment": payment}, headers=headers(secret))
    assert (a.status_code, b.status_code) == (202, 202), (a.text, b.text)
    rows = {r["kind"]: r for r in inbox_rows()}
    org = sandbox.credentials["organization_id"]
    assert rows["invoice_created"]["event_key"] == f"invoice_created:-:{invoice['invoice_id']}"
    assert rows["payment_received"]["event_key"] == f"payment_received:-:{payment['payment_id']}"
    stored = json.loads(rows["payment_received"]["payload"])
    assert stored["payload_format"] == "default" and stored["amount"] == "1000.0"
    assert stored["applied"][0]["invoice_id"] == invoice["invoice_id"]
    assert org  # the Default Payload carries no organization id: the connection's organization is used


def test_duplicate_delivery_is_acknowledged_and_not_stored_again(sandbox, sqlite_ledger, secret) -> None:
    invoice, _, _ = usable_invoice(sandbox)
    body = flat_invoice_body(invoice, "9820012345")
    with client() as c:
        first = c.post(INVOICES, json=body, headers=headers(secret))
        again = c.post(INVOICES, json=body, headers=headers(secret))
        # an update of the same invoice (rule on "created or edited") is still the same event
        edited = c.post(INVOICES, json={**body, "balance": 1}, headers=headers(secret))
    assert first.status_code == 202
    assert again.status_code == edited.status_code == 200
    assert again.json()["status"] == "duplicate" and again.json()["event_id"] == first.json()["event_id"]
    rows = inbox_rows()
    assert len(rows) == 1 and rows[0]["deliveries"] == 3


def test_ten_concurrent_deliveries_of_one_event_store_one_row(sandbox, ledger, secret) -> None:
    """Over real HTTP and real threads, on SQLite and PostgreSQL."""
    invoice, _, _ = usable_invoice(sandbox)
    body = json.dumps(flat_invoice_body(invoice, "9820012345")).encode()
    with live_server() as url, httpx.Client(base_url=url, timeout=30) as http:
        http.post("/webhooks/nothing", headers=headers(secret))  # the server is up (404 after the secret check)
        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(
                lambda _: http.post(INVOICES, content=body, headers={**headers(secret), "Content-Type": "application/json"}),
                range(10),
            ))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] * 9 + [202], [a.text for a in answers]
    assert len({a.json()["event_id"] for a in answers}) == 1
    rows = inbox_rows()
    assert len(rows) == 1 and rows[0]["deliveries"] == 10


@pytest.mark.parametrize(
    "send",
    [
        pytest.param({}, id="no-secret"),
        pytest.param({"headers": {"X-Zoho-Webhook-Secret": "wrong-but-long-enough-secret"}}, id="wrong-header"),
        pytest.param({"params": {"secret": "wrong-but-long-enough-secret"}}, id="wrong-query"),
        pytest.param({"headers": {"X-Zoho-Webhook-Secret": ("é" * 40).encode()}}, id="non-ascii"),
    ],
)
def test_missing_or_wrong_secret_is_401_with_no_side_effect(sandbox, sqlite_ledger, secret, send, caplog) -> None:
    invoice, _, _ = usable_invoice(sandbox)
    caplog.set_level(logging.INFO)
    with client() as c:
        answer = c.post(INVOICES, json=flat_invoice_body(invoice, "9820012345"), **send)
        unknown = c.post("/webhooks/estimates", json={}, **send)  # nothing is revealed before the secret
    assert answer.status_code == unknown.status_code == 401
    assert "X-Zoho-Webhook-Secret" in answer.json()["error"]
    assert inbox_rows() == []
    assert sandbox.requests() == []
    assert secret not in caplog.text and "wrong-but-long-enough-secret" not in caplog.text


def test_secret_in_query_parameter_is_accepted(sandbox, sqlite_ledger, secret) -> None:
    invoice, _, _ = usable_invoice(sandbox)
    with client() as c:
        answer = c.post(INVOICES, params={"secret": secret}, json=flat_invoice_body(invoice, "9820012345"))
    assert answer.status_code == 202


@pytest.mark.parametrize("configured", [None, "short"], ids=["no-connection", "short-secret"])
def test_unconfigured_secret_refuses_everything(sandbox, sqlite_ledger, set_connection, configured) -> None:
    install_secret(set_connection, configured)
    invoice, _, _ = usable_invoice(sandbox)
    with client() as c:
        answer = c.post(INVOICES, json=flat_invoice_body(invoice, "9820012345"), headers=headers("short"))
    assert answer.status_code == 503
    assert "zoho_books_webhook" in answer.json()["error"]
    assert inbox_rows() == []


def test_rotated_secret_is_picked_up(sandbox, sqlite_ledger, secret, set_connection) -> None:
    """The new secret works at once; the old one only until the cached copy expires."""
    invoice, _, _ = usable_invoice(sandbox)
    body = flat_invoice_body(invoice, "9820012345")
    new = "a-brand-new-rotated-secret-value"
    with client(secret_cache_seconds=3) as c:
        assert c.post(INVOICES, json=body, headers=headers(secret)).status_code == 202
        time.sleep(1.1)
        install_secret(set_connection, new)
        assert c.post(INVOICES, json=body, headers=headers(new)).status_code == 200
        time.sleep(3.1)
        assert c.post(INVOICES, json=body, headers=headers(secret)).status_code == 401
    assert inbox_rows()[0]["deliveries"] == 2


@pytest.mark.parametrize(
    ("path", "body", "status", "mentions"),
    [
        pytest.param(INVOICES, b'{"invoice_id": "INV-1", "customer_name": ', 400, "malformed JSON", id="truncated-json"),
        pytest.param(INVOICES, b"invoice_id=INV-1&total=5", 400, "malformed JSON", id="form-encoded"),
        pytest.param(INVOICES, b"", 400, "empty body", id="empty"),
        pytest.param(INVOICES, b'{"total": NaN}', 400, "NaN", id="nan"),
        pytest.param(INVOICES, b"\xff\xfe{}", 400, "UTF-8", id="not-utf8"),
        pytest.param(INVOICES, b"[]", 422, "JSON object", id="array"),
        pytest.param(INVOICES, b'{"estimate": {"estimate_id": "1"}}', 422, "unknown event", id="estimate-body"),
        pytest.param(PAYMENTS, b'{"invoice": {"invoice_id": "1"}}', 422, "unknown event", id="invoice-to-payments"),
        pytest.param(INVOICES, b'{"customer_name": "A", "total": 5}', 422, "missing invoice_id", id="missing-fields"),
        pytest.param(INVOICES, b'{"invoice_id": "INV-1", "customer_name": "A", "total": "5,000", "due_date": "2026-07-07"}',
                     422, "total", id="amount-with-comma"),
        pytest.param(INVOICES, b'{"invoice_id": "INV-1", "customer_name": ["A"], "total": 5, "due_date": "07/07/2026"}',
                     422, "due_date must be a date", id="wrong-types"),
        pytest.param(INVOICES, b'{"invoice": "INV-1"}', 422, "must be an object", id="default-not-object"),
        pytest.param(PAYMENTS, b'{"payment": {"amount": 10}}', 422, "payment.payment_id", id="payment-without-id"),
        pytest.param(PAYMENTS, b'{"payment_id": "98200", "amount": 0}', 422, "more than 0", id="payment-zero"),
        pytest.param("/webhooks/estimates", b"{}", 404, "unknown event", id="unknown-event-path"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_store_nothing(sandbox, sqlite_ledger, secret, path, body, status, mentions) -> None:
    with client() as c:
        answer = c.post(path, content=body, headers={**headers(secret), "Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert mentions in answer.json()["error"]
    assert inbox_rows() == []


def test_missing_fields_are_all_named(sandbox, sqlite_ledger, secret) -> None:
    with client() as c:
        answer = c.post(INVOICES, json={"invoice": {"invoice_id": "982000000501095"}}, headers=headers(secret))
    assert answer.status_code == 422
    assert set(answer.json()["fields"]) == {"invoice.customer_name", "invoice.total", "invoice.due_date"}


def test_oversized_body_is_413_whether_declared_or_streamed(sandbox, sqlite_ledger, secret) -> None:
    invoice, _, _ = usable_invoice(sandbox)
    big = json.dumps(flat_invoice_body(invoice, "9820012345", notes="x" * MAX_BODY_BYTES)).encode()

    def chunks():
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    with client() as c:
        declared = c.post(INVOICES, content=big, headers=headers(secret))
        streamed = c.post(INVOICES, content=chunks(), headers=headers(secret))  # chunked: no Content-Length
        small = c.post(INVOICES, json=flat_invoice_body(invoice, "9820012345", notes="x" * 1000), headers=headers(secret))
    assert declared.status_code == streamed.status_code == 413
    assert "limit" in declared.json()["error"]
    assert small.status_code == 202  # extra fields Zoho adds are ignored, within the limit
    assert len(inbox_rows()) == 1


def test_other_methods_are_refused(sandbox, sqlite_ledger, secret) -> None:
    with client() as c:
        assert c.get(INVOICES, headers=headers(secret)).status_code == 405
        assert c.get("/docs").status_code == 404  # no schema for unauthenticated callers


def test_unreachable_ledger_is_503_so_zoho_retries(sandbox, set_connection, secret) -> None:
    set_connection("reminder_ledger_default", {"conn_type": "postgres", "host": "127.0.0.1", "port": 1,
                                               "login": "postgres", "schema": "test"})
    invoice, _, _ = usable_invoice(sandbox)
    with client() as c:
        answer = c.post(INVOICES, json=flat_invoice_body(invoice, "9820012345"), headers=headers(secret))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "60"
    assert "retry later" in answer.json()["error"]
