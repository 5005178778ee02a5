"""Which run handles which webhook event when the scheduler's asset queue leaves one out.

Airflow keeps one ``asset_dag_run_queue`` row per asset and DAG: an asset event registered while the
scheduler creates a run from that row is in no run. Seen on the CeleryExecutor stack (docs/stack.md): the
alert then waited 600 s for its re-announcement. These tests play that race on the real inbox and ledger
(webhooks through the real endpoint, messages to the sandbox) and check who sends what.
"""

from __future__ import annotations

import pytest

from tests.dags.test_alerts_dag import DAG_ID, deliver
from tests.webhooks.helpers import INVOICES, flat_invoice_body, inbox_rows, install_secret, usable_invoice

pytestmark = pytest.mark.dag


@pytest.fixture
def secret(sandbox, set_connection) -> str:  # noqa: ANN001
    value = sandbox.credentials["webhook_secret"]
    install_secret(set_connection, value)
    return value


def _run(name: str):  # noqa: ANN202
    from zoho_whatsapp.ledger import RunInfo

    return RunInfo(dag_id=DAG_ID, run_id=name, map_index=-1, try_number=1)


def _events(sandbox, secret: str, count: int) -> list[int]:
    ids = []
    for skip in range(count):
        invoice, _, _ = usable_invoice(sandbox, skip=skip)
        ids.append(deliver(INVOICES, flat_invoice_body(invoice, "9820012345"), secret)[0].json()["event_id"])
    return ids


def _announce(**kwargs) -> list[int]:  # noqa: ANN003
    from zoho_whatsapp.webhooks.inbox import WebhookInbox

    inbox = WebhookInbox.from_connection()
    try:
        return [e["event_id"] for e in inbox.announce(**{"redeliver_after": 600, "max_announcements": 3, **kwargs})]
    finally:
        inbox.dispose()


def test_an_event_left_out_of_every_run_is_handled_by_the_next_run_once(sandbox, sqlite_ledger, secret) -> None:
    from zoho_whatsapp.alerts import handle_event, take_events

    first, orphan, last = _events(sandbox, secret, 3)
    assert _announce() == [first, orphan, last]
    # the scheduler's run names only `first`; `orphan` is in no run; `last` got a run of its own
    taken = take_events(announced=[first], run=_run("asset_1"))
    assert [r["event_id"] for r in taken] == [first, orphan, last]
    assert take_events(announced=[last], run=_run("asset_2")) == []  # taken already: no work twice
    # a retry of the first run's take_events gets its events back
    assert [r["event_id"] for r in take_events(announced=[first], run=_run("asset_1"))] == [first, orphan, last]

    outcomes = [handle_event(ref, run=_run("asset_1")) for ref in taken]
    assert [o["status"] for o in outcomes] == ["handled"] * 3
    numbers = sorted(usable_invoice(sandbox, skip=skip)[0]["invoice_number"] for skip in range(3))
    assert sorted(m["parameters"]["invoice_number"] for m in sandbox.messages()) == numbers  # each once
    assert {r["id"]: (r["status"], r["run_id"]) for r in inbox_rows()} == {
        i: ("handled", "asset_1") for i in (first, orphan, last)}


def test_a_reannounced_event_is_taken_again_and_still_sent_once(sandbox, sqlite_ledger, secret) -> None:
    from zoho_whatsapp.alerts import handle_event, take_events

    (event,) = _events(sandbox, secret, 1)
    assert _announce() == [event]
    assert [r["event_id"] for r in take_events(announced=[event], run=_run("asset_1"))] == [event]
    # that run died before sending; after redeliver_after the trigger announces the event again
    assert _announce(redeliver_after=0) == [event]
    (ref,) = take_events(announced=[event], run=_run("asset_2"))
    assert handle_event(ref, run=_run("asset_2"))["status"] == "handled"
    # the first run, back from the dead, finds it handled
    assert handle_event(ref, run=_run("asset_1"))["status"] == "already_handled"
    assert len(sandbox.messages()) == 1
    assert inbox_rows()[0]["run_id"] == "asset_2"


def test_a_backlog_is_dealt_into_at_most_four_tasks_and_one_event_is_one_task_named_after_it() -> None:
    from zoho_whatsapp.alerts import group_events, group_name

    refs = [{"event_id": i, "event_key": f"invoice_created:-:{i}"} for i in range(1, 7)]
    groups = group_events(refs, 4)
    assert [[r["event_id"] for r in g] for g in groups] == [[1, 5], [2, 6], [3], [4]]
    assert group_events(refs[:1], 4) == [refs[:1]] and group_events([], 4) == []
    assert group_name(groups[0]) == "#1 invoice_created:-:1 (+1 more)"
    assert group_name(refs[:1]) == "#1 invoice_created:-:1"
