"""Claiming several messages in one transaction gives what claiming them one after another gives.

The sender claims a few messages at a time (``SendLedger.claim_many``); each outcome, and every row
it leaves, must be the one-at-a-time claim's: on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from tests.ledger.test_message_groups import ORG, days_ago, invoice, key, plan_statement
from zoho_whatsapp.ledger import RecipientCap, RunInfo, SendKey, SendLedger
from zoho_whatsapp.ledger.ledger import _ADVISORY_LOCKS, claim_lock_keys
from zoho_whatsapp.ledger.schema import messages

CAP = RecipientCap(1, ("invoice_created", "payment_received"))
RUN = RunInfo(dag_id="d", run_id="today", map_index=2, try_number=1)


def plan_alert(ledger: SendLedger, n: int, recipient: str, customer: str = "a1") -> int:
    alert = SendKey(ORG, "invoice_created", invoice(n)["invoice_id"])
    ledger.record_fetched(alert, [invoice(n, customer)], RunInfo(run_id="r"))
    ledger.plan_many([{"id": r["id"], "recipient": recipient, "phone_masked": "m", "template_name": "invoice_created",
                       "template_language": "en", "parameters": {}} for r in ledger.rows(key=alert)], [])
    return ledger.rows(key=alert)[0]["id"]


def outcomes(claims: list) -> list[str]:
    return ["claimed" if c.claimed else str(c.reason) for c in claims]


def row_states(ledger: SendLedger) -> dict[int, tuple]:
    return {r["id"]: (r["status"], r["reason"], r["claim_token"], r["run_id"], r["attempts"]) for r in ledger.rows()}


def test_a_mixed_chunk_gets_each_messages_own_outcome_and_every_row_its_stamp(ledger: SendLedger) -> None:
    from zoho_whatsapp.ledger.delivery import apply_reply
    from zoho_whatsapp.webhooks.whatsapp_events import InboundMessage

    today = days_ago(0)
    # c2 had a reminder taken earlier today (for yesterday): a cadence of 3 days refuses today's message
    earlier = plan_statement(ledger, days_ago(1), [invoice(20, "c2")], recipient="+919800000002")
    assert ledger.claim(earlier, RunInfo(run_id="yesterday", try_number=1), "ty").claimed
    ledger.settle(earlier, "ty", "sent", wamid="wamid.y")
    now = datetime.now(UTC)
    with ledger.transaction() as conn:  # c4's number replied STOP after planning
        apply_reply(conn, InboundMessage(message_id="in1", sender="+919800000004", at=now, type="text", text="STOP"),
                    now=now, opt_out=("STOP",), opt_in=("START",))
    invoices = [invoice(1, "c1"), invoice(2, "c1"), invoice(3, "c1"), invoice(4, "c2"),
                invoice(5, "c4"), invoice(6, "c5"), invoice(7, "c5")]
    ledger.record_fetched(key(today), invoices, RunInfo(dag_id="d", run_id="today"))
    inr = plan_statement(ledger, today, invoices[:2], recipient="+919800000001", fetch=False)
    usd = plan_statement(ledger, today, invoices[2:3], currency="USD", recipient="+919800000001", fetch=False)
    c2 = plan_statement(ledger, today, invoices[3:4], recipient="+919800000002", fetch=False)
    c4 = plan_statement(ledger, today, invoices[4:5], recipient="+919800000004", fetch=False)
    part = plan_statement(ledger, today, invoices[5:7], recipient="+919800000005", fetch=False)
    with ledger.transaction() as conn:  # one invoice of c5's message was taken by someone else
        conn.execute(messages.update().where(messages.c.message_id == part, messages.c.id != part)
                     .values(status="sending"))
    before = row_states(ledger)

    wanted = [inr, 999_999, usd, c2, c4, part]
    claims = ledger.claim_many(wanted, RUN, "t", min_days_between=3)

    # c1's INR and USD statements are two messages (another currency is no repeat); c2 is refused by the cadence
    assert outcomes(claims) == ["claimed", "missing", "claimed", "cadence", "opted_out", "taken"]
    after = row_states(ledger)
    group = {lead: [r["id"] for r in ledger.rows() if lead in (r["id"], r["message_id"])] for lead in wanted}
    assert len(group[inr]) == 2 and len(group[part]) == 2
    for lead in (inr, usd):
        assert {after[i] for i in group[lead]} == {("sending", None, "t", "today", 1)}
    # a refusal skips the message's rows and leaves the claim's stamp on them, as a single claim does
    assert {after[i] for i in group[c2]} == {("skipped", "cadence", "t", "today", 1)}
    assert {after[i] for i in group[c4]} == {("skipped", "opted_out", "t", "today", 1)}
    (refused,) = [r for r in ledger.rows() if r["id"] == c2]
    assert f"row {earlier}) is sent, within 3 day(s)" in refused["error_message"]
    assert {i: after[i] for i in group[part]} == {i: before[i] for i in group[part]}  # untouched
    claimed = {r["id"]: r for r in ledger.rows(status=("sending",))}
    assert all(claimed[i]["map_index"] == 2 and claimed[i]["claimed_on"] == today for i in group[inr])


def test_a_message_refused_by_one_claimed_earlier_in_the_same_chunk(ledger: SendLedger) -> None:
    # Two alerts to one number under a cap of one an hour, and two messages to one customer under a cadence:
    # in one chunk, as one after the other, the first goes and the second is refused because of it.
    first, second = plan_alert(ledger, 1, "+919800000009"), plan_alert(ledger, 2, "+919800000009")
    capped = ledger.claim_many([first, second], RUN, "a", recipient_cap=CAP)
    assert outcomes(capped) == ["claimed", "recipient_hourly_cap"]
    (skipped,) = ledger.rows(status=("skipped",))
    assert skipped["id"] == second and "1 message(s) to this number" in skipped["error_message"]

    one, other = plan_alert(ledger, 3, "+919800000031", "z1"), plan_alert(ledger, 4, "+919800000032", "z1")
    cadence = ledger.claim_many([one, other], RUN, "c", min_days_between=1)
    assert outcomes(cadence) == ["claimed", "cadence"]
    refused = ledger.rows(status=("skipped",))[-1]
    assert refused["id"] == other and f"row {one}) is sending" in refused["error_message"]


def test_a_row_taken_between_reading_and_taking_rolls_the_chunk_back_and_claims_one_at_a_time(
        ledger: SendLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    if ledger.engine.dialect.name != "postgresql":
        pytest.skip("SQLite: the claim holds the single writer's lock from its first statement, no one can write")
    today = days_ago(0)
    ledger.record_fetched(key(today), [invoice(1, "c1"), invoice(2, "c2")], RunInfo(run_id="today"))
    first = plan_statement(ledger, today, [invoice(1, "c1")], fetch=False)
    second = plan_statement(ledger, today, [invoice(2, "c2")], recipient="+919800000002", fetch=False)
    real = SendLedger._cadence_rows
    raced: list[int] = []

    def racing(*args: object) -> list:  # after the claim read the rows, another writer takes ``second``
        if not raced:
            raced.append(second)
            with ledger.engine.begin() as other:
                other.execute(messages.update().where(messages.c.id == second).values(status="sending",
                                                                                      claim_token="other"))
        return real(*args)

    monkeypatch.setattr(SendLedger, "_cadence_rows", staticmethod(racing))
    claims = ledger.claim_many([first, second], RUN, "t1")

    assert raced and outcomes(claims) == ["claimed", "taken"]
    states = row_states(ledger)
    assert states[first] == ("sending", None, "t1", "today", 1)  # rolled back once, claimed again: attempts 1
    assert states[second][:3] == ("sending", None, "other")


def test_a_claim_postgresql_aborts_to_break_a_deadlock_is_run_again(ledger: SendLedger, caplog) -> None:
    """Another writer holds the message's rows and then wants the customer's claim lock, which the claim
    waiting for those rows holds: PostgreSQL aborts the claim (the first to wait), and the claim, having
    written nothing, runs again and takes the message."""
    if ledger.engine.dialect.name != "postgresql":
        pytest.skip("deadlocks are PostgreSQL's: SQLite has a single writer")
    lead = plan_statement(ledger, days_ago(0), [invoice(1, "c1"), invoice(2, "c1")])
    (lead_row,) = ledger.rows(id=lead)
    outcome: dict[str, object] = {}

    def claim() -> None:
        try:
            outcome["claims"] = ledger.claim_many([lead], RUN, "t")
        except Exception as error:  # noqa: BLE001 - the assertion below shows it
            outcome["error"] = error

    with ledger.engine.connect() as other, other.begin():
        other.execute(sa.text("SET LOCAL deadlock_timeout = '20s'"))  # the claim is the one PostgreSQL aborts
        other.execute(messages.update().where(sa.or_(messages.c.id == lead, messages.c.message_id == lead))
                      .values(batch=7))
        claimer = threading.Thread(target=claim)
        claimer.start()
        waiting = sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = :db")
        with ledger.engine.connect() as watch:
            deadline = time.monotonic() + 10
            while not watch.execute(waiting, {"db": ledger.engine.url.database}).scalar():
                assert time.monotonic() < deadline, "the claim never waited for the held rows"
                time.sleep(0.02)
        other.execute(_ADVISORY_LOCKS, {"keys": claim_lock_keys(lead_row, capped=False)})  # the cycle
    claimer.join(30)

    assert "error" not in outcome, outcome.get("error")
    assert outcomes(outcome["claims"]) == ["claimed"]
    assert {(r["status"], r["claim_token"], r["batch"]) for r in ledger.rows()} == {("sending", "t", 7)}
    assert "deadlock" in caplog.text and "trying again (2 of 5)" in caplog.text
