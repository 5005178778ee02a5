"""Opt-in reminder notes in Zoho Books, against the sandbox over real HTTP.

What the accounts team reads on the invoice, the request that carried it (checked against the
contract), pacing within the per-minute limit (a 5-per-second limit stands in for Zoho's 100 per
minute so the test is fast), the reserve kept from the daily quota, and the stop on code 45.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.contracts import ZOHO_INVOICES_CONTRACT, require_contract, schema_validator
from zoho_whatsapp.zoho import ZohoBooksHook
from zoho_whatsapp.zoho.comments import FAILED, QUOTA_EXHAUSTED, QUOTA_RESERVE, ZohoComments
from zoho_whatsapp.zoho.hook import RequestPacer

PHONE = "+91 98XXXXXX45"


def hook() -> ZohoBooksHook:
    return ZohoBooksHook(max_wait_seconds=1.5)


def overdue(sandbox: Any, n: int) -> list[dict[str, Any]]:
    return sandbox.overdue_invoices()[:n]


def books(sandbox: Any, method: str | None = None) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests(service="zoho_books") if method is None or r["method"] == method]


def test_a_note_names_the_number_masked_every_invoice_and_the_stage_on_the_first_invoice(sandbox) -> None:
    h = hook()
    notes = ZohoComments(h)
    first, second = overdue(sandbox, 2)
    assert notes.note_reminder(first["customer_id"], PHONE, [first["invoice_number"], second["invoice_number"]],
                               "+7", invoice_ids=[first["invoice_id"], second["invoice_id"]])

    (comment,) = sandbox.comments(first["invoice_id"])
    assert comment["description"] == (
        f"WhatsApp reminder sent to {PHONE} for {first['invoice_number']}, {second['invoice_number']}, stage +7")
    assert comment["show_comment_to_clients"] is False
    assert sandbox.comments(second["invoice_id"]) == []  # one write per message
    assert notes.summary() == {"written": 1, "not_written": {}, "stopped": None}
    assert (h.write_calls, h.read_calls) == (1, 1)  # the write, and the organization lookup

    (post,) = books(sandbox, "POST")
    assert post["path"] == f"/books/v3/invoices/{first['invoice_id']}/comments"
    contract = require_contract(ZOHO_INVOICES_CONTRACT)
    schema_validator(contract, "create-a-comment-request").validate(post["json"])
    declared = contract["components"]["schemas"]["create-a-comment-request"]["properties"]
    assert set(post["json"]) <= set(declared)
    assert "post" not in require_contract("zoho-books/contacts.yml")["paths"]["/contacts/{contact_id}/comments"]


def test_an_unmasked_number_is_masked_before_it_reaches_zoho(sandbox) -> None:
    (inv,) = overdue(sandbox, 1)
    ZohoComments(hook()).note_reminder(inv["customer_id"], "+91 98200 12345", [inv["invoice_number"]], "-3",
                                       invoice_ids=[inv["invoice_id"]])
    (comment,) = sandbox.comments(inv["invoice_id"])
    assert "98200 12345" not in comment["description"] and "9820012345" not in comment["description"]
    assert comment["description"].endswith(f"for {inv['invoice_number']}, stage -3")


def test_without_invoice_ids_the_first_invoice_is_found_by_its_number(sandbox) -> None:
    h = hook()
    (inv,) = overdue(sandbox, 1)
    assert ZohoComments(h).note_reminder(inv["customer_id"], PHONE, [inv["invoice_number"]], "+1")
    assert len(sandbox.comments(inv["invoice_id"])) == 1
    lookups = [r for r in books(sandbox, "GET") if r["path"].endswith("/invoices")]
    assert [r["query"]["invoice_number"] for r in lookups] == [inv["invoice_number"]]


def test_notes_are_paced_within_the_per_minute_limit(sandbox) -> None:
    sandbox.set_faults(zoho_rate_limit_per_minute=5, zoho_rate_window_seconds=1.0)
    h = hook()
    notes = ZohoComments(h, requests_per_minute=5, rate_window_seconds=1.0)
    invoices = overdue(sandbox, 12)
    for inv in invoices:
        assert notes.note_reminder(inv["customer_id"], PHONE, [inv["invoice_number"]], "+15",
                                   invoice_ids=[inv["invoice_id"]])

    calls = books(sandbox)
    assert len(calls) == 13  # the organization lookup and 12 notes, none throttled
    assert [r["status"] for r in calls] == [200] * 13
    stamps = sorted(r["ts"] for r in calls)
    for i in range(len(stamps) - 5):  # any 6 consecutive calls span at least the 1 s window
        assert stamps[i + 5] - stamps[i] >= 1.0, (i, stamps[i + 5] - stamps[i])
    assert h.pacer is not None and h.pacer.waited_seconds >= 1.5
    assert all(len(sandbox.comments(inv["invoice_id"])) == 1 for inv in invoices)


def test_a_burst_paced_looser_than_the_limit_is_throttled(sandbox) -> None:
    """The pacing test above can fail: the hook's own, too generous pacer is used and Zoho says 44."""
    sandbox.set_faults(zoho_rate_limit_per_minute=5, zoho_rate_window_seconds=1.0)
    h = hook()
    h.pacer = RequestPacer(1000, 1.0)
    notes = ZohoComments(h, requests_per_minute=5, rate_window_seconds=1.0)
    assert h.pacer.limit == 1000  # shared, not replaced
    for inv in overdue(sandbox, 8):
        assert notes.note_reminder(inv["customer_id"], PHONE, [inv["invoice_number"]], "+15",
                                   invoice_ids=[inv["invoice_id"]])
    assert (429, 44) in [(r["status"], r["code"]) for r in books(sandbox)]  # waited out, then written


def test_the_pacer_keeps_every_minute_within_100_calls() -> None:
    clock = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    pacer = RequestPacer(100, 60.0, clock=lambda: clock[0], sleep=sleep, margin_seconds=0.0)
    starts = []
    for _ in range(250):
        pacer.wait()
        starts.append(clock[0])
        clock[0] += 0.05  # the answer takes 50 ms: the window counts from it
        pacer.done()
    assert all(starts[i + 100] - starts[i] >= 60.0 for i in range(len(starts) - 100))
    assert starts[100] == pytest.approx(60.05, abs=0.01)  # a minute after the first answer
    assert starts[200] == pytest.approx(120.10, abs=0.02)  # the third hundred a minute after the second
    assert pacer.waited_seconds == pytest.approx(110.1, abs=0.05)  # twice, for the 101st and the 201st


def test_notes_stop_while_the_reserve_would_be_spent_without_asking_zoho(sandbox) -> None:
    h = hook()
    h.get_organization()  # 1 call spent
    notes = ZohoComments(h, daily_quota=10, reserve_calls=5)
    invoices = overdue(sandbox, 7)
    results = [notes.note_reminder(inv["customer_id"], PHONE, [inv["invoice_number"]], "+30",
                                   invoice_ids=[inv["invoice_id"]]) for inv in invoices]

    assert results == [True] * 4 + [False] * 3  # 1 + 4 writes leave 5: the reserve
    assert notes.summary() == {"written": 4, "not_written": {QUOTA_RESERVE: 3}, "stopped": QUOTA_RESERVE}
    assert notes.calls_left_today == 5
    assert len(books(sandbox, "POST")) == 4
    assert all(r["status"] == 200 for r in books(sandbox))


def test_calls_spent_elsewhere_today_count_against_the_reserve(sandbox) -> None:
    (inv,) = overdue(sandbox, 1)
    args = (inv["customer_id"], PHONE, [inv["invoice_number"]], "+7")
    h = hook()
    h.get_organization()
    spent = ZohoComments(h, daily_quota=2000, reserve_calls=200, calls_used_before=1799)  # + 1: 200 left
    assert not spent.note_reminder(*args, invoice_ids=[inv["invoice_id"]])
    assert spent.stopped == QUOTA_RESERVE
    assert books(sandbox, "POST") == []
    last = ZohoComments(hook(), daily_quota=2000, reserve_calls=200, calls_used_before=1799)  # 201 left
    assert last.note_reminder(*args, invoice_ids=[inv["invoice_id"]])  # and 200 are left after it
    assert len(books(sandbox, "POST")) == 1


def test_daily_quota_exhausted_stops_the_notes_for_good_without_retrying(sandbox) -> None:
    h = hook()
    h.get_organization()
    sandbox.set_faults(zoho_daily_quota=4)  # the organization lookup + 3 writes, then code 45
    notes = ZohoComments(h, daily_quota=10_000, reserve_calls=0)
    invoices = overdue(sandbox, 6)
    results = [notes.note_reminder(inv["customer_id"], PHONE, [inv["invoice_number"]], "+7",
                                   invoice_ids=[inv["invoice_id"]]) for inv in invoices]

    assert results == [True, True, True, False, False, False]
    assert notes.summary() == {"written": 3, "not_written": {QUOTA_EXHAUSTED: 3}, "stopped": QUOTA_EXHAUSTED}
    posts = books(sandbox, "POST")
    assert [(r["status"], r["code"]) for r in posts] == [(200, 0)] * 3 + [(429, 45)]  # asked once, never again
    assert [len(sandbox.comments(inv["invoice_id"])) for inv in invoices] == [1, 1, 1, 0, 0, 0]
    assert h.write_calls == 4


def test_a_note_that_fails_is_counted_and_does_not_raise(sandbox) -> None:
    (inv,) = overdue(sandbox, 1)
    notes = ZohoComments(hook())
    assert not notes.note_reminder(inv["customer_id"], PHONE, [inv["invoice_number"]], "+7",
                                   invoice_ids=["982000000999999"])
    assert not notes.note_reminder(inv["customer_id"], PHONE, ["INV-999999"], "+7")
    assert notes.summary() == {"written": 0, "not_written": {FAILED: 2}, "stopped": None}
    assert [(r["status"], r["code"]) for r in books(sandbox, "POST")] == [(404, 1002)]  # a write is not repeated
    assert notes.note_reminder(inv["customer_id"], PHONE, [inv["invoice_number"]], "+7",
                               invoice_ids=[inv["invoice_id"]])
