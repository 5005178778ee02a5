"""One message per customer per currency: counts, totals, oldest date, invoice lists within Meta's limit."""

from __future__ import annotations

import doctest
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest

import zoho_whatsapp.rules.statement
from zoho_whatsapp.rules.policy import (
    MULTI_PARAMETERS,
    SINGLE_PARAMETERS,
    CollectionsPolicy,
    PolicyError,
)
from zoho_whatsapp.rules.stages import StageDecision, decide_stage
from zoho_whatsapp.rules.statement import (
    MAX_RENDERED_BODY_CHARS,
    DueInvoice,
    build_customer_message,
    build_statements,
    group_key,
    list_invoice_numbers,
)
from zoho_whatsapp.rules.templates import (
    MAX_PARAMETER_CHARS,
    TEMPLATES_PATH_ENV,
    TemplateError,
    TemplateSpec,
    build_template_message,
    load_templates,
    render_text,
)

POLICY = CollectionsPolicy()
TODAY = date(2026, 7, 7)
PRIYA = "+919820012345"


@pytest.fixture(scope="module")
def templates() -> dict[str, TemplateSpec]:
    import os

    saved = os.environ.pop(TEMPLATES_PATH_ENV, None)
    try:
        return load_templates()
    finally:
        if saved is not None:
            os.environ[TEMPLATES_PATH_ENV] = saved


def due(
    number: int,
    days: int,
    balance: str = "10000",
    *,
    customer: str = "c1",
    name: str = "Priya Textiles",
    currency: str = "INR",
    to: str = PRIYA,
    reached: dict[int, date] | None = None,
) -> DueInvoice:
    """Invoice INV-<number>, ``days`` past due today, with its stage decided by the real rules."""
    due_date = TODAY - timedelta(days=days)
    decision = decide_stage(due_date, TODAY, reached or {}, POLICY)
    assert isinstance(decision, StageDecision)
    return DueInvoice(
        invoice_id=str(982000000500000 + number),
        invoice_number=f"INV-{number:06d}",
        customer_id=customer,
        customer_name=name,
        currency_code=currency,
        balance=Decimal(balance),
        due_date=due_date,
        recipient=to,
        decision=decision,
    )


# --- shipped templates ---------------------------------------------------------------------------------


def test_every_stage_has_approvable_templates(templates: dict[str, TemplateSpec]) -> None:
    POLICY.check_templates(templates)
    for stage in POLICY.stages:
        single, multi = templates[stage.template], templates[stage.template_multi]
        assert single.parameters == SINGLE_PARAMETERS
        assert multi.parameters == MULTI_PARAMETERS
        for spec in (single, multi):
            assert spec.category == "utility"
            assert len(spec.body) <= MAX_RENDERED_BODY_CHARS
            assert "\n" not in spec.body and "\t" not in spec.body and "     " not in spec.body


PROMOTIONAL = re.compile(
    r"\b(offer|discount|sale|free|deal|deals|limited|exclusive|win|winner|cashback|coupon|buy|shop|"
    r"hurry|bonus|gift|save|promo|promotion|special)\b",
    re.IGNORECASE,
)


def test_stage_templates_use_no_promotional_words(templates: dict[str, TemplateSpec]) -> None:
    for name in POLICY.template_names():
        assert not PROMOTIONAL.search(templates[name].body), name


def test_check_templates_names_what_is_wrong(templates: dict[str, TemplateSpec]) -> None:
    missing = {k: v for k, v in templates.items() if k != "reminder_overdue_7_multi"}
    with pytest.raises(PolicyError, match=r"stage \+7: template 'reminder_overdue_7_multi' is not defined"):
        POLICY.check_templates(missing)
    odd = dict(templates)
    odd["reminder_courtesy"] = TemplateSpec("reminder_courtesy", "en", ("party_name", "gst_no"), "{{party_name}} {{gst_no}}")
    with pytest.raises(PolicyError, match=r"stage -3: template 'reminder_courtesy' uses gst_no"):
        POLICY.check_templates(odd)
    # a multi template may not use single-only values, and the other way round
    swapped = dict(templates)
    swapped["reminder_due_today_multi"] = templates["reminder_due_today"]
    with pytest.raises(PolicyError, match="invoice_number, amount_due, due_date"):
        POLICY.check_templates(swapped)
    swapped = dict(templates)
    swapped["reminder_due_today"] = templates["reminder_due_today_multi"]
    with pytest.raises(PolicyError, match="stage 0"):
        POLICY.check_templates(swapped)


# --- single invoice ---------------------------------------------------------------------------------------


def test_one_invoice_gets_the_single_invoice_wording(templates: dict[str, TemplateSpec]) -> None:
    message = build_customer_message([due(138, 7, "22000")], POLICY, templates)
    assert message.template_name == "reminder_overdue_7"
    assert dict(message.parameters) == {
        "party_name": "Priya Textiles",
        "invoice_number": "INV-000138",
        "amount_due": "₹22,000.00",
        "due_date": "30 June 2026",
    }
    assert message.text == (
        "Dear Priya Textiles, Invoice INV-000138 for ₹22,000.00 has been overdue since 30 June 2026. "
        "Please arrange payment at the earliest, or reply with the date you expect to pay."
    )
    assert (message.invoice_count, message.listed, message.total) == (1, 1, Decimal("22000"))
    assert message.invoice_ids == ("982000000500138",)
    assert message.invoice_stages == {"982000000500138": 7}
    assert message.phone_masked == "+91 98XXXXXX45"
    assert message.language == "en"
    assert message.oldest_due_date == date(2026, 6, 30)


@pytest.mark.parametrize(
    ("days", "template"),
    [
        (-3, "reminder_courtesy"),
        (-1, "reminder_courtesy"),
        (0, "reminder_due_today"),
        (1, "reminder_overdue_1"),
        (7, "reminder_overdue_7"),
        (15, "reminder_overdue_15"),
        (30, "reminder_final_notice"),
        (90, "reminder_final_notice"),
    ],
)
def test_each_stage_uses_its_template(days: int, template: str, templates: dict[str, TemplateSpec]) -> None:
    single = build_customer_message([due(1, days)], POLICY, templates)
    assert single.template_name == template
    pair = build_customer_message([due(1, days), due(2, -3)], POLICY, templates)
    assert pair.template_name == template + "_multi"


def test_a_repeat_uses_the_final_notice(templates: dict[str, TemplateSpec]) -> None:
    repeat = due(1, 45, reached={30: TODAY - timedelta(days=15)})
    assert repeat.decision.repeat == 1
    message = build_customer_message([repeat], POLICY, templates)
    assert message.template_name == "reminder_final_notice"
    assert message.invoice_stages == {repeat.invoice_id: 45}


# --- several invoices ------------------------------------------------------------------------------------------


def test_two_invoices_one_statement(templates: dict[str, TemplateSpec]) -> None:
    newer, older = due(140, 1, "8500"), due(139, 15, "123456.5")
    message = build_customer_message([newer, older], POLICY, templates)
    assert message.template_name == "reminder_overdue_15_multi"  # the most advanced stage
    assert message.stage.offset == 15
    assert dict(message.parameters) == {
        "party_name": "Priya Textiles",
        "invoice_count": "2",
        "total_due": "₹1,31,956.50",
        "oldest_due_date": "22 June 2026",
        "invoice_numbers": "INV-000139, INV-000140",  # oldest due first
    }
    assert message.text == (
        "Dear Priya Textiles, 2 invoices totalling ₹1,31,956.50 remain unpaid, the oldest since 22 June 2026: "
        "INV-000139, INV-000140. Please clear the payment now, or reply to tell us when it will be paid."
    )
    assert message.invoice_ids == (older.invoice_id, newer.invoice_id)
    assert message.invoice_stages == {older.invoice_id: 15, newer.invoice_id: 1}  # each keeps its own stage
    assert message.total == Decimal("131956.5")
    assert message.listed == 2


def test_same_due_date_is_ordered_by_invoice_number(templates: dict[str, TemplateSpec]) -> None:
    message = build_customer_message([due(12, 7), due(3, 7), due(7, 7)], POLICY, templates)
    assert message.invoice_numbers == ("INV-000003", "INV-000007", "INV-000012")


def test_eleven_invoices_are_all_named(templates: dict[str, TemplateSpec]) -> None:
    invoices = [due(100 + n, 2 + 3 * n, str(10000 + 1000 * n)) for n in range(11)]
    message = build_customer_message(invoices, POLICY, templates)
    assert message.invoice_count == 11
    assert message.listed == 11
    for invoice in invoices:
        assert invoice.invoice_number in message.parameters["invoice_numbers"]
    assert " more" not in message.text
    assert message.parameters["invoice_count"] == "11"
    assert message.parameters["total_due"] == "₹1,65,000.00"


def test_forty_invoices_fit_in_one_message(templates: dict[str, TemplateSpec]) -> None:
    invoices = [due(1000 + n, 1 + 2 * n, "5000") for n in range(40)]
    message = build_customer_message(invoices, POLICY, templates)
    assert len(message.text) <= MAX_RENDERED_BODY_CHARS
    assert all(len(v) <= MAX_PARAMETER_CHARS for v in message.parameters.values())
    assert message.invoice_count == 40
    assert message.listed == 40  # 40 short numbers still fit: all named
    assert message.parameters["total_due"] == "₹2,00,000.00"
    build_template_message(templates[message.template_name], message.recipient, message.parameters)


def test_too_many_invoices_are_cut_to_fit_with_and_n_more(templates: dict[str, TemplateSpec]) -> None:
    invoices = [due(n, 1 + n % 90) for n in range(1, 151)]
    invoices = [
        DueInvoice(**{**i.__dict__, "invoice_number": f"SHARMA/2026-27/{i.invoice_number}"}) for i in invoices
    ]
    message = build_customer_message(invoices, POLICY, templates)
    assert len(message.text) <= MAX_RENDERED_BODY_CHARS
    listed_text = message.parameters["invoice_numbers"]
    assert 0 < message.listed < 150
    assert listed_text.endswith(f" and {150 - message.listed} more")
    assert listed_text.count("SHARMA/") == message.listed
    assert listed_text.startswith(", ".join(message.invoice_numbers[: message.listed]) + " and ")
    # as many as fit: one more would not
    one_more = ", ".join(message.invoice_numbers[: message.listed + 1]) + f" and {150 - message.listed - 1} more"
    longer = render_text(templates[message.template_name], {**message.parameters, "invoice_numbers": one_more})
    assert len(longer) > MAX_RENDERED_BODY_CHARS


def test_a_very_long_name_still_fits(templates: dict[str, TemplateSpec]) -> None:
    name = "Sri Venkateswara " * 40  # ~680 characters of customer name
    invoices = [due(n, 7, name=name) for n in range(1, 41)]
    message = build_customer_message(invoices, POLICY, templates)
    assert len(message.text) <= MAX_RENDERED_BODY_CHARS
    assert message.listed < 40


def test_a_message_of_exactly_1024_characters_is_allowed(templates: dict[str, TemplateSpec]) -> None:
    short = build_customer_message([due(1, 7, name="P")], POLICY, templates)
    padding = MAX_RENDERED_BODY_CHARS - len(short.text)
    exact = build_customer_message([due(1, 7, name="P" * (1 + padding))], POLICY, templates)
    assert len(exact.text) == MAX_RENDERED_BODY_CHARS
    with pytest.raises(TemplateError, match="1025 characters"):
        build_customer_message([due(1, 7, name="P" * (2 + padding))], POLICY, templates)


def test_no_room_at_all_is_a_template_error(templates: dict[str, TemplateSpec]) -> None:
    name = "X" * 1000
    with pytest.raises(TemplateError, match="invoice_numbers|characters"):
        build_customer_message([due(1, 7, name=name), due(2, 7, name=name)], POLICY, templates)
    with pytest.raises(TemplateError, match="1024"):
        build_customer_message([due(1, 7, name=name)], POLICY, templates)


# --- list_invoice_numbers ---------------------------------------------------------------------------------------


def test_list_invoice_numbers_boundaries() -> None:
    numbers = ["INV-1", "INV-2", "INV-3", "INV-4"]
    full = "INV-1, INV-2, INV-3, INV-4"  # 26 characters
    assert list_invoice_numbers(numbers, len(full)) == (full, 4)
    assert list_invoice_numbers(numbers, len(full) + 50) == (full, 4)
    # "INV-1, INV-2, INV-3 and 1 more" is longer than the full list: the cut drops two at once
    assert list_invoice_numbers(numbers, len(full) - 1) == ("INV-1, INV-2 and 2 more", 2)
    assert list_invoice_numbers(numbers, len("INV-1, INV-2 and 2 more")) == ("INV-1, INV-2 and 2 more", 2)
    assert list_invoice_numbers(numbers, len("INV-1, INV-2 and 2 more") - 1) == ("INV-1 and 3 more", 1)
    assert list_invoice_numbers(numbers, len("INV-1 and 3 more")) == ("INV-1 and 3 more", 1)
    assert list_invoice_numbers(numbers, len("INV-1 and 3 more") - 1) == ("4 invoices", 0)
    assert list_invoice_numbers(numbers, len("4 invoices")) == ("4 invoices", 0)
    with pytest.raises(TemplateError, match="no room"):
        list_invoice_numbers(numbers, len("4 invoices") - 1)
    assert list_invoice_numbers(["INV-1"], 5) == ("INV-1", 1)
    with pytest.raises(TemplateError):
        list_invoice_numbers(["INV-1"], 4)
    with pytest.raises(ValueError, match="no invoice numbers"):
        list_invoice_numbers([], 100)


def test_list_invoice_numbers_counts_the_more_with_its_digits() -> None:
    numbers = [f"I{n}" for n in range(1, 13)]  # 12 numbers; "and 10 more" is a digit longer than "and 9 more"
    text, listed = list_invoice_numbers(numbers, len("I1, I2 and 10 more"))
    assert (text, listed) == ("I1, I2 and 10 more", 2)
    text, listed = list_invoice_numbers(numbers, len("I1, I2, I3 and 9 more"))
    assert (text, listed) == ("I1, I2, I3 and 9 more", 3)


# --- grouping -------------------------------------------------------------------------------------------------


def test_one_message_per_customer_and_currency(templates: dict[str, TemplateSpec]) -> None:
    invoices = [
        due(1, 7, "50000"),
        due(2, 20, "15000"),
        due(3, 10, "1200", currency="USD"),
        due(4, 3, "800", currency="usd"),
        due(5, 1, "9000", customer="c2", name="Aarav Traders", to="+919812345678"),
    ]
    result = build_statements(invoices, POLICY, templates)
    assert result.skipped == ()
    by_key = {(m.customer_id, m.currency_code): m for m in result.messages}
    assert set(by_key) == {("c1", "INR"), ("c1", "USD"), ("c2", "INR")}
    assert by_key["c1", "INR"].parameters["total_due"] == "₹65,000.00"
    assert by_key["c1", "USD"].parameters["total_due"] == "$2,000.00"
    assert by_key["c1", "USD"].invoice_count == 2
    assert by_key["c2", "INR"].template_name == "reminder_overdue_1"
    # ordered by customer name, then currency
    assert [(m.customer_name, m.currency_code) for m in result.messages] == [
        ("Aarav Traders", "INR"),
        ("Priya Textiles", "INR"),
        ("Priya Textiles", "USD"),
    ]


def test_an_invoice_with_its_own_number_still_rides_on_its_customers_one_message(
    templates: dict[str, TemplateSpec],
) -> None:
    invoices = [due(1, 7), due(2, 7), due(3, 7, to="+919876543210")]
    result = build_statements(invoices, POLICY, templates)
    assert [(m.invoice_count, m.recipient) for m in result.messages] == [(3, PRIYA)]  # the number most carry
    assert group_key(invoices[2]) == group_key(invoices[0]) == ("c1", "INR")
    # on a tie, the oldest invoice's number
    tied = build_statements([due(1, 15, to="+919876543210"), due(2, 7)], POLICY, templates)
    assert [m.recipient for m in tied.messages] == ["+919876543210"]


def test_a_group_that_cannot_be_built_is_skipped_whole(templates: dict[str, TemplateSpec]) -> None:
    invoices = [due(1, 7), due(2, 15), due(3, 7, customer="c2", name="Bad Currency Co", currency="XYZ")]
    result = build_statements(invoices, POLICY, templates)
    assert [m.customer_id for m in result.messages] == ["c1"]
    (skip,) = result.skipped
    assert (skip.customer_id, skip.currency_code, skip.invoice_ids, skip.reason) == (
        "c2",
        "XYZ",
        (invoices[2].invoice_id,),
        "template_error",
    )
    assert "XYZ" in skip.detail


def test_a_missing_template_skips_its_groups(templates: dict[str, TemplateSpec]) -> None:
    partial = {k: v for k, v in templates.items() if k != "reminder_overdue_7_multi"}
    result = build_statements([due(1, 7), due(2, 8), due(3, 15, customer="c2")], POLICY, partial)
    assert [m.customer_id for m in result.messages] == ["c2"]
    assert result.skipped[0].invoice_ids == (due(2, 8).invoice_id, due(1, 7).invoice_id)  # oldest due first
    assert "reminder_overdue_7_multi" in result.skipped[0].detail


def test_nothing_to_pay_is_refused(templates: dict[str, TemplateSpec]) -> None:
    with pytest.raises(ValueError, match="INV-000002"):
        build_customer_message([due(1, 7), due(2, 7, "0")], POLICY, templates)
    with pytest.raises(ValueError, match="INV-000003"):
        build_customer_message([due(3, 7, "-5")], POLICY, templates)
    result = build_statements([due(1, 7, "0.01")], POLICY, templates)
    assert result.messages[0].parameters["amount_due"] == "₹0.01"  # the minimum is eligibility's call


def test_group_and_input_errors(templates: dict[str, TemplateSpec]) -> None:
    with pytest.raises(ValueError, match="at least one"):
        build_customer_message([], POLICY, templates)
    with pytest.raises(ValueError, match="mix"):
        build_customer_message([due(1, 7), due(2, 7, currency="USD")], POLICY, templates)
    with pytest.raises(ValueError, match="twice"):
        build_customer_message([due(1, 7), due(1, 7)], POLICY, templates)
    with pytest.raises(ValueError, match="given twice"):
        build_statements([due(1, 7), due(1, 8)], POLICY, templates)
    assert build_statements([], POLICY, templates).messages == ()


def test_a_template_asking_for_unknown_values_is_an_error(templates: dict[str, TemplateSpec]) -> None:
    odd = dict(templates)
    odd["reminder_overdue_7"] = TemplateSpec("reminder_overdue_7", "en", ("party_name", "gst_no"), "{{party_name}} {{gst_no}}")
    with pytest.raises(TemplateError, match="gst_no"):
        build_customer_message([due(1, 7)], POLICY, odd)


def test_templates_without_a_list_or_number(templates: dict[str, TemplateSpec]) -> None:
    plain = dict(templates)
    plain["reminder_overdue_7_multi"] = TemplateSpec(
        "reminder_overdue_7_multi", "en", ("party_name", "total_due"), "Dear {{party_name}}, {{total_due}} is due."
    )
    plain["reminder_overdue_7"] = TemplateSpec("reminder_overdue_7", "en", ("amount_due",), "{{amount_due}} is due.")
    assert build_customer_message([due(1, 7), due(2, 7)], POLICY, plain).listed == 0
    assert build_customer_message([due(1, 7)], POLICY, plain).listed == 0


def test_locale_and_language_come_from_the_policy(templates: dict[str, TemplateSpec]) -> None:
    policy = CollectionsPolicy(locale="en_US", language="en_US")
    message = build_customer_message([due(1, 7, "148500")], policy, templates)
    assert message.parameters["amount_due"] == "₹148,500.00"
    assert message.language == "en_US"


def test_docstring_examples() -> None:
    result = doctest.testmod(zoho_whatsapp.rules.statement)
    assert result.attempted > 0
    assert result.failed == 0


def test_an_invoice_with_no_stage_due_or_no_number_cannot_be_in_a_message(templates: dict[str, TemplateSpec]) -> None:
    from dataclasses import replace

    for odd in (replace(due(2, 7), decision=None), replace(due(2, 7), recipient=None)):
        with pytest.raises(ValueError, match="no stage due or no number cannot be reminded: INV-0*2"):
            build_customer_message([due(1, 7), odd], POLICY, templates)
