"""WhatsAppHook and BatchSender against the sandbox: what reached the API, and what the ledger says."""

from __future__ import annotations

from datetime import datetime

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from tests.contracts import WHATSAPP_CONTRACT, require_contract, schema_validator
from zoho_whatsapp.ledger import RunInfo, SendKey, SendLedger
from zoho_whatsapp.pipeline import batch
from zoho_whatsapp.rules.templates import build_template_message, load_templates
from zoho_whatsapp.whatsapp.batch import BatchRef, BatchSender
from zoho_whatsapp.whatsapp.errors import Outcome, WhatsAppSendError
from zoho_whatsapp.whatsapp.hook import WhatsAppHook

ORG, KIND, DAY = "600100", "payment_reminder", "2026-11-25"
KEY = SendKey(ORG, KIND, DAY)
NUMBERS = [f"+9198200{n:05d}" for n in range(1, 13)]


def plan(ledger: SendLedger, recipients: list[str]) -> BatchRef:
    invoices = [{"invoice_id": f"9820{i:04d}", "invoice_number": f"INV-{i:06d}", "customer_id": f"c{i}",
                 "customer_name": f"Customer {i}"} for i, _ in enumerate(recipients)]
    ledger.record_fetched(KEY, invoices, RunInfo(run_id="r"))
    rows = ledger.rows(organization_id=ORG, status=("fetched",))
    ledger.plan_many([
        {"id": row["id"], "recipient": to, "phone_masked": to[:5] + "XXXX", "template_name": "payment_reminder",
         "template_language": "en",
         "parameters": {"party_name": row["customer_name"], "invoice_number": row["invoice_number"],
                        "amount_due": "₹22,000.00", "due_date": "20 June 2026"}}
        for row, to in zip(rows, recipients, strict=True)
    ], [])
    [ref] = batch(ledger, KEY, batch_size=1000)
    assert ref == BatchRef(KEY, 0)
    return ref


def sender(ledger: SendLedger, try_number: int = 1, **kw: object) -> BatchSender:
    options = {"messages_per_second": 200.0, "max_workers": 6, "backoff_seconds": 0.05, "pair_interval": 0.0, **kw}
    return BatchSender(WhatsAppHook(timeout=2.0), ledger, load_templates(),
                       RunInfo(dag_id="d", run_id="r", map_index=0, try_number=try_number), **options)


def statuses(ledger: SendLedger) -> dict[str, tuple]:
    return {r["recipient"]: (r["status"], r["error_code"]) for r in ledger.rows(organization_id=ORG)}


def test_send_message_body_matches_the_official_contract(sandbox) -> None:
    spec = load_templates()["payment_reminder"]
    body = build_template_message(spec, "+919820012345", {
        "party_name": "Rajesh Enterprises", "invoice_number": "INV-000138", "amount_due": "₹22,000.00",
        "due_date": "20 June 2026"}, opaque="600100:payment_reminder:1:2026-11-25")
    wamid = WhatsAppHook().send_message(body)
    assert wamid.startswith("wamid.")
    request = sandbox.requests(service="whatsapp")[-1]
    assert request["json"] == body
    assert request["headers"]["Authorization"].startswith("Bearer ")
    assert request["path"] == f"/v23.0/{sandbox.credentials['phone_number_id']}/messages"
    [received] = sandbox.messages()
    assert received["text"] == ("Dear Rajesh Enterprises, Invoice INV-000138 for ₹22,000.00 was due on 20 June 2026. "
                                "Kindly arrange payment. Reply here for any queries.")
    contract = require_contract(WHATSAPP_CONTRACT)
    assert list(schema_validator(contract, "Message").iter_errors(request["json"])) == []


@pytest.mark.parametrize(("code", "outcome"), [(130429, Outcome.RETRY_LATER), (131026, Outcome.PERMANENT),
                                               (190, Outcome.STOP_RUN), (132001, Outcome.PERMANENT)])
def test_hook_classifies_error_envelopes(sandbox, code: int, outcome: Outcome) -> None:
    sandbox.set_faults(whatsapp_errors=[{"code": code, "count": 1}])
    body = build_template_message(load_templates()["payment_reminder"], "+919820012345", {
        "party_name": "A", "invoice_number": "B", "amount_due": "C", "due_date": "D"})
    with pytest.raises(WhatsAppSendError) as info:
        WhatsAppHook().send_message(body)
    assert (info.value.code, info.value.outcome) == (code, outcome)
    assert sandbox.messages() == []


def test_5xx_without_envelope_is_unknown(sandbox) -> None:
    sandbox.set_faults(whatsapp_5xx_no_envelope=1)
    body = build_template_message(load_templates()["payment_reminder"], "+919820012345", {
        "party_name": "A", "invoice_number": "B", "amount_due": "C", "due_date": "D"})
    with pytest.raises(WhatsAppSendError) as info:
        WhatsAppHook().send_message(body)
    assert info.value.outcome is Outcome.UNKNOWN


def test_batch_with_some_failures_sends_the_rest(sandbox, ledger) -> None:
    ref = plan(ledger, NUMBERS)
    sandbox.set_faults(whatsapp_errors=[{"code": 131026, "to": NUMBERS[3]}, {"code": 132000, "to": NUMBERS[7]}])
    result = sender(ledger).send(ref)
    assert result.counts["sent"] == 10 and result.counts["failed"] == 2
    received = sorted(m["to"] for m in sandbox.messages())
    assert received == sorted(n for n in NUMBERS if n not in (NUMBERS[3], NUMBERS[7]))
    s = statuses(ledger)
    assert s[NUMBERS[3]] == ("failed", 131026) and s[NUMBERS[7]] == ("failed", 132000)
    assert all(s[n][0] == "sent" for n in received)
    wamids = {r["wamid"] for r in ledger.rows(organization_id=ORG, status=("sent",))}
    assert wamids == {m["wamid"] for m in sandbox.messages()}


def test_throughput_errors_are_retried_and_nothing_is_sent_twice(sandbox, ledger) -> None:
    ref = plan(ledger, NUMBERS)
    sandbox.set_faults(whatsapp_errors=[{"code": 130429, "count": 4}])
    result = sender(ledger).send(ref)
    assert result.counts["sent"] == len(NUMBERS)
    assert sorted(m["to"] for m in sandbox.messages()) == sorted(NUMBERS)


def test_retry_later_that_persists_fails_the_task_for_an_airflow_retry(sandbox, ledger) -> None:
    ref = plan(ledger, NUMBERS[:3])
    sandbox.set_faults(whatsapp_errors=[{"code": 131016, "to": NUMBERS[1]}])
    with pytest.raises(AirflowException, match="1 message.*retry-later codes.*131016"):
        sender(ledger, retry_later_attempts=1).send(ref)
    assert statuses(ledger)[NUMBERS[1]] == ("planned", 131016)  # released: the next try sends it
    sandbox.set_faults(whatsapp_errors=[])
    sender(ledger, try_number=2).send(ref)
    assert sorted(m["to"] for m in sandbox.messages()) == sorted(NUMBERS[:3])


def test_expired_token_stops_the_run_and_releases_unsent_rows(sandbox, ledger) -> None:
    ref = plan(ledger, NUMBERS)
    sandbox.set_faults(whatsapp_errors=[{"code": 190, "count": 100}])
    with pytest.raises(AirflowFailException, match="whatsapp_default"):
        sender(ledger, max_workers=1).send(ref)
    assert sandbox.messages() == []
    assert {r["status"] for r in ledger.rows(organization_id=ORG)} == {"planned"}


def test_lost_response_is_recorded_unknown_and_not_resent(sandbox, ledger) -> None:
    ref = plan(ledger, NUMBERS[:4])
    sandbox.set_faults(whatsapp_drop_after_accept=1)
    result = sender(ledger, max_workers=1).send(ref)
    assert result.counts["unknown"] == 1 and result.counts["sent"] == 3
    assert len(sandbox.messages()) == 4  # the sandbox did accept the dropped one
    sender(ledger, try_number=2).send(ref)  # a retry or re-run
    assert len(sandbox.messages()) == 4
    unknown = ledger.rows(organization_id=ORG, status=("unknown",))
    assert len(unknown) == 1 and unknown[0]["reason"] == "no_answer"


def test_dry_run_sends_nothing_and_claims_nothing(sandbox, ledger) -> None:
    ref = plan(ledger, NUMBERS[:3])
    result = sender(ledger, dry_run=True).send(ref)
    assert result.counts["would_send"] == 3
    assert sandbox.requests(service="whatsapp") == []
    assert {r["status"] for r in ledger.rows(organization_id=ORG)} == {"planned"}


def test_sending_twice_sends_once(sandbox, ledger) -> None:
    ref = plan(ledger, NUMBERS)
    sender(ledger).send(ref)
    again = sender(ledger, try_number=2).send(ref)
    assert again.counts.get("sent", 0) == 0
    assert len(sandbox.messages()) == len(NUMBERS)


def test_connection_without_phone_number_id_is_named(set_connection) -> None:
    set_connection("whatsapp_default", {"conn_type": "whatsapp", "password": "EAAtoken", "extra": {}})
    with pytest.raises(AirflowFailException, match="connection 'whatsapp_default' has no extra.phone_number_id"):
        WhatsAppHook().settings  # noqa: B018


def test_pacing_keeps_under_the_providers_cap(sandbox, sqlite_ledger) -> None:
    sandbox.set_faults(whatsapp_rate_cap=10, whatsapp_latency_ms=50)
    ref = plan(sqlite_ledger, NUMBERS)
    result = sender(sqlite_ledger, messages_per_second=8.0, retry_later_attempts=0).send(ref)
    assert result.counts["sent"] == len(NUMBERS)
    codes = [r["code"] for r in sandbox.requests(service="whatsapp")]
    assert 130429 not in codes


def test_messages_to_one_recipient_are_spaced_by_the_pair_interval(sandbox, sqlite_ledger) -> None:
    ref = plan(sqlite_ledger, [NUMBERS[0]] * 3 + NUMBERS[1:3])
    sender(sqlite_ledger, pair_interval=0.5).send(ref)
    times = sorted(datetime.fromisoformat(r["timestamp"]) for r in sandbox.requests(service="whatsapp")
                   if r["json"]["to"] == NUMBERS[0])
    assert len(times) == 3
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.45, gaps
