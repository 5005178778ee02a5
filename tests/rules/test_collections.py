"""One reminder day decided (rules.collections.plan_day): the order of the rules, their reasons, the cadence."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from zoho_whatsapp.rules.collections import last_messaged_on, plan_day
from zoho_whatsapp.rules.policy import CollectionsPolicy
from zoho_whatsapp.rules.reminders import InvalidInvoice, OverdueInvoice, cannot_remind, overdue_record
from zoho_whatsapp.rules.templates import load_templates

TODAY = date(2026, 7, 7)
OCCASION = TODAY.isoformat()
PRIYA = "+919820012345"
RAJESH = "+919876543210"
POLICY = CollectionsPolicy()


@pytest.fixture(scope="module")
def templates():
    return load_templates()


def record(n: int, days: int, balance: str = "10000", *, customer: str = "c1", currency: str = "INR",
           to: str | None = PRIYA, **extra: object) -> tuple[str, dict]:
    invoice_id = str(982000000500000 + n)
    row = {"invoice_id": invoice_id, "invoice_number": f"INV-{n:06d}", "customer_id": customer,
           "customer_name": f"Customer {customer}", "currency_code": currency, "balance": balance,
           "due_date": (TODAY - timedelta(days=days)).isoformat(), **extra}
    if to is not None:
        row["recipient"] = to
    return invoice_id, row


def day(records, templates, *, reached=None, messaged=None, policy=POLICY, cadence_today=TODAY):
    return plan_day(records, today=TODAY, cadence_today=cadence_today, occasion=OCCASION, policy=policy,
                    templates=templates, reached=reached or {}, messaged=messaged or {})


def reasons(plan) -> dict[str, str]:
    return {invoice_id: skip.reason for invoice_id, skip in plan.skips.items()}


def test_a_customer_s_due_invoices_go_in_one_message_and_every_other_invoice_has_a_reason(templates) -> None:
    records = [record(n, 3 + n) for n in range(11)]
    records += [
        record(20, 7, "500", customer="c2", to=RAJESH),
        record(21, 7, "0", customer="c3", to=RAJESH),
        record(22, 7, customer="c4", to=None, unusable_number={"reason": "not_mobile", "detail": "+91 22XXXX"}),
        record(23, 7, customer="c5", to=RAJESH, payment_expected_date=(TODAY + timedelta(days=2)).isoformat()),
        record(24, 7, customer="c5", to=RAJESH, payment_expected_date=(TODAY - timedelta(days=1)).isoformat()),
        record(25, 7, customer="c6", to=RAJESH,
               custom_fields=[{"api_name": "cf_whatsapp_reminders", "value": "Off"}]),
        record(26, 7, customer="c7", to=RAJESH, contact_payment_reminder_enabled=False),
        record(27, 7, "0.50", customer="c8", to=RAJESH),
        record(28, 7, "-5", customer="c9", to=RAJESH),
    ]
    records.append((str(982000000500099), {"invoice_id": "982000000500099", "invoice_number": "INV-99"}))
    plan = day(records, templates)
    by_customer = {m.customer_id: m for m in plan.messages}
    assert set(by_customer) == {"c1", "c2", "c5"}
    assert by_customer["c1"].invoice_count == 11 and by_customer["c1"].template_name.endswith("_multi")
    assert by_customer["c5"].invoice_count == 1  # the promise passed yesterday; the other holds
    assert reasons(plan) == {
        "982000000500021": "zero_balance",
        "982000000500022": "not_mobile",
        "982000000500023": "promised_payment_date",
        "982000000500025": "reminders_disabled",
        "982000000500026": "reminders_disabled",
        "982000000500027": "below_minimum",
        "982000000500028": "negative_balance",
        "982000000500099": "invalid_invoice",
    }
    every = {invoice_id for invoice_id, _ in records}
    sent = {i for m in plan.messages for i in m.invoice_ids}
    assert sent | set(plan.skips) == every and not sent & set(plan.skips)


def test_a_promise_made_for_today_still_holds_and_a_switch_on_stays_on(templates) -> None:
    plan = day([record(1, 9, payment_expected_date=OCCASION),
                record(2, 9, customer="c2", to=RAJESH, contact_payment_reminder_enabled=True,
                       custom_fields=[{"api_name": "cf_whatsapp_reminders", "value": "On"}])], templates)
    assert reasons(plan) == {"982000000500001": "promised_payment_date"}
    assert [m.customer_id for m in plan.messages] == ["c2"]


def test_stages_come_from_what_the_invoice_reached(templates) -> None:
    first, second, third = record(1, 9), record(2, 4), record(3, 8)
    reached = {
        first[0]: {7: TODAY - timedelta(days=2)},  # +7 reached two days ago: +15 not due yet
        second[0]: {1: TODAY},  # reached a stage today (a re-run): none again today
        third[0]: {1: TODAY - timedelta(days=7)},  # +1 a week ago: +7 due now
    }
    plan = day([first, second, third], templates, reached=reached)
    assert reasons(plan) == {first[0]: "awaiting_next_stage", second[0]: "stage_sent_today"}
    [message] = plan.messages
    assert message.invoice_ids == (third[0],) and message.invoice_stages == {third[0]: 7}
    assert message.template_name == "reminder_overdue_7"


def test_before_the_first_stage_nothing_is_sent(templates) -> None:
    plan = day([record(1, -5)], templates)
    assert reasons(plan) == {"982000000500001": "before_first_stage"} and plan.messages == ()


@pytest.mark.parametrize(("last_days_ago", "min_days", "held"), [
    (1, 3, True), (2, 3, True), (3, 3, False), (0, 0, True), (1, 0, False), (5, 3, False),
])
def test_the_customer_cadence(templates, last_days_ago: int, min_days: int, held: bool) -> None:
    policy = CollectionsPolicy(min_days_between_reminders=min_days)
    last = (TODAY - timedelta(days=last_days_ago)).isoformat()
    messaged = {"c1": [(last, "2026-07-01", "INR")]}
    plan = day([record(1, 9), record(2, 20)], templates, messaged=messaged, policy=policy)
    if held:
        assert set(reasons(plan).values()) == {"cadence"} and plan.messages == ()
    else:
        assert not plan.skips and plan.messages[0].invoice_count == 2


def test_the_cadence_counts_real_days_and_tells_currencies_of_one_day_apart(templates) -> None:
    usd_today = {"c1": [(OCCASION, OCCASION, "USD")]}
    assert day([record(1, 9)], templates, messaged=usd_today).messages  # the INR statement is its own
    inr_today = {"c1": [(OCCASION, OCCASION, "INR")]}
    assert reasons(day([record(1, 9)], templates, messaged=inr_today)) == {"982000000500001": "cadence"}
    # a backfill of an older date run today: the customer got today's message already
    older = {"c1": [(OCCASION, "2026-07-09", "USD")]}
    assert reasons(day([record(1, 9)], templates, messaged=older)) == {"982000000500001": "cadence"}
    assert last_messaged_on([("2026-07-05", "2026-07-05", "INR"), ("2026-07-06", OCCASION, "USD")], OCCASION,
                            "INR") == date(2026, 7, 5)
    assert last_messaged_on([], OCCASION, "INR") is None


def test_two_currencies_two_messages(templates) -> None:
    plan = day([record(1, 9), record(2, 9, "120", currency="USD"), record(3, 15)], templates)
    assert sorted((m.currency_code, m.invoice_count) for m in plan.messages) == [("INR", 2), ("USD", 1)]


def test_the_one_invoice_type(templates) -> None:
    invoice = OverdueInvoice.from_record(overdue_record(
        {"invoice_id": "1", "invoice_number": "INV-1", "customer_name": "A", "due_date": "2026-07-01",
         "balance": "10", "custom_fields": [{"api_name": "cf_x", "value": "On", "data_type": "dropdown"}],
         "payment_expected_date": "", "invoice_url": "https://books.zoho.in/x"}, ["98200 12345"], "IN"))
    assert invoice.recipient == PRIYA and invoice.decision is None and cannot_remind(invoice) is None
    kept = overdue_record({"invoice_id": "1", "custom_fields": [{"api_name": "cf_x", "value": "On", "index": 1}]},
                          [], "IN", {"payment_reminder_enabled": False})
    assert kept["custom_fields"] == [{"api_name": "cf_x", "value": "On"}]
    assert kept["contact_payment_reminder_enabled"] is False and "invoice_url" not in kept
    assert "contact_payment_reminder_enabled" not in overdue_record({"invoice_id": "1"}, [], "IN",
                                                                    {"payment_reminder_enabled": None})
    nobody = OverdueInvoice.from_record({"invoice_id": "1", "invoice_number": "INV-1", "customer_name": "A",
                                         "due_date": "2026-07-01", "balance": "10"})
    assert (cannot_remind(nobody).reason, nobody.currency_code) == ("no_mobile", "INR")
    with pytest.raises(InvalidInvoice):
        OverdueInvoice.from_record({"invoice_id": "1", "invoice_number": "INV-1", "customer_name": "A",
                                    "due_date": "soon"})


def test_a_suppressed_number_is_skipped_for_that_reason_before_any_stage_or_hold(templates) -> None:
    from zoho_whatsapp.rules.messages import Skip

    stop = {PRIYA: Skip("opted_out", "replied STOP")}
    plan = plan_day(
        [record(1, 9), record(2, -9), record(3, 9, "0"), record(4, 9, customer="c2", to=RAJESH)], today=TODAY,
        cadence_today=TODAY, occasion=OCCASION, policy=POLICY, templates=templates, reached={}, messaged={},
        suppressed=stop)
    assert reasons(plan) == {"982000000500001": "opted_out", "982000000500002": "opted_out",
                             "982000000500003": "zero_balance"}
    assert [m.customer_id for m in plan.messages] == ["c2"]


def test_phone_candidates_leave_out_empty_and_missing_numbers() -> None:
    from zoho_whatsapp.rules.reminders import phone_candidates

    invoice = {"mobile": None, "phone": "  ", "billing_address": {"phone": " 98200 12345 "}}
    assert phone_candidates(invoice, ["9820012345", "98200 12345"]) == ("98200 12345", "9820012345")


def test_a_record_without_a_customer_id_has_an_empty_one_and_a_bad_record_is_named() -> None:
    record = {"invoice_id": "9820000005", "invoice_number": "INV-000001", "customer_name": "Priya Textiles",
              "due_date": "2026-11-01", "balance": "100.00"}
    assert OverdueInvoice.from_record(record).customer_id == ""
    with pytest.raises(InvalidInvoice, match="'INV-000001' has no due_date"):
        OverdueInvoice.from_record({**record, "due_date": None})
    with pytest.raises(InvalidInvoice, match="'9820000005' has no invoice_number"):
        OverdueInvoice.from_record({**record, "invoice_number": ""})
