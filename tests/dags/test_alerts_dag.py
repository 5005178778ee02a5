"""The instant-alert DAG as a user runs it: webhook into the real app, dag.test() against the sandbox.

Every test asserts on what the sandbox received (WhatsApp messages, Zoho calls) and on the ledger.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from tests.webhooks.helpers import (
    INVOICES,
    PAYMENTS,
    client,
    flat_invoice_body,
    headers,
    inbox_rows,
    install_secret,
    usable_invoice,
)
from zoho_whatsapp.rules.money import format_amount, format_due_date

DAG_ID = "zoho_books_invoice_alerts"
pytestmark = pytest.mark.dag


@pytest.fixture
def secret(sandbox, set_connection) -> str:
    value = sandbox.credentials["webhook_secret"]
    install_secret(set_connection, value)
    return value


def deliver(path: str, body: dict, secret: str, times: int = 1) -> list:
    with client() as c:
        return [c.post(path, json=body, headers=headers(secret)) for _ in range(times)]


def alert_rows(ledger, kind: str | None = None) -> list[dict]:
    return [r for r in ledger.rows() if kind is None or r["kind"] == kind]


def rendered_map_indexes(dr) -> list[str]:
    """What the Airflow UI shows for each send_alert instance of the run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(
            TaskInstance.dag_id == dr.dag_id, TaskInstance.run_id == dr.run_id, TaskInstance.task_id == "send_alert"
        ).order_by(TaskInstance.map_index)
        return [ti.rendered_map_index for ti in tis]


def test_dag_definition(airflow_db) -> None:
    from local_airflow import load_dag

    dag = load_dag(DAG_ID)  # dags/ free of import errors: tests/dags/test_dag_integrity.py
    assert dag.task_ids == ["take_events", "send_alert"]
    (asset,) = dag.timetable.asset_condition.objects
    assert asset.name == "zoho_books_webhook_events"
    (watcher,) = asset.watchers
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath == "zoho_whatsapp.webhooks.trigger.WebhookInboxTrigger"
    assert kwargs["ledger_conn_id"] == "reminder_ledger_default" and kwargs["poll_interval"] <= 2
    assert dag.get_task("send_alert").map_index_template == "{{ alert_event }}"
    assert set(dag.params) >= {"event_ids", "messages_per_second", "not_on_whatsapp_days"}
    assert dag.doc_md and "webhooks/invoices" in dag.doc_md


def test_invoice_created_webhook_sends_one_alert_and_the_run_names_the_event(
    sandbox, sqlite_ledger, secret, run_dag
) -> None:
    invoice, _, number = usable_invoice(sandbox)
    (answer,) = deliver(INVOICES, flat_invoice_body(invoice, "9820012345"), secret)
    assert answer.status_code == 202
    event_id = answer.json()["event_id"]

    result = run_dag(DAG_ID)
    assert result["state"] == "success", result["states"]
    assert result["states"] == {"take_events": "success", "send_alert[0]": "success"}
    (message,) = sandbox.messages()
    # the number comes from the customer's contact in Zoho, never from the webhook body
    assert message["to"] == number != "+919820012345"
    assert message["template"] == "invoice_created"
    assert message["parameters"] == {
        "party_name": invoice["customer_name"],
        "invoice_number": invoice["invoice_number"],
        "invoice_amount": format_amount(Decimal(str(invoice["total"])), "INR"),
        "due_date": format_due_date(invoice["due_date"]),
    }
    (row,) = alert_rows(sqlite_ledger)
    # keyed on Zoho's invoice id (looked up from the number the flat payload carries)
    assert (row["kind"], row["invoice_id"], row["occasion"], row["status"]) == (
        "invoice_created", invoice["invoice_id"], invoice["invoice_id"], "sent")
    assert row["wamid"] == message["wamid"]
    # the run shows which event it handled: the mapped instance is named after it, and the inbox row
    # points at the run
    assert rendered_map_indexes(result["run"]) == [f"#{event_id} invoice_created:-:number:{invoice['invoice_number']}"]
    (inbox,) = inbox_rows()
    assert (inbox["status"], inbox["run_id"]) == ("handled", result["run"].run_id)
    assert json.loads(inbox["outcome"])["sent"] == 1
    # a second run finds nothing pending and sends nothing
    assert run_dag(DAG_ID)["state"] == "success"
    assert len(sandbox.messages()) == 1


def test_a_customer_who_replied_stop_gets_no_alert(sandbox, sqlite_ledger, secret, set_connection, run_dag) -> None:
    import requests

    from tests.delivery.helpers import install_whatsapp, reply, serve, signed

    invoice, _, number = usable_invoice(sandbox)
    install_whatsapp(set_connection, base=sandbox.connections()["whatsapp_default"])
    with serve() as (base, _app):
        body, signature = signed(reply(number.lstrip("+"), "Stop reminders"))  # through Meta's signed webhook
        answer = requests.post(f"{base}/webhook", data=body, headers=signature, timeout=10)
    assert answer.status_code == 200 and answer.json()["outcomes"] == {"opt_out": 1}
    (delivered,) = deliver(INVOICES, flat_invoice_body(invoice, "9820012345"), secret)
    assert delivered.status_code == 202

    result = run_dag(DAG_ID)
    assert result["state"] == "success", result["states"]
    assert sandbox.messages() == []
    (row,) = alert_rows(sqlite_ledger)
    assert (row["status"], row["reason"]) == ("skipped", "opted_out")
    (inbox,) = inbox_rows()
    outcome = json.loads(inbox["outcome"])
    assert inbox["status"] == "handled" and outcome["this_run"]["skipped_by_reason"] == {"opted_out": 1}
    assert outcome["messages"] == [{"invoice_number": invoice["invoice_number"], "status": "skipped",
                                    "reason": "opted_out", "to": row["phone_masked"], "error_code": None}]


def test_duplicate_and_concurrent_duplicate_deliveries_send_one_message(sandbox, sqlite_ledger, secret, run_dag) -> None:
    invoice, contact, number = usable_invoice(sandbox)
    body = {"invoice": sandbox.invoice(invoice["invoice_id"])}  # Zoho's Default Payload
    with client() as c:
        first = [c.post(INVOICES, json=body, headers=headers(secret)) for _ in range(2)]
        with ThreadPoolExecutor(max_workers=10) as pool:
            burst = list(pool.map(lambda _: c.post(INVOICES, json=body, headers=headers(secret)), range(10)))
    assert [a.status_code for a in first] == [202, 200]
    assert {a.status_code for a in burst} == {200}
    assert run_dag(DAG_ID)["state"] == "success"
    # Zoho retries after we handled it: acknowledged as a duplicate, still no second message
    (late,) = deliver(INVOICES, body, secret)
    assert late.status_code == 200 and late.json()["event_status"] == "handled"
    assert run_dag(DAG_ID)["state"] == "success"
    messages = sandbox.messages()
    assert len(messages) == 1
    assert messages[0]["to"] == number  # the Default Payload's contact person, E.164
    assert inbox_rows()[0]["deliveries"] == 13


def test_the_same_event_handled_by_two_runs_at_once_sends_once(sandbox, sqlite_ledger, secret) -> None:
    """Two runs (e.g. a re-announced event and a manual run) racing on one event: one message."""
    from zoho_whatsapp.alerts import handle_event, take_events
    from zoho_whatsapp.ledger import RunInfo

    invoice, _, _ = usable_invoice(sandbox)
    (answer,) = deliver(INVOICES, flat_invoice_body(invoice, "9820012345"), secret)
    (ref,) = take_events(announced=[answer.json()["event_id"]])
    start = threading.Barrier(2)
    results: list = []

    def run(name: str) -> None:
        start.wait()
        results.append(handle_event(ref, run=RunInfo(dag_id=DAG_ID, run_id=name, map_index=0, try_number=1)))

    threads = [threading.Thread(target=run, args=(f"run_{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(sandbox.messages()) == 1
    assert len(results) == 2
    (row,) = alert_rows(sqlite_ledger)
    assert row["status"] == "sent"
    assert inbox_rows()[0]["status"] == "handled"


def test_payment_alert_shows_the_live_balance_not_the_webhooks(sandbox, sqlite_ledger, secret, run_dag) -> None:
    invoice, _, number = usable_invoice(sandbox, skip=1)
    total = Decimal(str(invoice["total"]))
    payment = sandbox.add_payment(invoice["invoice_id"], amount=10000)
    stale_balance = Decimal(str(payment["invoices"][0]["balance_amount"]))
    assert stale_balance == total - 10000
    (answer,) = deliver(PAYMENTS, {"payment": payment}, secret)
    assert answer.status_code == 202
    # between the webhook and the send, the invoice changes in Zoho (another payment, a credit note...)
    sandbox.update_invoice(invoice["invoice_id"], balance=str(stale_balance - 2500))

    assert run_dag(DAG_ID)["state"] == "success"
    (message,) = sandbox.messages()
    assert message["template"] == "payment_received"
    assert message["to"] == number  # the payment carries no number: resolved from the contact
    assert message["parameters"] == {
        "party_name": invoice["customer_name"],
        "amount_received": format_amount(Decimal(10000), "INR"),
        "invoice_number": invoice["invoice_number"],
        "balance_due": format_amount(stale_balance - 2500, "INR"),
    }
    assert format_amount(stale_balance, "INR") not in json.dumps(message["parameters"], ensure_ascii=False)
    paths = [r["path"] for r in sandbox.requests(service="zoho_books")]
    assert f"/books/v3/invoices/{invoice['invoice_id']}" in paths  # the live query
    (row,) = alert_rows(sqlite_ledger)
    assert (row["kind"], row["occasion"], row["invoice_id"]) == ("payment_received", payment["payment_id"],
                                                                  invoice["invoice_id"])
    assert json.loads(row["source"])["live_balance"] == float(stale_balance - 2500)


def test_missing_mobile_is_resolved_from_the_contact(sandbox, sqlite_ledger, secret, run_dag) -> None:
    invoice, contact, number = usable_invoice(sandbox, skip=2)
    (answer,) = deliver(INVOICES, flat_invoice_body(invoice, None), secret)
    assert answer.status_code == 202
    assert run_dag(DAG_ID)["state"] == "success"
    (message,) = sandbox.messages()
    assert message["to"] == number
    assert f"/books/v3/contacts/{invoice['customer_id']}" in [r["path"] for r in sandbox.requests(service="zoho_books")]


def test_unusable_numbers_draft_invoices_and_deleted_records_are_recorded_not_sent(
    sandbox, sqlite_ledger, secret, run_dag
) -> None:
    invoice, contact, _ = usable_invoice(sandbox)
    sandbox.patch_contact(invoice["customer_id"], mobile="022 2345 6789", phone="")
    draft = sandbox.invoices("draft")[0]
    sandbox.update_invoice(draft["invoice_id"], status="draft")  # saved just now: the rule fires on it
    with client() as c:
        codes = [
            c.post(INVOICES, json=flat_invoice_body(invoice, None), headers=headers(secret)).status_code,
            c.post(INVOICES, json={"invoice": sandbox.invoice(draft["invoice_id"])}, headers=headers(secret)).status_code,
            c.post(PAYMENTS, json={"payment_id": "982000000999999", "amount": 5, "mobile": "9820012345"},
                   headers=headers(secret)).status_code,
            c.post(INVOICES, json=flat_invoice_body(invoice, "9820012345", invoice_id="INV-NOPE"),
                   headers=headers(secret)).status_code,
        ]
    assert codes == [202] * 4
    result = run_dag(DAG_ID)
    assert result["state"] == "success", result["states"]
    assert sandbox.messages() == []
    reasons = {r["invoice_id"]: (r["status"], r["reason"]) for r in alert_rows(sqlite_ledger)}
    assert reasons == {invoice["invoice_id"]: ("skipped", "not_mobile"), draft["invoice_id"]: ("skipped", "invoice_draft")}
    outcomes = {r["event_key"]: json.loads(r["outcome"]) for r in inbox_rows()}
    assert {r["status"] for r in inbox_rows()} == {"handled"}
    assert outcomes["payment_received:-:982000000999999"]["reason"] == "not_in_zoho"
    assert outcomes["invoice_created:-:number:INV-NOPE"]["reason"] == "not_in_zoho"


def test_retry_later_errors_leave_the_event_pending_and_a_retry_sends_it_once(
    sandbox, sqlite_ledger, secret
) -> None:
    from airflow.sdk.exceptions import AirflowException

    from zoho_whatsapp.alerts import handle_event, take_events
    from zoho_whatsapp.ledger import RunInfo

    invoice, _, _ = usable_invoice(sandbox)
    (answer,) = deliver(INVOICES, flat_invoice_body(invoice, "9820012345"), secret)
    (ref,) = take_events(announced=[answer.json()["event_id"]])
    sandbox.set_faults(whatsapp_errors=[{"code": 130429, "count": 4}])
    with pytest.raises(AirflowException, match="retry-later"):
        handle_event(ref, run=RunInfo(dag_id=DAG_ID, run_id="r", map_index=0, try_number=1))
    assert sandbox.messages() == [] and inbox_rows()[0]["status"] == "received"
    outcome = handle_event(ref, run=RunInfo(dag_id=DAG_ID, run_id="r", map_index=0, try_number=2))
    assert outcome["status"] == "handled" and outcome["sent"] == 1
    assert len(sandbox.messages()) == 1


def test_a_manual_run_can_be_given_the_events_to_handle(sandbox, sqlite_ledger, secret, run_dag) -> None:
    a, _, _ = usable_invoice(sandbox)
    b, _, _ = usable_invoice(sandbox, skip=1)
    ids = [deliver(INVOICES, flat_invoice_body(inv, "9820012345"), secret)[0].json()["event_id"] for inv in (a, b)]
    result = run_dag(DAG_ID, conf={"event_ids": [ids[1]]})
    assert result["state"] == "success", result["states"]
    assert [m["parameters"]["invoice_number"] for m in sandbox.messages()] == [b["invoice_number"]]
    assert {r["id"]: r["status"] for r in inbox_rows()} == {ids[0]: "received", ids[1]: "handled"}


def test_asset_event_payloads_name_the_events() -> None:
    from types import SimpleNamespace

    from zoho_whatsapp.alerts import event_ids_from_asset_events

    events = {
        "asset": [
            SimpleNamespace(extra={"from_trigger": True, "payload": {"event_id": 7, "event_key": "k7"}}),
            SimpleNamespace(extra={"from_trigger": True, "payload": {"event_id": 3}}),
            SimpleNamespace(extra={"from_trigger": True, "payload": {"event_id": 7}}),  # re-announced
            SimpleNamespace(extra={"something": "else"}),  # an event posted by hand through the REST API
            SimpleNamespace(extra=None),
        ]
    }
    assert event_ids_from_asset_events(events) == [7, 3]
    assert event_ids_from_asset_events(None) == []


def test_a_draft_delivery_does_not_block_the_alert_when_the_invoice_is_issued(
    sandbox, sqlite_ledger, secret, run_dag
) -> None:
    draft, _, number = usable_invoice(sandbox, status="draft")
    sandbox.update_invoice(draft["invoice_id"], status="draft")  # saved just now: the rule fires on it
    (first,) = deliver(INVOICES, {"invoice": sandbox.invoice(draft["invoice_id"])}, secret)
    assert first.status_code == 202
    assert run_dag(DAG_ID)["state"] == "success"
    assert sandbox.messages() == []
    sandbox.update_invoice(draft["invoice_id"], status="sent")  # the rule fires again: "created or edited"
    (issued,) = deliver(INVOICES, {"invoice": sandbox.invoice(draft["invoice_id"])}, secret)
    assert issued.status_code == 202  # a new event, not a duplicate of the draft's
    assert run_dag(DAG_ID)["state"] == "success"
    (message,) = sandbox.messages()
    assert message["to"] == number and message["parameters"]["invoice_number"] == draft["invoice_number"]
    (row,) = alert_rows(sqlite_ledger)
    assert (row["status"], row["occasion"]) == ("sent", draft["invoice_id"])
