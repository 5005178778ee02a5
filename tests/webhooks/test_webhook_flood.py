"""A flood of valid, distinct events over real HTTP: the pending inbox cap holds under concurrency."""

from __future__ import annotations

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.webhooks.helpers import INVOICES, flat_invoice_body, inbox_rows, install_secret, json_headers, live_server
from zoho_whatsapp.webhooks.app import DEFAULT_MAX_PENDING_EVENTS, read_config

FLOOD = 1000
CAP = 250


def test_a_flood_of_distinct_events_stops_at_the_pending_cap(sandbox, ledger, set_connection) -> None:
    secret = sandbox.credentials["webhook_secret"]
    install_secret(set_connection, secret, max_pending_events=CAP)
    invoice = sandbox.invoices("sent")[0]
    bodies = [json.dumps(flat_invoice_body(invoice, None, invoice_id=f"INV-F{i:05d}")).encode() for i in range(FLOOD)]
    with live_server() as served, httpx.Client(base_url=served.url, timeout=60,
                                               limits=httpx.Limits(max_connections=16)) as http:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(lambda body: http.post(INVOICES, content=body, headers=json_headers(secret)), bodies))
        elapsed = time.monotonic() - started
        stored_first = [body for body, a in zip(bodies, answers, strict=True) if a.status_code == 202][:50]
        with ThreadPoolExecutor(max_workers=16) as pool:  # Zoho retrying stored events while the inbox is full
            retries = list(pool.map(lambda body: http.post(INVOICES, content=body, headers=json_headers(secret)),
                                    stored_first))
        refused = dict(served.app.state.resources.refused)
    codes = Counter(a.status_code for a in answers)
    rows = inbox_rows()
    print(f"FIGURE flood ({ledger.engine.dialect.name}, real HTTP, 16 threads): {FLOOD} distinct valid events in "
          f"{elapsed:.1f} s -> {dict(sorted(codes.items()))}; {len(rows)} stored (cap {CAP}); refused counter {refused}")
    assert codes == {202: CAP, 429: FLOOD - CAP}
    assert all(a.headers["Retry-After"] == "60" for a in answers if a.status_code == 429)
    assert len(rows) == CAP and {r["status"] for r in rows} == {"received"}
    assert {a.status_code for a in retries} == {200}
    assert refused == {"inbox_full": FLOOD - CAP}
    assert sandbox.requests() == []  # a flood costs no Zoho call and sends nothing from the endpoint


def test_the_default_cap_is_a_thousand_pending_events() -> None:
    from airflow.sdk import Connection

    config = read_config(Connection(conn_id="zoho_books_webhook", conn_type="generic", password="p" * 32))
    assert config.max_pending_events == DEFAULT_MAX_PENDING_EVENTS == 1000
