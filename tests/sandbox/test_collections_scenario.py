"""The sandbox's collections scenario, over real HTTP, run through the reminder-policy rules.

``Sandbox(scenario="collections")`` adds customers that exercise every rule on top of the
default seed (which stays exactly as it was). These tests read it the way the pipeline will:
``GET /invoices?status=overdue`` plus ``status=unpaid`` with the contract's due-date filters,
contact details for the switches, then the pure rules, then the WhatsApp endpoint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from test_sandbox_contracts import ALL_ZOHO, assert_valid, validator

from sandbox import Sandbox
from sandbox.scenarios import COLLECTIONS, REMINDERS_FIELD
from sandbox.stage_templates import STAGE_TEMPLATES
from zoho_whatsapp.rules.eligibility import check_invoice, customer_next_allowed_day
from zoho_whatsapp.rules.money import parse_amount
from zoho_whatsapp.rules.phone import to_whatsapp_number
from zoho_whatsapp.rules.policy import CollectionsPolicy
from zoho_whatsapp.rules.stages import StageDecision, decide_stage, upcoming_due_dates
from zoho_whatsapp.rules.statement import (
    MAX_RENDERED_BODY_CHARS,
    CustomerMessage,
    DueInvoice,
    build_statements,
)
from zoho_whatsapp.rules.templates import TemplateSpec, build_template_message, load_templates

POLICY = CollectionsPolicy()
SCENARIO_NAMES = {c.name for c in COLLECTIONS}
UNPAID = ("sent", "overdue", "partially_paid", "viewed")


class Books:
    """Just enough of a Zoho Books client: one token, paginated GETs, a call counter."""

    def __init__(self, sb: Sandbox, http: requests.Session) -> None:
        self.sb, self.http, self.calls = sb, http, 0
        creds = sb.credentials
        token = http.post(
            f"{sb.url}/oauth/v2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": creds["zoho_refresh_token"],
                "client_id": creds["zoho_client_id"],
                "client_secret": creds["zoho_client_secret"],
            },
        ).json()["access_token"]
        self.headers = {"Authorization": f"Zoho-oauthtoken {token}"}
        self.org = creds["organization_id"]

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        self.calls += 1
        response = self.http.get(
            f"{self.sb.url}/books/v3{path}", params={"organization_id": self.org, **params}, headers=self.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    def pages(self, path: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            body = self.get(path, page=page, per_page=200, **params)
            yield body
            if not body["page_context"]["has_more_page"]:
                return
            page += 1

    def rows(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        return [row for body in self.pages(path, key, **params) for row in body[key]]


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    sandbox = Sandbox(host="127.0.0.1", port=0, seed=42, scenario="collections", zoho_rate_limit_per_minute=1000,
                      whatsapp_rate_cap=1000)
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def books(sb: Sandbox) -> Iterator[Books]:
    with requests.Session() as http:
        yield Books(sb, http)


@pytest.fixture(scope="module")
def today(sb: Sandbox) -> date:
    return sb.store.today


@pytest.fixture(scope="module")
def templates() -> dict[str, TemplateSpec]:
    return load_templates()


@pytest.fixture(scope="module")
def listed(books: Books, today: date) -> dict[str, dict[str, Any]]:
    """Everything the run lists: the overdue invoices and the not-yet-overdue ones due soon."""
    first, last = upcoming_due_dates(POLICY, today)
    rows = books.rows("/invoices", "invoices", status="overdue")
    rows += books.rows(
        "/invoices", "invoices", status="unpaid", due_date_start=first.isoformat(), due_date_end=last.isoformat()
    )
    listing = {row["invoice_id"]: row for row in rows}  # Zoho may list an invoice twice
    for invoice_id, row in listing.items():
        # The invoice's own switch is on its detail object only (what phase B may read within its budget).
        if row["customer_name"] in SCENARIO_NAMES:
            detail = books.get(f"/invoices/{invoice_id}")["invoice"]
            row["payment_reminder_enabled"] = detail["payment_reminder_enabled"]
    return listing


@pytest.fixture(scope="module")
def contacts(books: Books) -> dict[str, dict[str, Any]]:
    """Contact list rows (numbers), with the detail's switches for the scenario's customers."""
    rows = {c["contact_id"]: c for c in books.rows("/contacts", "contacts")}
    for contact_id, row in rows.items():
        if row["contact_name"] in SCENARIO_NAMES:
            row.update(books.get(f"/contacts/{contact_id}")["contact"])
    return rows


def by_name(sb: Sandbox, name: str) -> list[dict[str, Any]]:
    return sorted((r for r in sb.invoices() if r["customer_name"] == name), key=lambda r: r["invoice_number"])


# --- the data ------------------------------------------------------------------------------------------------


def test_the_default_seed_is_left_as_it_was(sb: Sandbox) -> None:
    with Sandbox(host="127.0.0.1", port=0, seed=42) as plain:
        default_rows = plain.overdue_invoices()
        assert len(default_rows) == 320
        assert not {r["customer_name"] for r in plain.invoices()} & SCENARIO_NAMES
        assert len(plain.templates()) == len(sb.templates())  # the stage templates are approved in both
    scenario_overdue = [r for r in sb.overdue_invoices() if r["customer_name"] in SCENARIO_NAMES]
    expected = sum(1 for c in COLLECTIONS for i in c.invoices if i.days > 0)
    assert len(scenario_overdue) == expected
    seeded = {r["invoice_id"]: r for r in sb.overdue_invoices() if r["customer_name"] not in SCENARIO_NAMES}
    assert seeded.keys() == {r["invoice_id"] for r in default_rows}


def test_every_customer_and_invoice_count_is_there(sb: Sandbox, today: date) -> None:
    counts = Counter(r["customer_name"] for r in sb.invoices() if r["customer_name"] in SCENARIO_NAMES)
    assert counts == {c.name: len(c.invoices) for c in COLLECTIONS}
    assert {counts[n] for n in counts} >= {1, 2, 11, 40}
    for customer in COLLECTIONS:
        rows = by_name(sb, customer.name)
        assert sorted((today - date.fromisoformat(r["due_date"])).days for r in rows) == sorted(
            i.days for i in customer.invoices
        )
        for row in rows:
            days = (today - date.fromisoformat(row["due_date"])).days
            assert row["status"] == ("overdue" if days > 0 else "sent")  # due today is not overdue yet
    numbers = [r["invoice_number"] for r in sb.invoices()]
    assert len(numbers) == len(set(numbers))
    mobiles = [c["mobile"] for c in sb.contacts() if c["contact_name"] in SCENARIO_NAMES]
    assert len({to_whatsapp_number(m) for m in mobiles}) == len(COLLECTIONS)  # all usable, none shared


def test_listing_rows_carry_promises_and_custom_fields(books: Books, listed: dict[str, dict[str, Any]], today: date) -> None:
    farida = sorted(
        (r for r in listed.values() if r["customer_name"] == "Farida Promised Payments"), key=lambda r: r["invoice_number"]
    )
    assert [r["payment_expected_date"] for r in farida] == [
        (today + timedelta(days=n)).isoformat() for n in (5, 0, -2)
    ]
    harsh = sorted(
        (r for r in listed.values() if r["customer_name"] == "Harsh Mixed Switches Hardware"),
        key=lambda r: r["invoice_number"],
    )
    assert [[f["value"] for f in r["custom_fields"]] for r in harsh] == [[], ["Off"], ["On"], []]
    assert harsh[1]["custom_fields"][0] == dict(REMINDERS_FIELD, value="Off")
    plain = next(r for r in listed.values() if r["customer_name"] not in SCENARIO_NAMES)
    assert "payment_reminder_enabled" not in plain  # detail objects only, as in Zoho
    assert (plain["payment_expected_date"], plain["custom_fields"]) == ("", [])
    # and the pages still match the official contract
    v = validator("zoho-books/invoices.yml", "list-invoices-response", ALL_ZOHO)
    for body in books.pages("/invoices", "invoices", status="overdue"):
        assert_valid(v, body)


def test_the_switches_are_on_the_detail_objects(sb: Sandbox, books: Books) -> None:
    gokul = next(c for c in sb.contacts() if c["contact_name"] == "Gokul Reminders Off Agencies")
    assert books.get(f"/contacts/{gokul['contact_id']}")["contact"]["payment_reminder_enabled"] is False
    aarav = next(c for c in sb.contacts() if c["contact_name"] == "Aarav Single Invoice Traders")
    assert books.get(f"/contacts/{aarav['contact_id']}")["contact"]["payment_reminder_enabled"] is True
    harsh = by_name(sb, "Harsh Mixed Switches Hardware")
    details = [books.get(f"/invoices/{r['invoice_id']}")["invoice"] for r in harsh]
    assert [d["payment_reminder_enabled"] for d in details] == [False, True, True, True]
    assert details[1]["custom_fields"][0]["value"] == "Off"
    v = validator("zoho-books/invoices.yml", "get-an-invoice-response", ALL_ZOHO)
    assert_valid(v, books.get(f"/invoices/{harsh[1]['invoice_id']}"))
    assert_valid(validator("zoho-books/contacts.yml", "get-contact-response", ALL_ZOHO),
                 books.get(f"/contacts/{gokul['contact_id']}"))


def test_status_and_due_date_filters_of_the_contract(sb: Sandbox, books: Books, today: date) -> None:
    truth = sb.invoices()

    def expect(pred: Any) -> set[str]:
        return {r["invoice_id"] for r in truth if pred(r)}

    def got(**params: Any) -> set[str]:
        return {r["invoice_id"] for r in books.rows("/invoices", "invoices", **params)}

    first, last = today.isoformat(), (today + timedelta(days=3)).isoformat()
    soon = got(status="unpaid", due_date_start=first, due_date_end=last)
    assert soon == expect(lambda r: r["status"] in UNPAID and first <= r["due_date"] <= last)
    names = Counter(r["customer_name"] for r in truth if r["invoice_id"] in soon)
    assert names["Indira Due Soon Foods"] == 4 and names["Jatin Courtesy Steel"] == 1
    assert names["Kavya Due Today Pharma"] == 1 and "Sunita Not Yet Due Logistics" not in names
    assert got(status="sent", due_date_start=first, due_date_end=last) == soon  # none is part-paid or viewed
    # before/after are exclusive: only what is due today
    yesterday, tomorrow = (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()
    due_today = got(status="unpaid", due_date_after=yesterday, due_date_before=tomorrow)
    assert due_today == expect(lambda r: r["status"] in UNPAID and r["due_date"] == first)
    assert len(due_today) >= 3  # Indira's, Kavya's and the seed's own
    overdue_week = got(status="overdue", due_date_start=(today - timedelta(days=7)).isoformat(), due_date_end=yesterday)
    assert overdue_week == expect(lambda r: r["status"] == "overdue" and r["due_date"] >= (today - timedelta(days=7)).isoformat())
    assert books.http.get(
        f"{sb.url}/books/v3/invoices", params={"organization_id": books.org, "due_date_start": "7/7/2026"}, headers=books.headers
    ).json()["code"] == 2


def test_the_stage_templates_are_approved_in_the_sandbox_as_written(templates: dict[str, TemplateSpec]) -> None:
    for name, approved in STAGE_TEMPLATES.items():
        spec = templates[name]
        assert (approved["parameters"], approved["body"]) == (list(spec.parameters), spec.body)
    assert set(STAGE_TEMPLATES) == POLICY.template_names()


# --- the rules over it --------------------------------------------------------------------------------------


@dataclass
class Day:
    messages: list[CustomerMessage] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # invoice_id -> reason
    waiting: dict[str, str] = field(default_factory=dict)  # invoice_id -> StageWait reason


def plan_day(
    rows: dict[str, dict[str, Any]],
    contacts: dict[str, dict[str, Any]],
    today: date,
    templates: dict[str, TemplateSpec],
    reached: dict[str, dict[int, date]] | None = None,
    last_messaged: dict[str, date] | None = None,
) -> Day:
    """The rules composed as the pipeline will: eligibility, cadence, stage, one message per customer."""
    reached, last_messaged = reached or {}, last_messaged or {}
    day = Day()
    due: list[DueInvoice] = []
    for invoice_id, row in rows.items():
        balance = parse_amount(row["balance"])
        if balance <= 0:
            day.held[invoice_id] = "zero_balance"
            continue
        contact = contacts.get(row["customer_id"])
        hold = check_invoice(
            row, balance=balance, currency_code=row["currency_code"], today=today, policy=POLICY, contact=contact
        )
        if hold is not None:
            day.held[invoice_id] = hold.reason
            continue
        if customer_next_allowed_day(last_messaged.get(row["customer_id"]), today, POLICY.min_days_between_reminders):
            day.held[invoice_id] = "cadence"
            continue
        decision = decide_stage(date.fromisoformat(row["due_date"]), today, reached.get(invoice_id, {}), POLICY)
        if not isinstance(decision, StageDecision):
            day.waiting[invoice_id] = decision.reason
            continue
        try:
            recipient = to_whatsapp_number((contact or {}).get("mobile"))
        except ValueError:
            day.held[invoice_id] = "no_mobile"
            continue
        due.append(
            DueInvoice(
                invoice_id, row["invoice_number"], row["customer_id"], row["customer_name"], row["currency_code"],
                balance, date.fromisoformat(row["due_date"]), recipient, decision,
            )
        )
    statements = build_statements(due, POLICY, templates)
    assert statements.skipped == ()
    day.messages = list(statements.messages)
    return day


@pytest.fixture(scope="module")
def first_run(listed: dict[str, dict[str, Any]], contacts: dict[str, dict[str, Any]], today: date,
              templates: dict[str, TemplateSpec]) -> Day:
    return plan_day(listed, contacts, today, templates)


def messages_of(day: Day, name: str) -> list[CustomerMessage]:
    return [m for m in day.messages if m.customer_name == name]


def reasons_of(sb: Sandbox, day: Day, name: str) -> list[str]:
    return [day.held.get(r["invoice_id"]) or day.waiting.get(r["invoice_id"]) or "sent" for r in by_name(sb, name)]


def test_eleven_invoices_one_message_naming_all_eleven(sb: Sandbox, first_run: Day) -> None:
    (message,) = messages_of(first_run, "Chitra Eleven Invoice Exports")
    assert message.invoice_count == 11 and message.listed == 11
    for row in by_name(sb, "Chitra Eleven Invoice Exports"):
        assert row["invoice_number"] in message.text
    assert message.template_name == "reminder_final_notice_multi"  # 33 and 40 days: the +30 stage
    part_paid = next(r for r in by_name(sb, "Chitra Eleven Invoice Exports") if r["total"] != r["balance"])
    assert message.total == sum(parse_amount(r["balance"]) for r in by_name(sb, "Chitra Eleven Invoice Exports"))
    assert part_paid["balance"] == 35000.0  # the balance, not the invoice total, is what is asked for


def test_forty_invoices_one_message_within_meta_limits(sb: Sandbox, first_run: Day, templates: dict[str, TemplateSpec]) -> None:
    (message,) = messages_of(first_run, "Deccan Forty Invoice Industries")
    assert message.invoice_count == 40
    assert len(message.text) <= MAX_RENDERED_BODY_CHARS
    assert all(len(v) <= 1024 and "\n" not in v for v in message.parameters.values())
    assert message.listed + (0 if message.listed == 40 else int(message.text.split(" and ")[-1].split()[0])) == 40
    build_template_message(templates[message.template_name], message.recipient, message.parameters)


def test_one_message_per_currency(sb: Sandbox, first_run: Day) -> None:
    messages = {m.currency_code: m for m in messages_of(first_run, "Eshan Dual Currency Impex")}
    assert set(messages) == {"INR", "USD"}
    assert (messages["INR"].total, messages["INR"].parameters["total_due"]) == (Decimal(65000), "₹65,000.00")
    assert (messages["USD"].total, messages["USD"].parameters["total_due"]) == (Decimal(2000), "$2,000.00")
    assert "below_minimum" in reasons_of(sb, first_run, "Eshan Dual Currency Impex")  # the $0.40 one


def test_promises_hold_until_they_pass(sb: Sandbox, first_run: Day) -> None:
    assert reasons_of(sb, first_run, "Farida Promised Payments") == [
        "promised_payment_date",
        "promised_payment_date",  # promised for today: still held today
        "sent",  # promised two days ago and not paid
    ]
    (message,) = messages_of(first_run, "Farida Promised Payments")
    assert message.invoice_count == 1 and message.template_name == "reminder_overdue_7"


def test_reminders_switched_off_in_zoho(sb: Sandbox, first_run: Day) -> None:
    assert reasons_of(sb, first_run, "Gokul Reminders Off Agencies") == ["reminders_disabled"] * 2
    assert not messages_of(first_run, "Gokul Reminders Off Agencies")
    assert reasons_of(sb, first_run, "Harsh Mixed Switches Hardware") == [
        "reminders_disabled",  # payment_reminder_enabled false on the invoice
        "reminders_disabled",  # custom field Off
        "sent",  # custom field On
        "sent",
    ]
    (message,) = messages_of(first_run, "Harsh Mixed Switches Hardware")
    assert (message.invoice_count, message.template_name) == (2, "reminder_overdue_15_multi")


def test_each_stage_has_its_template(first_run: Day) -> None:
    expected = {
        "Jatin Courtesy Steel": "reminder_courtesy",
        "Kavya Due Today Pharma": "reminder_due_today",
        "Lalit Overdue One Day Motors": "reminder_overdue_1",
        "Aarav Single Invoice Traders": "reminder_overdue_7",
        "Meera Fortnight Electricals": "reminder_overdue_15",
        "Naveen Final Notice Plastics": "reminder_final_notice",
        "Omkar Repeat Notice Chemicals": "reminder_final_notice",  # first contact at +45: the final notice
        "Pooja Between Stages Garments": "reminder_overdue_1",  # +4: the latest stage whose day has come
        "Bhavna Two Invoice Textiles": "reminder_overdue_15_multi",
        "Indira Due Soon Foods": "reminder_due_today_multi",
    }
    got = {name: [m.template_name for m in messages_of(first_run, name)] for name in expected}
    assert got == {name: [template] for name, template in expected.items()}
    (indira,) = messages_of(first_run, "Indira Due Soon Foods")
    assert indira.invoice_count == 4  # due today, and in 1, 2 and 3 days
    assert sorted(indira.invoice_stages.values()) == [-3, -3, -3, 0]


def test_minimum_and_not_yet_due(sb: Sandbox, first_run: Day, listed: dict[str, dict[str, Any]]) -> None:
    assert reasons_of(sb, first_run, "Rohan Small Balances Packaging") == ["below_minimum", "below_minimum", "sent"]
    # due in 5 and 20 days: outside the listings (not overdue, beyond the courtesy stage's reach)
    assert not {r["invoice_id"] for r in by_name(sb, "Sunita Not Yet Due Logistics")} & listed.keys()
    assert not messages_of(first_run, "Sunita Not Yet Due Logistics")


def test_one_message_per_customer_and_currency_across_the_whole_ledger(first_run: Day) -> None:
    keys = Counter((m.customer_id, m.currency_code) for m in first_run.messages)
    assert max(keys.values()) == 1
    reminded = sum(m.invoice_count for m in first_run.messages)
    assert len(first_run.messages) / reminded < 0.6  # far fewer messages than invoices


def test_a_repeat_with_history(listed: dict[str, dict[str, Any]], contacts: dict[str, dict[str, Any]], today: date,
                               templates: dict[str, TemplateSpec]) -> None:
    omkar = {k: r for k, r in listed.items() if r["customer_name"] == "Omkar Repeat Notice Chemicals"}
    (invoice_id,) = omkar
    history = {invoice_id: {30: today - timedelta(days=15)}}
    (message,) = plan_day(omkar, contacts, today, templates, reached=history).messages
    assert (message.stage.repeat, message.stage.offset) == (1, 45)
    assert message.template_name == "reminder_final_notice"
    too_soon = {invoice_id: {30: today - timedelta(days=14)}}
    assert plan_day(omkar, contacts, today, templates, reached=too_soon).messages == []


def test_every_message_is_accepted_by_the_whatsapp_endpoint(sb: Sandbox, first_run: Day,
                                                            templates: dict[str, TemplateSpec]) -> None:
    before = len(sb.messages())
    with requests.Session() as http:
        url = f"{sb.url}/v23.0/{sb.credentials['phone_number_id']}/messages"
        headers = {"Authorization": f"Bearer {sb.credentials['whatsapp_token']}"}
        for message in first_run.messages:
            body = build_template_message(
                templates[message.template_name], message.recipient, message.parameters, language=message.language
            )
            response = http.post(url, json=body, headers=headers)
            assert response.status_code == 200, response.text
    received = sb.messages()[before:]
    assert [m["text"] for m in received] == [m.text for m in first_run.messages]  # as the customer reads it


def test_two_weeks_of_daily_runs_with_a_paused_week(listed: dict[str, dict[str, Any]],
                                                    contacts: dict[str, dict[str, Any]], today: date,
                                                    templates: dict[str, TemplateSpec]) -> None:
    """Nothing is paid; the DAG runs daily, pauses days 2-8, then catches up (a backfill of one run)."""
    reached: dict[str, dict[int, date]] = {}
    last_messaged: dict[str, date] = {}
    sent_days: dict[str, list[date]] = {}
    for n in [0, 1, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]:
        day_date = today + timedelta(days=n)
        day = plan_day(listed, contacts, day_date, templates, reached, last_messaged)
        assert len({(m.customer_id, m.currency_code) for m in day.messages}) == len(day.messages)
        for message in day.messages:
            previous = last_messaged.get(message.customer_id)
            assert previous is None or previous == day_date or (day_date - previous).days >= 3
            last_messaged[message.customer_id] = day_date
            sent_days.setdefault(message.customer_id, []).append(day_date)
            for invoice_id, offset in message.invoice_stages.items():
                history = reached.setdefault(invoice_id, {})
                assert offset not in history and all(offset > o for o in history)
                assert all(d < day_date for d in history.values())
                history[offset] = day_date
    names = {c["contact_id"]: c["contact_name"] for c in contacts.values()}
    by_customer = {names[cid]: sorted(set(days)) for cid, days in sent_days.items()}
    for days in by_customer.values():
        assert all((b - a).days >= 3 for a, b in zip(days, days[1:], strict=False))
    day = [today + timedelta(days=n) for n in range(21)]
    # messaged on day 0; then the paused week; day 9 carries every stage that fell due meanwhile
    assert by_customer["Chitra Eleven Invoice Exports"][:2] == [day[0], day[9]]
    # -3; paused through 0; +1 caught up 5 days late (never 0 and +1 both); +7 on its cadence day; +15
    assert by_customer["Jatin Courtesy Steel"] == [day[0], day[9], day[12], day[18]]
    assert by_customer["Omkar Repeat Notice Chemicals"] == [day[0], day[15]]  # final notice, then one repeat
    for stages in reached.values():
        assert len(stages) == len(set(stages.values()))  # never two stages of one invoice on one day
