"""The webhook endpoint as Zoho Books reaches it: the real FastAPI app, the real inbox, the real secret check."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

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
    json_headers,
    live_server,
    signature,
    usable_invoice,
)
from zoho_whatsapp.webhooks.app import (
    MAX_BODY_BYTES,
    MIN_SECRET_CHARS,
    SECRET_HEADER,
    SIGNATURE_HEADER,
    WebhookNotConfigured,
    read_config,
)


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
    with live_server() as served, httpx.Client(base_url=served.url, timeout=30) as http:
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


def test_secret_in_the_url_is_refused_even_when_right(sandbox, sqlite_ledger, secret, caplog) -> None:
    """Over real HTTP: proxies and access logs keep URLs, so a secret there is never accepted."""
    invoice, _, _ = usable_invoice(sandbox)
    body = flat_invoice_body(invoice, "9820012345")
    with live_server() as served, httpx.Client(base_url=served.url, timeout=30) as http:
        alone = http.post(INVOICES, params={"secret": secret}, json=body)
        with_header = http.post(INVOICES, params={"secret": secret}, json=body, headers=headers(secret))
        refused = dict(served.app.state.resources.refused)
    assert alone.status_code == with_header.status_code == 401
    assert "not accepted in the URL" in alone.json()["error"] and "X-Zoho-Webhook-Secret" in alone.json()["error"]
    assert refused == {"unauthenticated": 2}
    assert inbox_rows() == [] and sandbox.requests() == []
    assert secret not in caplog.text


@pytest.mark.parametrize(
    "configured",
    [None, "tiny-9f3a", "x" * (MIN_SECRET_CHARS - 1), {"signing_secret": "s" * (MIN_SECRET_CHARS - 1)}],
    ids=["no-connection", "short-secret", "31-characters", "short-signing-secret"],
)
def test_unconfigured_secret_refuses_everything_and_says_so_only_in_the_log(
    sandbox, sqlite_ledger, set_connection, configured, caplog
) -> None:
    sent = configured if isinstance(configured, str) else "p" * MIN_SECRET_CHARS
    if isinstance(configured, dict):
        install_secret(set_connection, sent, **configured)
    else:
        install_secret(set_connection, configured)
    invoice, _, _ = usable_invoice(sandbox)
    with client() as c:
        answer = c.post(INVOICES, json=flat_invoice_body(invoice, "9820012345"), headers=headers(sent))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "60"
    assert answer.json() == {"error": "the webhook endpoint is temporarily unavailable; retry later"}
    assert "zoho_books_webhook" in caplog.text  # the operator learns why; the caller does not
    assert inbox_rows() == []
    assert isinstance(configured, dict) or configured is None or configured not in caplog.text


def test_a_32_character_secret_is_enough(sandbox, sqlite_ledger, set_connection) -> None:
    value = "k" * MIN_SECRET_CHARS
    install_secret(set_connection, value)
    invoice, _, _ = usable_invoice(sandbox)
    with client() as c:
        assert c.post(INVOICES, json=flat_invoice_body(invoice, None), headers=headers(value)).status_code == 202


@pytest.mark.parametrize(
    ("extra", "mentions"),
    [({"max_pending_events": "lots"}, "max_pending_events"), ({"max_pending_events": 0}, "max_pending_events"),
     ({"max_event_age_seconds": -1}, "max_event_age_seconds")],
)
def test_bad_extras_name_the_connection_and_the_field(extra, mentions) -> None:
    from airflow.sdk import Connection

    conn = Connection(conn_id="zoho_books_webhook", conn_type="generic", password="p" * 32, extra=json.dumps(extra))
    with pytest.raises(WebhookNotConfigured, match=f"'zoho_books_webhook'.*{mentions}"):
        read_config(conn)


def test_a_storm_of_wrong_secrets_reads_the_connection_at_most_once_per_interval(
    sandbox, sqlite_ledger, secret, monkeypatch
) -> None:
    """Real HTTP, 16 threads for 2.5 s: a wrong secret may re-read a just-rotated secret, but one
    reader at a time and never twice within min_refresh_seconds."""
    from airflow.sdk import BaseHook

    reads: list[float] = []
    original = BaseHook.get_connection.__func__

    def counting(cls, conn_id):
        if conn_id == "zoho_books_webhook":
            reads.append(time.monotonic())
        return original(cls, conn_id)

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(counting))
    invoice, _, _ = usable_invoice(sandbox)
    body = json.dumps(flat_invoice_body(invoice, None)).encode()
    wrong = {"X-Zoho-Webhook-Secret": "w" * 32, "Content-Type": "application/json"}
    with live_server(secret_cache_seconds=30, min_refresh_seconds=1.0) as served, \
            httpx.Client(base_url=served.url, timeout=30) as http:
        started = time.monotonic()

        def storm(_: int) -> list[int]:
            codes = []
            while time.monotonic() - started < 2.5:
                codes.append(http.post(INVOICES, content=body, headers=wrong).status_code)
            return codes

        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = [code for batch in pool.map(storm, range(16)) for code in batch]
        elapsed = time.monotonic() - started
        right = http.post(INVOICES, content=body, headers={**wrong, "X-Zoho-Webhook-Secret": secret})
        counted = served.app.state.resources.refused["unauthenticated"]
    assert set(codes) == {401} and counted == len(codes)
    gaps = [b - a for a, b in zip(reads, reads[1:], strict=False)]
    print(f"FIGURE wrong-secret storm: {len(codes)} requests in {elapsed:.1f} s -> {len(reads)} connection reads")
    assert 1 <= len(reads) <= 1 + elapsed / 1.0, reads
    assert all(gap >= 0.99 for gap in gaps), gaps  # never two reads within the interval
    assert right.status_code == 202  # the right secret still works
    assert len(inbox_rows()) == 1


def test_rotated_secret_is_picked_up(sandbox, sqlite_ledger, secret, set_connection) -> None:
    """The new secret works at once; the old one only until the cached copy expires."""
    invoice, _, _ = usable_invoice(sandbox)
    body = flat_invoice_body(invoice, "9820012345")
    new = "a-brand-new-rotated-secret-value"
    with client(secret_cache_seconds=3, min_refresh_seconds=1.0) as c:
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
        pytest.param(INVOICES, b'{"invoice_id": "INV-1", "invoice_id": "INV-2"}', 400, "more than once", id="duplicate-key"),
        pytest.param(INVOICES, b'{"invoice": {"total": 1, "total": 2}}', 400, "more than once", id="nested-duplicate-key"),
        pytest.param(INVOICES, b'{"total": 1e400}', 400, "out of range", id="infinite-number"),
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
    assert answer.json() == {"error": "the webhook endpoint is temporarily unavailable; retry later"}


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonp", "application/json; charset=latin-1",
     "application/json; boundary=x", "multipart/form-data; boundary=x"],
)
def test_a_body_that_is_not_declared_json_is_415(sandbox, sqlite_ledger, secret, content_type) -> None:
    invoice, _, _ = usable_invoice(sandbox)
    body = json.dumps(flat_invoice_body(invoice, None)).encode()
    extra = {} if content_type is None else {"Content-Type": content_type}
    with client() as c:
        answer = c.post(INVOICES, content=body, headers={**headers(secret), **extra})
        fine = c.post(INVOICES, content=body, headers={**headers(secret), "Content-Type": "Application/JSON; Charset=\"UTF-8\""})
    assert answer.status_code == 415, answer.text
    assert "application/json" in answer.json()["error"]
    assert fine.status_code == 202
    assert len(inbox_rows()) == 1


# -- the signature Zoho computes with the webhook's secret ------------------------------------------------------

SIGNING = "Zs0" * 12  # alphanumeric, 36 characters: what Zoho's secret field accepts (12-50)


def test_signed_deliveries_are_verified_when_a_signing_secret_is_configured(sandbox, sqlite_ledger, set_connection) -> None:
    """Only the signature (no shared header secret): hex or base64 HMAC-SHA256 of the raw body, query first."""
    install_secret(set_connection, None, signing_secret=SIGNING)
    invoices = [flat_invoice_body(i, None) for i in sandbox.invoices("sent")[:4]]
    bodies = [json.dumps(b).encode() for b in invoices]
    mac = [hmac.new(SIGNING.encode(), b, hashlib.sha256).digest() for b in bodies]
    as_json = {"Content-Type": "application/json"}
    with client() as c:
        hex_lower = c.post(INVOICES, content=bodies[0], headers={**as_json, SIGNATURE_HEADER: mac[0].hex()})
        hex_upper = c.post(INVOICES, content=bodies[1], headers={**as_json, SIGNATURE_HEADER: mac[1].hex().upper()})
        b64 = c.post(INVOICES, content=bodies[2], headers={**as_json, SIGNATURE_HEADER: base64.b64encode(mac[2]).decode()})
        query_mac = hmac.new(SIGNING.encode(), b"sourcezoho" + bodies[3], hashlib.sha256).hexdigest()
        with_query = c.post(INVOICES, params={"source": "zoho"}, content=bodies[3],
                            headers={**as_json, SIGNATURE_HEADER: query_mac})
        tampered = c.post(INVOICES, content=bodies[0].replace(b"}", b', "mobile": "9999999999"}'),
                          headers={**as_json, SIGNATURE_HEADER: mac[0].hex()})
        unsigned = c.post(INVOICES, content=bodies[0], headers=as_json)
        secret_only = c.post(INVOICES, content=bodies[0], headers={**as_json, SECRET_HEADER: SIGNING})
        other_key = c.post(INVOICES, content=bodies[0], headers={
            **as_json, SIGNATURE_HEADER: hmac.new(b"k" * 36, bodies[0], hashlib.sha256).hexdigest()})
    assert [a.status_code for a in (hex_lower, hex_upper, b64, with_query)] == [202, 202, 202, 202]
    assert [a.status_code for a in (tampered, unsigned, secret_only, other_key)] == [401, 401, 401, 401]
    assert len(inbox_rows()) == 4


def test_both_secrets_configured_both_are_required(sandbox, sqlite_ledger, secret, set_connection) -> None:
    install_secret(set_connection, secret, signing_secret=SIGNING)
    body = json.dumps(flat_invoice_body(sandbox.invoices("sent")[0], None)).encode()
    sig = {SIGNATURE_HEADER: signature(SIGNING, body)}
    with client() as c:
        header_only = c.post(INVOICES, content=body, headers=json_headers(secret))
        signature_only = c.post(INVOICES, content=body, headers={**sig, "Content-Type": "application/json"})
        both = c.post(INVOICES, content=body, headers={**json_headers(secret), **sig})
    assert (header_only.status_code, signature_only.status_code, both.status_code) == (401, 401, 202)


def test_a_timestamped_signature_is_checked_against_the_freshness_window(sandbox, sqlite_ledger, set_connection) -> None:
    """Zoho Payments' form ``t=<ms>,v=<hex of HMAC(t.body)>``: the signed time is the delivery's age."""
    install_secret(set_connection, None, signing_secret=SIGNING, max_event_age_seconds=3600)
    bodies = [json.dumps(flat_invoice_body(i, None)).encode() for i in sandbox.invoices("sent")[:2]]

    def signed(body: bytes, seconds_ago: float) -> dict[str, str]:
        stamp = str(int((time.time() - seconds_ago) * 1000))
        mac = hmac.new(SIGNING.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return {"Content-Type": "application/json", SIGNATURE_HEADER: f"t={stamp},v={mac}"}

    with client() as c:
        fresh = c.post(INVOICES, content=bodies[0], headers=signed(bodies[0], 5))
        replayed = c.post(INVOICES, content=bodies[1], headers=signed(bodies[1], 7200))
        moved = signed(bodies[1], 5)
        moved[SIGNATURE_HEADER] = moved[SIGNATURE_HEADER].replace("t=", "t=1")  # a forged, later time
        forged = c.post(INVOICES, content=bodies[1], headers=moved)
        refused = dict(c.app.state.resources.refused)
    assert fresh.status_code == 202
    assert replayed.status_code == 422 and "freshness window" in replayed.json()["error"]
    assert forged.status_code == 401
    assert refused == {"stale": 1, "unauthenticated": 1}
    assert [r["event_key"] for r in inbox_rows()] == [fresh.json()["event_key"]]


# -- replay and flood ---------------------------------------------------------------------------------------------


def test_an_event_older_than_the_window_is_refused_and_counted(sandbox, sqlite_ledger, secret, set_connection) -> None:
    """The record's own timestamps date a Default Payload; a body without any is judged by its key alone."""
    invoice = sandbox.invoice(sandbox.invoices("sent")[0]["invoice_id"])
    now = datetime.now(UTC)

    def stamped(age: timedelta) -> dict:
        when = (now - age).astimezone(timezone(timedelta(hours=5, minutes=30))).strftime("%Y-%m-%dT%H:%M:%S%z")
        return {"invoice": {**invoice, "created_time": when, "last_modified_time": when}}

    with client() as c:
        stale = c.post(INVOICES, json=stamped(timedelta(days=4)), headers=headers(secret))
        refused = dict(c.app.state.resources.refused)
        fresh = c.post(INVOICES, json=stamped(timedelta(minutes=2)), headers=headers(secret))
        install_secret(set_connection, secret, max_event_age_seconds=0)  # the window turned off
        c.post(INVOICES, json={"invoice_id": "INV-X1", **{k: invoice[k] for k in ("customer_name", "total", "due_date")}},
               headers=headers(secret))
    assert stale.status_code == 422 and "72-hour freshness window" in stale.json()["error"]
    assert refused == {"stale": 1}
    assert fresh.status_code == 202
    stored = inbox_rows()
    assert len(stored) == 2
    assert json.loads(stored[0]["payload"])["changed_at"] == (now - timedelta(minutes=2)).replace(microsecond=0).isoformat()


def test_the_pending_inbox_is_capped_duplicates_still_count(sandbox, sqlite_ledger, secret, set_connection) -> None:
    from zoho_whatsapp.webhooks.inbox import WebhookInbox

    install_secret(set_connection, secret, max_pending_events=3)
    bodies = [flat_invoice_body(i, None) for i in sandbox.invoices("overdue")[:5]]
    with client() as c:
        first = [c.post(INVOICES, json=b, headers=headers(secret)) for b in bodies[:4]]
        again = c.post(INVOICES, json=bodies[0], headers=headers(secret))
        inbox = WebhookInbox.from_connection()
        inbox.mark_handled(first[0].json()["event_id"], dag_id="d", run_id="r", outcome={})
        inbox.dispose()
        after = c.post(INVOICES, json=bodies[3], headers=headers(secret))
        refused = dict(c.app.state.resources.refused)
    assert [a.status_code for a in first] == [202, 202, 202, 429]
    assert first[3].headers["Retry-After"] == "60" and "retry later" in first[3].json()["error"]
    assert again.status_code == 200  # Zoho's retry of a stored event is still acknowledged
    assert after.status_code == 202  # a slot freed up
    assert refused == {"inbox_full": 1}
    assert [r["deliveries"] for r in inbox_rows()] == [2, 1, 1, 1]


@pytest.mark.parametrize(
    "value",
    ["t=99999999999999999999,v=00", "t=-1,v=00", "t=١٢٣,v=00", "t=1,v=é", "v=00,t=", "=,=,=", "sha256=" + "0" * 64,
     "t=1" * 3000, "\u202e" + "0" * 64, "t=253402300800000,v=" + "0" * 64],
)
def test_a_hostile_signature_header_is_401_never_5xx(sandbox, sqlite_ledger, set_connection, value) -> None:
    install_secret(set_connection, None, signing_secret=SIGNING)
    body = json.dumps(flat_invoice_body(sandbox.invoices("sent")[0], None)).encode()
    with live_server() as served, httpx.Client(base_url=served.url, timeout=30) as http:
        answer = http.post(INVOICES, content=body, headers={"Content-Type": "application/json",
                                                            SIGNATURE_HEADER: value.encode("utf-8")})
    assert answer.status_code == 401, answer.text
    assert inbox_rows() == []
