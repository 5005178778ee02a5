"""The sandbox plays Meta: its signed callbacks reach the real endpoint over HTTP and the ledger rows change.

Also the two figures for the note: status events applied per second through the endpoint, and the time
from the sandbox POSTing a status to the ledger row showing it.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from tests.delivery.helpers import add_row, install_whatsapp, opaque, row, serve, signed, status, suppression, table

RANK = {"sent": 1, "failed": 2, "delivered": 3, "read": 4}


def template_body(to: str, invoice_id: str) -> dict[str, Any]:
    params = {"party_name": "Priya Textiles", "invoice_number": f"INV-{invoice_id[-6:]}",
              "amount_due": "₹48,500.00", "due_date": "7 July 2026"}
    return {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
        "biz_opaque_callback_data": opaque(invoice_id),
        "template": {"name": "payment_reminder", "language": {"code": "en", "policy": "deterministic"},
                     "components": [{"type": "body", "parameters": [
                         {"type": "text", "parameter_name": k, "text": v} for k, v in params.items()]}]},
    }


class Sender:
    """Does what the send pipeline does around each request: claim (``sending``), send, settle."""

    def __init__(self, sandbox: Any, engine: sa.Engine) -> None:
        self.sb, self.engine = sandbox, engine
        self.url = f"{sandbox.url}/v23.0/{sandbox.credentials['phone_number_id']}/messages"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {sandbox.credentials['whatsapp_token']}"

    def send(self, invoice_id: str, number: str, customer: str = "Priya Textiles") -> int:
        from zoho_whatsapp.ledger.schema import messages

        row_id = add_row(self.engine, invoice_id, status="sending", recipient=number, customer=customer)
        try:
            answer = self.http.post(self.url, json=template_body(number, invoice_id), timeout=10)
            settled = {"status": "sent", "wamid": answer.json()["messages"][0]["id"]}
        except requests.RequestException:  # the answer was lost: the message may have gone out
            settled = {"status": "unknown", "reason": "no_answer"}
        with self.engine.begin() as conn:
            conn.execute(messages.update().where(messages.c.id == row_id, messages.c.status == "sending")
                         .values(**settled))
        return row_id


def numbers(sandbox: Any, failing: int, working: int) -> tuple[list[str], list[str]]:
    """Distinct mobiles: (``failing`` the sandbox fails asynchronously — it decides by number, ``working``)."""
    bad: list[str] = []
    good: list[str] = []
    for n in range(10_000):
        number = f"+91982{n:07d}"
        (bad if sandbox.callbacks.fails(number[1:]) else good).append(number)
        if len(bad) >= failing and len(good) >= working:
            break
    return bad[:failing], good[:working]


@pytest.mark.sandbox(invoices=20)
def test_sandbox_callbacks_reach_the_endpoint_and_the_rows_change(sandbox, ledger, set_connection, http) -> None:
    install_whatsapp(set_connection, base=sandbox.connections()["whatsapp_default"], **sandbox.webhook_extras())
    with serve() as (base, _app):
        # Switched on the way a test in another process would: the control endpoint.
        faults = http.post(f"{sandbox.url}/_sandbox/faults", json={
            "callback_url": f"{base}/webhook", "callback_delay_ms": 20, "callback_failed_percent": 10,
            "callback_duplicate_percent": 25, "callback_reorder_percent": 30}).json()["faults"]
        assert faults["callback_url"] == f"{base}/webhook"
        sender = Sender(sandbox, ledger.engine)
        bad, good = numbers(sandbox, failing=3, working=25)
        targets = good[:10] + bad + good[10:]  # the replies (2nd, 5th message) come from working numbers
        rows: dict[int, str] = {}
        for n, number in enumerate(targets):
            if n == 7:
                sandbox.set_faults(whatsapp_drop_after_accept=1)  # accepted by "Meta", the answer never arrives
            rows[sender.send(f"98200000{n:07d}", number, customer=f"Customer {n}")] = number
        assert sandbox.callbacks.wait_idle(timeout=30), "the sandbox still has callbacks to deliver"
        over_http = http.get(f"{sandbox.url}/_sandbox/whatsapp/callbacks").json()
    log = over_http["callbacks"]
    assert over_http["webhook_extras"] == sandbox.webhook_extras()
    assert {(e["outcome"], e["http_status"]) for e in log} == {("delivered", 200)}  # every POST answered 200
    posted: dict[str, list[str]] = defaultdict(list)
    for entry in log:
        if entry["kind"] == "status":
            posted[entry["wamid"]].append(entry["status"])
    sent = {m["wamid"]: m for m in sandbox.messages()}
    assert len(sent) == len(targets)

    unknown_row = list(rows)[7]
    finals = {row_id: row(ledger.engine, row_id) for row_id in rows}
    for row_id, final in finals.items():
        statuses = posted[final["wamid"]]
        expected = "failed" if "failed" in statuses else max(statuses, key=RANK.__getitem__)
        assert final["status"] == "sent", (row_id, final["status"], final["reason"])
        assert final["delivery_status"] == expected, (row_id, statuses)
        assert final["wamid"] in sent
    resolved = finals[unknown_row]
    assert resolved["reason"] == "confirmed_by_meta" and resolved["wamid"] == sandbox.messages()[7]["wamid"]
    failing = {rows[r] for r, f in finals.items() if f["delivery_status"] == "failed"}
    assert failing == set(bad)
    assert {f["delivery_error_class"] for f in finals.values() if f["delivery_status"] == "failed"} == {"NotOnWhatsApp"}
    for number in failing:
        assert suppression(ledger.engine, number) == "not_on_whatsapp"

    events = table(ledger.engine, "whatsapp_events")
    status_posts = [e for e in log if e["kind"] == "status"]
    assert sum(e["deliveries"] for e in events if e["kind"] == "status") == len(status_posts)
    assert len([e for e in events if e["kind"] == "status"]) == len({(e["wamid"], e["status"]) for e in status_posts})
    assert any(e["deliveries"] > 1 for e in events), "the sandbox sent no duplicate"
    assert any(e["outcome"] == "stale" for e in events), "the sandbox sent nothing out of order"

    replies = {r["text"]: r for r in table(ledger.engine, "whatsapp_replies")}
    assert set(replies) == {"paid yesterday", "STOP"}
    by_text = {e["text"]: e["wa_id"] for e in log if e["kind"] == "message"}
    assert replies["paid yesterday"]["customer_name"] == "Customer 1"  # the 2nd accepted message's customer
    assert replies["STOP"]["customer_name"] == "Customer 4" and replies["STOP"]["consent_action"] == "opt_out"
    assert suppression(ledger.engine, "+" + by_text["STOP"]) == "opted_out"
    assert suppression(ledger.engine, "+" + by_text["paid yesterday"]) is None
    print(f"FIGURE sandbox callbacks ({ledger.engine.dialect.name}): {len(targets)} messages, {len(status_posts)} "
          f"status POSTs ({sum(e['duplicate'] for e in status_posts)} duplicates), "
          f"{len(failing)} async failures, 1 unknown resolved, 2 replies")


@pytest.mark.sandbox(invoices=20)
def test_time_from_a_sandbox_status_to_the_ledger_row(sandbox, ledger, set_connection) -> None:
    install_whatsapp(set_connection, base=sandbox.connections()["whatsapp_default"], **sandbox.webhook_extras())
    with serve() as (base, _app):
        sandbox.set_faults(callback_url=f"{base}/webhook", callback_delay_ms=50, callback_failed_percent=0,
                           callback_duplicate_percent=0, callback_reorder_percent=0, callback_replies=[])
        sender = Sender(sandbox, ledger.engine)
        sender.send("9820000000999", "+919820099999")  # warms up the endpoint's ledger connection
        sandbox.callbacks.wait_idle(10)
        latencies, round_trips = [], []
        for n in range(30):
            row_id = sender.send(f"98200001{n:05d}", f"+9198201{n:05d}")
            deadline = time.monotonic() + 10
            while row(ledger.engine, row_id)["delivery_status"] is None:
                assert time.monotonic() < deadline, "the ledger row never changed"
                time.sleep(0.001)
            seen = time.time()
            wamid = row(ledger.engine, row_id)["wamid"]
            assert sandbox.callbacks.wait_idle(10)  # the round trip below is known once the POST was answered
            first = min((e for e in sandbox.callback_log() if e["wamid"] == wamid and e["first_post_at"]),
                        key=lambda e: e["first_post_at"])
            latencies.append((seen - first["first_post_at"]) * 1000)
            round_trips.append(first["attempts"][0]["ms"])
        sandbox.callbacks.wait_idle(10)
    latencies.sort()
    print(f"FIGURE sandbox status event -> ledger row ({ledger.engine.dialect.name}, 30 messages): median "
          f"{statistics.median(latencies):.1f} ms, p95 {latencies[int(len(latencies) * 0.95) - 1]:.1f} ms, "
          f"max {latencies[-1]:.1f} ms (the sandbox's POST round trip: median {statistics.median(round_trips):.1f} ms)")
    assert statistics.median(latencies) < 1000


def test_status_events_applied_per_second_through_the_endpoint(ledger, secrets) -> None:
    count, workers = 600, 8
    wamids = [f"wamid.RATE{n:05d}" for n in range(count)]
    row_ids = [add_row(ledger.engine, f"98200002{n:05d}", wamid=w, recipient=f"+9198202{n:05d}")
               for n, w in enumerate(wamids)]
    bodies = [signed(status(w, "delivered")) for w in wamids]
    with serve(secret_max_age=30.0, secret_min_refresh=5.0) as (base, _app):  # the production cache
        url = f"{base}/webhook"
        sessions = [requests.Session() for _ in range(workers)]
        sessions[0].post(url, data=signed(status("wamid.WARM", "sent"))[0],
                         headers=signed(status("wamid.WARM", "sent"))[1])

        def post(n: int) -> int:
            body, headers = bodies[n]
            return sessions[n % workers].post(url, data=body, headers=headers, timeout=30).status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            codes = list(pool.map(post, range(count)))
        elapsed = time.perf_counter() - started
        for session in sessions:
            session.close()
    assert codes == [200] * count
    with ledger.engine.connect() as conn:
        from zoho_whatsapp.ledger.schema import messages

        delivered = conn.execute(sa.select(sa.func.count()).where(
            messages.c.id.in_(row_ids), messages.c.delivery_status == "delivered")).scalar()
    assert delivered == count
    print(f"FIGURE status events applied through the endpoint ({ledger.engine.dialect.name}): {count} events, "
          f"{workers} concurrent senders, {elapsed:.2f} s -> {count / elapsed:.0f} events/s")
