"""One message, several invoices: the ledger claims, settles and counts a customer's statement as one.

On SQLite and PostgreSQL. Every invoice keeps its own row; the message's rows point to its lead row.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from zoho_whatsapp.ledger import RunInfo, SendKey, SendLedger
from zoho_whatsapp.ledger.delivery import apply_status, callback_data
from zoho_whatsapp.ledger.schema import messages

ORG = "600100"
KIND = "payment_reminder"
NUMBER = "+919820012345"


def key(occasion: str) -> SendKey:
    return SendKey(ORG, KIND, occasion)


def invoice(n: int, customer: str = "c1", **extra: object) -> dict:
    return {"invoice_id": f"98200000{n:04d}", "invoice_number": f"INV-{n:06d}", "customer_id": customer,
            "customer_name": f"Customer {customer}", "balance": 100, **extra}


def plan_statement(ledger: SendLedger, occasion: str, invoices: list[dict], *, currency: str = "INR",
                   recipient: str = NUMBER, stage: int = 7, fetch: bool = True) -> int:
    """Record ``invoices`` for ``occasion`` (unless recorded already: ``fetch=False``) and plan them as
    one message; returns its lead row id."""
    if fetch:
        ledger.record_fetched(key(occasion), invoices, RunInfo(dag_id="d", run_id=f"run-{occasion}"))
    ids = {r["invoice_id"]: r["id"] for r in ledger.rows(key=key(occasion), status=("fetched",))}
    wanted = [ids[i["invoice_id"]] for i in invoices]
    lead = min(wanted)
    ledger.plan_many([{"id": row_id, "recipient": recipient, "phone_masked": "+91 98XXXXXX45",
                       "template_name": "reminder_overdue_7_multi", "template_language": "en",
                       "parameters": {"party_name": "x"} if row_id == lead else None, "message_id": lead,
                       "stage": stage, "currency_code": currency} for row_id in wanted], [])
    return lead


def statuses(ledger: SendLedger, lead: int) -> list[str]:
    return [r["status"] for r in ledger.rows() if r["id"] == lead or r["message_id"] == lead]


def claim(ledger: SendLedger, lead: int, token: str, run: str = "r", **limits: object):
    return ledger.claim(lead, RunInfo(run_id=run, try_number=1), token, **limits)


def days_ago(n: int) -> str:
    return (datetime.now(UTC) + timedelta(hours=5, minutes=30) - timedelta(days=n)).date().isoformat()


def test_a_message_is_claimed_settled_and_counted_as_one(ledger: SendLedger) -> None:
    lead = plan_statement(ledger, "2026-11-20", [invoice(n) for n in range(1, 12)])
    assert ledger.planned_recipients(key("2026-11-20")) == [(lead, NUMBER)]  # batching sees one message
    assert claim(ledger, lead, "t1").claimed
    assert statuses(ledger, lead) == ["sending"] * 11
    assert ledger.settle(lead, "t1", "sent", wamid="wamid.one")
    rows = ledger.rows(key=key("2026-11-20"))
    assert {(r["status"], r["wamid"]) for r in rows} == {("sent", "wamid.one")}
    account = ledger.account(key("2026-11-20"))
    assert account["by_status"] == {"sent": 11} and account["messages_by_status"] == {"sent": 1}
    assert account["sent_by_stage"] == {"+7": 11}


def test_concurrent_claims_of_one_message_take_it_once_whole(ledger: SendLedger) -> None:
    lead = plan_statement(ledger, "2026-11-20", [invoice(n) for n in range(1, 6)])
    outcomes: list[bool] = []
    barrier = threading.Barrier(4)

    def contender() -> None:
        barrier.wait()
        outcomes.append(claim(ledger, lead, uuid.uuid4().hex).claimed)

    threads = [threading.Thread(target=contender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False, False, False, True]
    assert set(statuses(ledger, lead)) == {"sending"} and len({r["claim_token"] for r in ledger.rows()}) == 1


def test_a_message_that_is_not_in_the_ledger_is_not_claimed(ledger: SendLedger) -> None:
    lead = plan_statement(ledger, "2026-11-20", [invoice(1)])
    result = claim(ledger, lead + 1000, "t")
    assert (result.claimed, result.reason) == (False, "missing")
    assert statuses(ledger, lead) == ["planned"]


def test_a_message_whose_rows_moved_on_is_not_claimed_at_all(ledger: SendLedger) -> None:
    lead = plan_statement(ledger, "2026-11-20", [invoice(1), invoice(2), invoice(3)])
    other = max(r["id"] for r in ledger.rows())
    with ledger.transaction() as conn:  # one invoice taken by someone else meanwhile
        conn.execute(messages.update().where(messages.c.id == other).values(status="skipped", reason="x"))
    result = claim(ledger, lead, "t")
    assert not result.claimed and result.reason == "taken"
    assert statuses(ledger, lead) == ["planned", "planned", "skipped"]  # all or none


def test_the_customer_cadence_counts_sent_sending_and_unknown(ledger: SendLedger) -> None:
    for status in ("sent", "sending", "unknown"):
        ledger.reset()
        yesterday = plan_statement(ledger, "2026-11-19", [invoice(1)])
        assert claim(ledger, yesterday, "t0").claimed
        if status != "sending":
            ledger.settle(yesterday, "t0", status, wamid="w0" if status == "sent" else None)
        with ledger.transaction() as conn:
            conn.execute(messages.update().where(messages.c.id == yesterday).values(claimed_on=days_ago(1)))
        # another invoice of the same customer, a day later: within 3 days of a message that may have arrived
        today = plan_statement(ledger, "2026-11-20", [invoice(2), invoice(3)])  # another occasion: own rows
        result = claim(ledger, today, "t1", min_days_between=3)
        assert not result.claimed and result.reason == "cadence", status
        assert statuses(ledger, today) == ["skipped", "skipped"]
        assert ledger.customers_messaged(key("2026-11-20"), since_day=days_ago(3))["c1"][0][0] == days_ago(1)


def test_the_cadence_frees_the_customer_after_the_days_and_ignores_failed_and_skipped(ledger: SendLedger) -> None:
    earlier = plan_statement(ledger, "2026-11-17", [invoice(1)])
    assert claim(ledger, earlier, "t0").claimed
    ledger.settle(earlier, "t0", "sent", wamid="w0")
    with ledger.transaction() as conn:
        conn.execute(messages.update().where(messages.c.id == earlier).values(claimed_on=days_ago(3)))
    failed = plan_statement(ledger, "2026-11-19", [invoice(4)])
    assert claim(ledger, failed, "t2").claimed
    ledger.settle(failed, "t2", "failed", reason="whatsapp_error", error_code=131026)
    today = plan_statement(ledger, "2026-11-20", [invoice(2)])
    assert claim(ledger, today, "t1", min_days_between=3).claimed  # 3 days ago is out; a failure is no message


def test_another_currency_the_same_day_is_not_a_repeat_but_another_customer_s_message_is_no_bar(
    ledger: SendLedger,
) -> None:
    everything = [invoice(1), invoice(2), invoice(3), invoice(5, customer="c2"), invoice(6)]
    ledger.record_fetched(key("2026-11-20"), everything, RunInfo(dag_id="d", run_id="run"))
    inr = plan_statement(ledger, "2026-11-20", everything[:2], currency="INR", fetch=False)
    usd = plan_statement(ledger, "2026-11-20", everything[2:3], currency="USD", fetch=False)
    other = plan_statement(ledger, "2026-11-20", everything[3:4], recipient="+919820099999", fetch=False)
    assert claim(ledger, inr, "a", min_days_between=3).claimed
    assert claim(ledger, usd, "b", min_days_between=3).claimed
    assert claim(ledger, other, "c", min_days_between=3).claimed
    # a second INR message to the same customer the same day (a new invoice on a re-run) is a repeat
    again = plan_statement(ledger, "2026-11-20", everything[4:], currency="INR", fetch=False)
    result = claim(ledger, again, "d", min_days_between=1)
    assert not result.claimed and result.reason == "cadence"


def test_a_receipt_reaches_every_invoice_of_the_message(ledger: SendLedger) -> None:
    from zoho_whatsapp.webhooks.whatsapp_events import StatusUpdate

    lead = plan_statement(ledger, "2026-11-20", [invoice(n) for n in range(1, 4)])
    assert claim(ledger, lead, "t").claimed
    # The send's answer was lost (no wamid): Meta's receipt finds the message by its callback data.
    ledger.settle(lead, "t", "unknown", reason="no_answer")
    rows = ledger.rows()
    with ledger.transaction() as conn:
        lead_row = next(r for r in rows if r["id"] == lead)
        opaque = callback_data(ORG, KIND, lead_row["invoice_id"], "2026-11-20")
        event = StatusUpdate(wamid="wamid.late", status="delivered", recipient="919820012345",
                             at=datetime.now(UTC), callback_data=opaque)
        outcome, _ = apply_status(conn, event, now=datetime.now(UTC))
    assert outcome == "resolved_unknown"
    after = ledger.rows()
    assert {(r["status"], r["delivery_status"], r["wamid"]) for r in after} == {("sent", "delivered", "wamid.late")}


def test_a_dead_claim_marks_the_whole_message_unknown(ledger: SendLedger) -> None:
    lead = plan_statement(ledger, "2026-11-20", [invoice(n) for n in range(1, 4)])
    assert ledger.claim(lead, RunInfo(run_id="r", map_index=0, try_number=1), "t").claimed
    assert ledger.close_dead_claims(key("2026-11-20"), run_id="r") == 3
    assert set(statuses(ledger, lead)) == {"unknown"}
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(messages.c.reason == "interrupted")).scalar_one() == 3


def test_without_a_customer_the_cadence_is_the_invoice_s(ledger: SendLedger) -> None:
    first = plan_statement(ledger, "2026-11-19", [invoice(1, customer="")])
    assert claim(ledger, first, "t0").claimed
    ledger.settle(first, "t0", "sent", wamid="w0")
    other = plan_statement(ledger, "2026-11-20", [invoice(2, customer="")])  # another invoice: its own cadence
    assert claim(ledger, other, "t1", min_days_between=3).claimed
    again = plan_statement(ledger, "2026-11-21", [invoice(1, customer="")])  # the same invoice: held
    result = claim(ledger, again, "t2", min_days_between=3)
    assert not result.claimed and result.reason == "cadence"
