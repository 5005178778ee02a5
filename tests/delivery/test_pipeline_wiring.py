"""The send pipeline honours what WhatsApp's webhooks told the ledger: opt-outs and numbers not on WhatsApp
are skipped at planning and at the claim, receipts settle ``unknown`` rows, and the tally says what
happened after "sent" and what this run did itself. Events arrive through the real endpoint, signed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from tests.delivery.helpers import (
    KIND,
    OCCASION,
    ORG,
    add_row,
    install_whatsapp,
    opaque,
    reply,
    row,
    serve,
    signed,
    status,
)
from zoho_whatsapp import pipeline
from zoho_whatsapp.ledger import RunInfo, SendKey, SendLedger
from zoho_whatsapp.ledger.delivery import callback_data
from zoho_whatsapp.ledger.schema import messages
from zoho_whatsapp.rules.messages import Planned, Skip

KEY = SendKey(ORG, KIND, OCCASION)
NUMBERS = ["+919820011101", "+919820011102", "+919820011103"]


def record(ledger: SendLedger, key: SendKey, numbers: list[str], run_id: str = "run-1") -> None:
    invoices = [{"invoice_id": f"98200000{n:05d}", "invoice_number": f"INV-{n:06d}", "customer_id": f"C{n}",
                 "customer_name": f"Customer {n}", "recipient": to} for n, to in enumerate(numbers)]
    ledger.record_fetched(key, invoices, RunInfo(dag_id="d", run_id=run_id))


def recipient_of(row: dict[str, Any]) -> str:
    return json.loads(row["source"])["recipient"]


def decide(row: dict[str, Any]) -> Planned | Skip:
    if not recipient_of(row).startswith("+"):
        return Skip("invalid_mobile", "not a number")
    source = json.loads(row["source"])
    return Planned(source["recipient"], source["recipient"][:5] + "XXXXXXXX", "payment_reminder", "en",
                   {"party_name": row["customer_name"], "invoice_number": row["invoice_number"],
                    "amount_due": "₹22,000.00", "due_date": "20 June 2026"})


def post(http: Any, url: str, document: dict[str, Any]) -> dict[str, Any]:
    body, headers = signed(document)
    answer = http.post(url, data=body, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_stop_between_planning_and_sending_stops_that_message_and_start_lifts_it(
    sandbox, ledger, set_connection, http
) -> None:
    install_whatsapp(set_connection, base=sandbox.connections()["whatsapp_default"])
    record(ledger, KEY, NUMBERS)
    assert pipeline.plan(ledger, KEY, decide) == {}
    refs = pipeline.batch(ledger, KEY, batch_size=100)
    with serve() as (base, _app):
        answer = post(http, f"{base}/webhook", reply(NUMBERS[1][1:], "Stop"))  # Meta's wa_id has no "+"
        assert answer["outcomes"] == {"opt_out": 1}
        results = [pipeline.send_batch(ledger, ref, RunInfo(dag_id="d", run_id="run-1", map_index=0, try_number=1),
                                       whatsapp_conn_id="whatsapp_default", messages_per_second=100, max_workers=2)
                   for ref in refs]
        assert sorted(m["to"] for m in sandbox.messages()) == [NUMBERS[0], NUMBERS[2]]
        assert sum(r.counts["skipped_opted_out"] for r in results) == 1
        stopped = next(r for r in ledger.rows(key=KEY) if r["recipient"] == NUMBERS[1])
        assert (stopped["status"], stopped["reason"]) == ("skipped", "opted_out")
        assert "START" in stopped["error_message"] and stopped["wamid"] is None
        # every send carries the row's key, which the receipts echo back
        bodies = [r["json"] for r in sandbox.requests(service="whatsapp") if r["method"] == "POST"]
        sent = {r["recipient"]: r for r in ledger.rows(key=KEY, status=("sent",))}
        assert {b["to"]: b["biz_opaque_callback_data"] for b in bodies} == {
            to: callback_data(ORG, KIND, r["invoice_id"], OCCASION) for to, r in sent.items()}

        assert post(http, f"{base}/webhook", reply(NUMBERS[1][1:], "START"))["outcomes"] == {"opt_in": 1}
    later = SendKey(ORG, KIND, "2026-11-26")
    record(ledger, later, NUMBERS, run_id="run-2")
    assert pipeline.plan(ledger, later, decide) == {}
    for ref in pipeline.batch(ledger, later, batch_size=100):
        pipeline.send_batch(ledger, ref, RunInfo(dag_id="d", run_id="run-2", map_index=0, try_number=1),
                            whatsapp_conn_id="whatsapp_default", messages_per_second=100, max_workers=2)
    assert sorted(m["to"] for m in sandbox.messages()[2:]) == NUMBERS


def test_planning_skips_opted_out_and_not_on_whatsapp_numbers_within_the_window(ledger, endpoint, http) -> None:
    earlier = add_row(ledger.engine, "9820000000900", wamid="wamid.EARLIER", recipient=NUMBERS[0], occasion="2026-11-20")
    answer = post(http, endpoint, status("wamid.EARLIER", "failed", code=131026, recipient=NUMBERS[0][1:]))
    assert answer["outcomes"] == {"failed": 1} and row(ledger.engine, earlier)["delivery_error_class"] == "NotOnWhatsApp"
    post(http, endpoint, reply(NUMBERS[1][1:], "बंद करें"))

    record(ledger, KEY, NUMBERS)
    skipped = pipeline.plan(ledger, KEY, decide)
    assert skipped == {"not_on_whatsapp": 1, "opted_out": 1}
    rows = {recipient_of(r): r for r in ledger.rows(key=KEY)}
    states = {to: (r["status"], r["reason"]) for to, r in rows.items()}
    assert states == {NUMBERS[0]: ("skipped", "not_on_whatsapp"), NUMBERS[1]: ("skipped", "opted_out"),
                      NUMBERS[2]: ("planned", None)}
    assert all(r["phone_masked"] for r in rows.values())
    # the batches carry the window planning used, for the claims
    [ref] = pipeline.batch(ledger, KEY, batch_size=100, not_on_whatsapp_days=7)
    assert ref.not_on_whatsapp_days == 7 and type(ref).from_dict(ref.to_dict()).not_on_whatsapp_days == 7

    # With a window of 0 days the number is tried again; an opt-out has no window.
    record(ledger, KEY, NUMBERS, run_id="run-2")  # a re-run re-plans what was skipped
    assert pipeline.plan(ledger, KEY, decide, not_on_whatsapp_days=0) == {"opted_out": 1}
    claim = ledger.claim(next(r["id"] for r in ledger.rows(key=KEY) if r["recipient"] == NUMBERS[0]),
                         RunInfo(run_id="run-2"), "t" * 32, not_on_whatsapp_days=0)
    assert claim.claimed


def test_the_claim_refuses_a_number_that_failed_as_not_on_whatsapp_after_planning(ledger, endpoint, http) -> None:
    record(ledger, KEY, NUMBERS[:1])
    pipeline.plan(ledger, KEY, decide)
    [planned] = ledger.rows(key=KEY, status=("planned",))
    earlier = add_row(ledger.engine, "9820000000900", wamid="wamid.EARLIER", recipient=NUMBERS[0], occasion="2026-11-20")
    post(http, endpoint, status("wamid.EARLIER", "failed", code=131026, recipient=NUMBERS[0][1:]))
    assert row(ledger.engine, earlier)["delivery_status"] == "failed"
    claim = ledger.claim(planned["id"], RunInfo(run_id="run-1"), "t" * 32)
    assert (claim.claimed, claim.reason) == (False, "not_on_whatsapp")
    after = row(ledger.engine, planned["id"])
    assert (after["status"], after["reason"], after["claimed_on"]) == ("skipped", "not_on_whatsapp", None)
    assert "30 days" in after["error_message"]


def test_tally_settles_unknown_rows_by_their_receipts_and_says_which_need_a_person(ledger, endpoint, http) -> None:
    for n, wamid in enumerate(["wamid.D", "wamid.R", "wamid.F", "wamid.S"]):
        add_row(ledger.engine, f"98200000001{n:02d}", wamid=wamid, recipient=f"+9198200222{n:02d}")
    post(http, endpoint, status("wamid.D", "delivered"))
    post(http, endpoint, status("wamid.R", "delivered"))
    post(http, endpoint, status("wamid.R", "read"))
    post(http, endpoint, status("wamid.F", "failed", code=131026, recipient="919820022202"))
    young = add_row(ledger.engine, "9820000000200", status="unknown", recipient="+919820033300")
    old = add_row(ledger.engine, "9820000000201", status="unknown", recipient="+919820033301")
    with ledger.engine.begin() as conn:
        conn.execute(messages.update().where(messages.c.id == old)
                     .values(updated_at=datetime.now(UTC) - timedelta(hours=2)))
    # Meta's receipt beat the send's own answer, which was then lost: the row was settled unknown after it.
    raced = add_row(ledger.engine, "9820000000202", status="sending", recipient="+919820033302")
    post(http, endpoint, status("wamid.RACED", "delivered", opaque=opaque("9820000000202")))
    with ledger.engine.begin() as conn:
        conn.execute(messages.update().where(messages.c.id == raced).values(status="unknown", reason="no_answer"))

    report = pipeline.tally(ledger, KEY)
    assert row(ledger.engine, raced)["status"] == "sent" and row(ledger.engine, raced)["wamid"] == "wamid.RACED"
    assert (report["sent"], report["unknown"]) == (5, 2)
    assert report["delivery"] == {
        "by_delivery": {"delivered": 2, "read": 1, "failed": 1, "sent": 1},
        "failed_by_class": {"NotOnWhatsApp": 1},
        "unknown_waiting": 1,  # a receipt may still settle it
        "unknown_to_check": 1,  # an hour without one: a person looks
    }
    assert row(ledger.engine, young)["status"] == row(ledger.engine, old)["status"] == "unknown"
    patient = pipeline.tally(ledger, KEY, unknown_after=timedelta(hours=3))["delivery"]
    assert (patient["unknown_waiting"], patient["unknown_to_check"]) == (2, 0)


def test_this_run_counts_only_what_the_run_itself_did(ledger) -> None:
    record(ledger, KEY, NUMBERS + ["not a number"], run_id="run-1")
    pipeline.plan(ledger, KEY, decide)
    for n, planned in enumerate(ledger.rows(key=KEY, status=("planned",))):
        assert ledger.claim(planned["id"], RunInfo(run_id="run-1"), f"{n:032d}").claimed
        if n == 2:
            ledger.settle(planned["id"], f"{n:032d}", "failed", reason="whatsapp_error", error_code=131026)
        else:
            ledger.settle(planned["id"], f"{n:032d}", "sent", wamid=f"wamid.{n}")
    first = pipeline.tally(ledger, KEY, run_id="run-1")
    assert (first["sent"], first["failed"], first["skipped"]) == (2, 1, 1)
    assert {k: first["this_run"][k] for k in ("sent", "failed", "unknown", "skipped", "planned")} == {
        "sent": 2, "failed": 1, "unknown": 0, "skipped": 1, "planned": 0}

    record(ledger, KEY, NUMBERS + ["not a number"], run_id="run-2")  # the same date, run again
    pipeline.plan(ledger, KEY, decide)
    again = pipeline.tally(ledger, KEY, run_id="run-2")
    assert (again["sent"], again["failed"], again["skipped"]) == (2, 1, 1)  # the date's totals
    assert {k: again["this_run"][k] for k in ("sent", "failed", "unknown", "skipped", "planned")} == {
        "sent": 0, "failed": 0, "unknown": 0, "skipped": 1, "planned": 0}
    assert again["this_run"]["skipped_by_reason"] == {"invalid_mobile": 1}
    with ledger.engine.connect() as conn:
        runs = dict(conn.execute(sa.select(messages.c.wamid, messages.c.run_id).where(messages.c.wamid.is_not(None))).all())
    assert set(runs.values()) == {"run-1"}
