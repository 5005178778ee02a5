"""WebhookInboxTrigger, run as the triggerer runs it (its async generator), against a real inbox."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from tests.webhooks.helpers import INVOICES, client, flat_invoice_body, headers, inbox_rows, install_secret
from zoho_whatsapp.webhooks.inbox import WebhookInbox
from zoho_whatsapp.webhooks.trigger import WebhookInboxTrigger


@pytest.fixture
def secret(sandbox, set_connection) -> str:
    value = sandbox.credentials["webhook_secret"]
    install_secret(set_connection, value)
    return value


def store(sandbox, secret: str, count: int, skip: int = 0) -> list[int]:
    invoices = sandbox.invoices("overdue")[skip:skip + count]
    with client() as c:
        answers = [c.post(INVOICES, json=flat_invoice_body(i, "9820012345"), headers=headers(secret)) for i in invoices]
    assert {a.status_code for a in answers} == {202}
    return [a.json()["event_id"] for a in answers]


def watch(trigger: WebhookInboxTrigger, seconds: float, actions: dict[float, object] | None = None) -> list[dict]:
    """Run the trigger for ``seconds`` as the triggerer does (a task iterating ``run()``, cancelled at
    the end); returns the payloads it yielded. ``actions``: {at_second: callable} run meanwhile."""

    async def main() -> list[dict]:
        payloads: list[dict] = []

        async def consume() -> None:
            async for event in trigger.run():
                payloads.append(event.payload)

        task = asyncio.create_task(consume())
        started = time.monotonic()
        pending = dict(actions or {})
        while time.monotonic() - started < seconds:
            for at in sorted(a for a in pending if time.monotonic() - started >= a):
                await asyncio.to_thread(pending.pop(at))
            await asyncio.sleep(0.02)
            if task.done():
                task.result()  # the trigger must never end on its own: surface why it did
                raise AssertionError("the trigger stopped")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return payloads

    return asyncio.run(main())


def test_serializes_to_an_importable_classpath() -> None:
    from airflow.sdk.module_loading import import_string

    trigger = WebhookInboxTrigger(poll_interval=0.5)
    classpath, kwargs = trigger.serialize()
    again = import_string(classpath)(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    assert WebhookInboxTrigger.hash(classpath, kwargs) == WebhookInboxTrigger.hash(*again.serialize())


def test_each_stored_event_is_announced_once(sandbox, sqlite_ledger, secret) -> None:
    ids = store(sandbox, secret, 3)
    trigger = WebhookInboxTrigger(poll_interval=0.05, redeliver_after=60)
    more: list[int] = []
    payloads = watch(trigger, 1.5, {0.5: lambda: more.extend(store(sandbox, secret, 1, skip=3))})
    assert [p["event_id"] for p in payloads] == ids + more  # the fourth arrived while it watched
    assert payloads[0] == {"event_id": ids[0], "event_key": inbox_rows()[0]["event_key"], "kind": "invoice_created",
                           "announcement": 1}
    # a second trigger (a restarted triggerer) does not announce them again
    assert watch(WebhookInboxTrigger(poll_interval=0.05, redeliver_after=60), 0.5) == []
    assert {r["announcements"] for r in inbox_rows()} == {1}


def test_unhandled_events_are_announced_again_a_bounded_number_of_times(sandbox, sqlite_ledger, secret) -> None:
    first, second = store(sandbox, secret, 2)
    inbox = WebhookInbox.from_connection()

    def handle_first() -> None:
        inbox.mark_handled(first, dag_id="d", run_id="r", outcome={"sent": 1})

    trigger = WebhookInboxTrigger(poll_interval=0.05, redeliver_after=0.4, max_announcements=3)
    payloads = watch(trigger, 2.5, {0.2: handle_first})
    inbox.dispose()
    announced = [(p["event_id"], p["announcement"]) for p in payloads]
    # the handled event is never announced again; the other one up to max_announcements times
    assert announced == [(first, 1), (second, 1), (second, 2), (second, 3)]


def test_keeps_watching_while_the_ledger_is_unreachable(sandbox, set_connection, caplog) -> None:
    set_connection("reminder_ledger_default", {"conn_type": "postgres", "host": "127.0.0.1", "port": 1,
                                               "login": "postgres", "schema": "test"})
    assert watch(WebhookInboxTrigger(poll_interval=0.05), 0.8) == []
    assert "cannot read the webhook inbox" in caplog.text
