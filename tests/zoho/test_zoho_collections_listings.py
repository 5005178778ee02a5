"""The listings the collections policy reads, against the sandbox over real HTTP.

Invoices due soon (pre-due stages), the customers with anything unpaid, and one customer's open
invoices (the live-balance re-read): what comes back, how many calls it took (⌈rows/200⌉), and
that every query parameter sent is one the official contract declares, with an allowed value.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from zoho_contract_params import assert_query_in_contract, query_rules

from sandbox.store import today_ist
from tests.contracts import ZOHO_CONTACTS_CONTRACT, ZOHO_INVOICES_CONTRACT
from zoho_whatsapp.zoho import ZohoBooksHook
from zoho_whatsapp.zoho.errors import ZohoError

pytestmark = pytest.mark.sandbox(scenario="collections")


def hook() -> ZohoBooksHook:
    h = ZohoBooksHook(max_wait_seconds=1.5)
    h.get_organization()
    return h


def calls(sandbox: Any, path: str) -> list[dict[str, Any]]:
    return [r for r in sandbox.requests(service="zoho_books") if r["path"] == f"/books/v3/{path}"]


def ceil200(n: int) -> int:
    return -(-n // 200)


def due_between_truth(sandbox: Any, start: date, end: date) -> dict[str, dict[str, Any]]:
    return {
        r["invoice_id"]: r
        for r in sandbox.invoices("unpaid")
        if start.isoformat() <= r["due_date"] <= end.isoformat() and r["status"] != "overdue"
    }


def assert_in_contract(sandbox: Any) -> None:
    rules = {
        "invoices": query_rules(ZOHO_INVOICES_CONTRACT, "/invoices"),
        "contacts": query_rules(ZOHO_CONTACTS_CONTRACT, "/contacts"),
    }
    checked = 0
    for name, allowed in rules.items():
        for request in calls(sandbox, name):
            assert_query_in_contract(request["query"], allowed, f"GET /{name}")
            checked += 1
    assert checked, "no listing request was made"


def test_invoices_due_soon_are_the_unpaid_ones_in_the_range_with_their_promises_and_fields(sandbox) -> None:
    today = today_ist()
    start, end = today, today + timedelta(days=3)
    rows = list(hook().iter_invoices_due_between(start, end))

    truth = due_between_truth(sandbox, start, end)
    assert sorted(r["invoice_id"] for r in rows) == sorted(truth)
    names = {r["customer_name"] for r in rows}
    # the scenario's due-soon customers are in; one due in 5 and 20 days is not
    assert {"Indira Due Soon Foods", "Jatin Courtesy Steel", "Kavya Due Today Pharma"} <= names
    assert "Sunita Not Yet Due Logistics" not in names
    assert all(r["status"] != "overdue" and start.isoformat() <= r["due_date"] <= end.isoformat() for r in rows)
    assert all("payment_expected_date" in r and "custom_fields" in r for r in rows)
    assert [r["due_date"] for r in rows] == sorted(r["due_date"] for r in rows)

    listing = calls(sandbox, "invoices")
    assert len(listing) == ceil200(len(truth))
    for request in listing:
        q = request["query"]
        assert (q["status"], q["due_date_start"], q["due_date_end"], q["per_page"]) == (
            "unpaid", start.isoformat(), end.isoformat(), "200")
    assert_in_contract(sandbox)


def test_a_range_reaching_into_the_past_leaves_overdue_invoices_to_the_overdue_listing(sandbox) -> None:
    today = today_ist()
    start, end = today - timedelta(days=10), today + timedelta(days=3)
    rows = list(hook().iter_invoices_due_between(start, end))
    assert rows, "the scenario has invoices due in the next 3 days"
    assert not [r for r in rows if r["status"] == "overdue"]
    overdue_in_range = [r for r in sandbox.overdue_invoices() if start.isoformat() <= r["due_date"] < today.isoformat()]
    assert overdue_in_range, "the range must hold overdue invoices for this test to mean anything"
    assert not {r["invoice_id"] for r in overdue_in_range} & {r["invoice_id"] for r in rows}


def test_more_than_a_page_due_soon_is_read_200_at_a_time_each_invoice_once(sandbox) -> None:
    today = today_ist()
    # 260 overdue invoices of the seed become "sent", due in the next 3 days: more than one page
    moved = [r["invoice_id"] for r in sandbox.overdue_invoices()[:260]]
    for n, invoice_id in enumerate(moved):
        sandbox.patch_invoice(invoice_id, status="sent", due_date=(today + timedelta(days=n % 4)).isoformat())
    start, end = today, today + timedelta(days=3)
    truth = due_between_truth(sandbox, start, end)
    assert len(truth) > 260 and len(truth) % 200 not in (0, 199)  # the repeated row must not need a page

    sandbox.set_faults(zoho_duplicate_overdue_row=True)  # Zoho repeats page 1's last row on page 2
    rows = list(hook().iter_invoices_due_between(start, end))

    assert len(rows) == len({r["invoice_id"] for r in rows}) == len(truth)
    assert set(r["invoice_id"] for r in rows) == set(truth)
    listing = calls(sandbox, "invoices")
    assert len(listing) == ceil200(len(truth))
    page2 = next(r for r in listing if r["query"]["page"] == "2")
    assert page2["status"] == 200
    assert_in_contract(sandbox)


def test_an_upside_down_range_is_refused_before_any_call(sandbox) -> None:
    h = hook()
    with pytest.raises(ValueError, match="ends .* before it starts"):
        list(h.iter_invoices_due_between(date(2026, 11, 30), date(2026, 11, 1)))
    assert calls(sandbox, "invoices") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "due_soon"}, "status"),
        ({"status": "unpaid", "due_date_start": "30-11-2026"}, "due_date_start"),
        ({"status": "unpaid", "due_date_end": "2026-02-30"}, "due_date_end"),
        ({"status": "unpaid", "sort_column": "payment_expected_date"}, "sort_column"),
    ],
)
def test_the_sandbox_refuses_values_the_contract_does_not_allow(sandbox, params, field) -> None:
    with pytest.raises(ZohoError, match=f"Invalid value passed for {field}") as info:
        hook().request("GET", "invoices", params=params)
    assert (info.value.status, info.value.code) == (400, 2)


@pytest.mark.sandbox(scenario="collections", invoices=800)  # 354 customers owing: two pages
def test_unpaid_contacts_are_every_customer_owing_anything_in_ceil_customers_over_200_calls(sandbox) -> None:
    h = hook()
    contacts = h.list_unpaid_contacts()

    owing = {r["customer_id"] for r in sandbox.invoices("unpaid") if float(r["balance"]) > 0}
    assert set(contacts) == owing
    names = {c["contact_name"] for c in contacts.values()}
    assert {"Jatin Courtesy Steel", "Sunita Not Yet Due Logistics"} <= names  # nothing overdue, still listed
    assert all("mobile" in c and "phone" in c for c in contacts.values())
    listing = calls(sandbox, "contacts")
    assert len(owing) > 200, "more than one page of customers"
    assert len(listing) == ceil200(len(contacts))
    assert {r["query"]["filter_by"] for r in listing} == {"Invoice.Unpaid"}

    overdue_only = h.list_overdue_contacts()  # existing callers keep their listing
    assert set(overdue_only) < set(contacts)
    assert "Jatin Courtesy Steel" not in {c["contact_name"] for c in overdue_only.values()}
    assert_in_contract(sandbox)


def _customer(sandbox: Any, name: str) -> str:
    return next(c["contact_id"] for c in sandbox.contacts() if c["contact_name"] == name)


def test_open_invoices_of_one_customer_in_one_call_and_a_payment_since_shows(sandbox) -> None:
    h = hook()
    deccan = _customer(sandbox, "Deccan Forty Invoice Industries")
    before = h.list_open_invoices(deccan)
    assert len(before) == 40
    assert {r["customer_id"] for r in before} == {deccan}
    assert [r["due_date"] for r in before] == sorted(r["due_date"] for r in before)

    paid, part = before[0], before[1]
    sandbox.add_payment(paid["invoice_id"])
    sandbox.add_payment(part["invoice_id"], amount="1000")
    after = {r["invoice_id"]: r for r in h.list_open_invoices(deccan)}
    assert paid["invoice_id"] not in after and len(after) == 39
    assert float(after[part["invoice_id"]]["balance"]) == float(part["balance"]) - 1000

    listing = calls(sandbox, "invoices")
    assert len(listing) == 2  # one call per re-read: 40 rows fit one page
    assert all((r["query"]["customer_id"], r["query"]["status"]) == (deccan, "unpaid") for r in listing)
    assert_in_contract(sandbox)


def test_open_invoices_of_a_customer_who_paid_everything_is_empty(sandbox) -> None:
    h = hook()
    aarav = _customer(sandbox, "Aarav Single Invoice Traders")
    (only,) = h.list_open_invoices(aarav)
    sandbox.add_payment(only["invoice_id"])
    assert h.list_open_invoices(aarav) == []
