import doctest
import sys
from pathlib import Path

import pytest

import zoho_whatsapp.rules.money
import zoho_whatsapp.rules.phone
import zoho_whatsapp.rules.templates
from zoho_whatsapp.rules.templates import (
    DEFAULT_TEMPLATES_PATH,
    MAX_PARAMETER_CHARS,
    TEMPLATES_PATH_ENV,
    TemplateError,
    TemplateSpec,
    build_template_message,
    load_templates,
    render_text,
    resolve_templates_path,
    sanitise_parameter,
)

# The sandbox WhatsApp server is seeded with exactly these: any drift breaks sending.
EXPECTED = {
    "payment_reminder": (
        ("party_name", "invoice_number", "amount_due", "due_date"),
        (
            "Dear {{party_name}}, Invoice {{invoice_number}} for {{amount_due}} was due on "
            "{{due_date}}. Kindly arrange payment. Reply here for any queries."
        ),
    ),
    "invoice_created": (
        ("party_name", "invoice_number", "invoice_amount", "due_date"),
        (
            "Dear {{party_name}}, Invoice {{invoice_number}} for {{invoice_amount}} has been issued "
            "and is due on {{due_date}}. Thank you for your business."
        ),
    ),
    "payment_received": (
        ("party_name", "amount_received", "invoice_number", "balance_due"),
        (
            "Dear {{party_name}}, we have received {{amount_received}} against Invoice "
            "{{invoice_number}}. Balance due: {{balance_due}}. Thank you!"
        ),
    ),
}

REMINDER_PARAMS = {
    "party_name": "Rajesh Enterprises",
    "invoice_number": "INV-000138",
    "amount_due": "₹22,000.00",
    "due_date": "20 June 2026",
}

GOOD_ENTRY = """\
templates:
  - name: payment_reminder
    language: en
    category: utility
    parameter_format: named
    parameters: [party_name, amount_due]
    body: "Dear {{party_name}}, please pay {{amount_due}}."
"""


@pytest.fixture
def reminder() -> TemplateSpec:
    return load_templates()["payment_reminder"]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "templates.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- loading -------------------------------------------------------------------------


def sandbox_templates() -> dict[str, dict]:
    include = str(Path(__file__).resolve().parents[2] / "include")
    if include not in sys.path:
        sys.path.insert(0, include)
    from sandbox.seed import TEMPLATES

    return TEMPLATES


def test_shipped_templates_match_the_sandbox_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TEMPLATES_PATH_ENV, raising=False)
    specs = load_templates()
    for name, (parameters, body) in EXPECTED.items():
        spec = specs[name]
        assert spec == TemplateSpec(name, "en", parameters, body, "utility")
    # Every other template (the reminder stages) is approved in the sandbox exactly as written.
    seeded = sandbox_templates()
    assert set(specs) == set(seeded)
    for name, spec in specs.items():
        approved = seeded[name]
        assert (approved["language"], approved["parameters"], approved["body"]) == (
            spec.language,
            list(spec.parameters),
            spec.body,
        )
        assert approved["category"] == spec.category.upper()


def test_default_path_is_in_the_repo_include_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(TEMPLATES_PATH_ENV, raising=False)
    repo = Path(__file__).resolve().parents[2]
    assert (
        DEFAULT_TEMPLATES_PATH
        == repo / "include" / "templates" / "whatsapp_templates.yaml"
    )
    assert DEFAULT_TEMPLATES_PATH.is_file()
    assert resolve_templates_path() == DEFAULT_TEMPLATES_PATH


def test_env_var_overrides_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, GOOD_ENTRY)
    monkeypatch.setenv(TEMPLATES_PATH_ENV, str(path))
    assert resolve_templates_path() == path
    spec = load_templates()["payment_reminder"]
    assert spec.parameters == ("party_name", "amount_due")


def test_explicit_path_wins_over_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TEMPLATES_PATH_ENV, str(tmp_path / "missing.yaml"))
    assert set(EXPECTED) < set(load_templates(DEFAULT_TEMPLATES_PATH))


def test_undeclared_placeholder_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path, GOOD_ENTRY.replace("{{amount_due}}", "{{amount_due}} by {{due_date}}")
    )
    with pytest.raises(TemplateError, match=r"\{\{due_date\}\}") as info:
        load_templates(path)
    assert info.value.template == "payment_reminder"
    assert info.value.parameters == ("due_date",)
    assert "payment_reminder" in str(info.value)


def test_declared_but_unused_parameter_is_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD_ENTRY.replace(
            "[party_name, amount_due]", "[party_name, amount_due, due_date]"
        ),
    )
    with pytest.raises(TemplateError, match="due_date") as info:
        load_templates(path)
    assert info.value.parameters == ("due_date",)


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("name: payment_reminder", "name: Payment-Reminder", "Payment-Reminder"),
        ("[party_name, amount_due]", "[partyName, amount_due]", "partyName"),
        ("[party_name, amount_due]", "[party_name, amount_due2]", "amount_due2"),
        (
            "[party_name, amount_due]",
            "[party_name, amount_due, party_name]",
            "party_name",
        ),
        ("{{amount_due}}", "{{ amount_due }}", r"\{\{ amount_due \}\}"),
        ("{{amount_due}}", "{{1}}", r"\{\{1\}\}"),
        ("parameter_format: named", "parameter_format: positional", "positional"),
        ("parameters:", "paramters:", "paramters"),
        ("category: utility", "category: reminder", "reminder"),
        ("language: en", "language: English", "English"),
        ("    language: en\n", "", "language"),
    ],
)
def test_invalid_definitions_are_rejected(
    tmp_path: Path, old: str, new: str, fragment: str
) -> None:
    assert old in GOOD_ENTRY
    with pytest.raises(TemplateError, match=fragment):
        load_templates(write(tmp_path, GOOD_ENTRY.replace(old, new)))


def test_duplicate_template_names_are_rejected(tmp_path: Path) -> None:
    entry = GOOD_ENTRY.split("templates:\n", 1)[1]
    with pytest.raises(TemplateError, match="twice") as info:
        load_templates(write(tmp_path, GOOD_ENTRY + entry))
    assert info.value.template == "payment_reminder"


@pytest.mark.parametrize(
    "text", ["", "templates: []\n", "- name: x\n", "templates: [1]\n", "templates: [\n"]
)
def test_malformed_files_raise_template_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(TemplateError):
        load_templates(write(tmp_path, text))


def test_missing_file_raises_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="missing.yaml"):
        load_templates(tmp_path / "missing.yaml")


def test_spec_validates_on_construction() -> None:
    with pytest.raises(TemplateError, match="x_y"):
        TemplateSpec("t", "en", ("x_y",), "no placeholders here")


# --- sanitising ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Priya\nTextiles", "Priya Textiles"),
        ("Priya\r\nTextiles", "Priya Textiles"),
        ("Priya\n\n\nTextiles", "Priya Textiles"),
        ("Priya\tTextiles", "Priya Textiles"),
        ("Priya      Textiles", "Priya Textiles"),  # 6 spaces
        ("Priya     Textiles", "Priya Textiles"),  # 5 spaces
        ("Priya    Textiles", "Priya    Textiles"),  # 4 spaces are allowed by Meta
        (
            "Priya \n\t   Textiles",
            "Priya Textiles",
        ),  # breaks become a space, then 5 collapse
        ("Priya \n  Textiles", "Priya    Textiles"),
        ("  Priya Textiles  ", "Priya Textiles"),
        ("Priya\u2028Textiles", "Priya Textiles"),
        ("₹22,000.00", "₹22,000.00"),
        (22000, "22000"),
    ],
)
def test_sanitise_parameter(raw: object, clean: str) -> None:
    assert sanitise_parameter(raw, "party_name") == clean


@pytest.mark.parametrize("empty", ["", "   ", "\n\t\r\n", None])
def test_sanitise_parameter_empty_names_the_parameter(empty: object) -> None:
    with pytest.raises(TemplateError, match="party_name") as info:
        sanitise_parameter(empty, "party_name")
    assert info.value.parameters == ("party_name",)


def test_sanitise_parameter_caps_length_with_ellipsis() -> None:
    result = sanitise_parameter("x" * 5000, "party_name")
    assert len(result) == MAX_PARAMETER_CHARS
    assert result.endswith("\u2026")
    assert (
        sanitise_parameter("y" * MAX_PARAMETER_CHARS, "p") == "y" * MAX_PARAMETER_CHARS
    )


# --- building ------------------------------------------------------------------------


def test_build_template_message_exact_body(reminder: TemplateSpec) -> None:
    params = dict(REMINDER_PARAMS, party_name="Rajesh\nEnterprises")
    assert build_template_message(reminder, "+919820012345", params) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+919820012345",
        "type": "template",
        "template": {
            "name": "payment_reminder",
            "language": {"policy": "deterministic", "code": "en"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {
                            "type": "text",
                            "parameter_name": "party_name",
                            "text": "Rajesh Enterprises",
                        },
                        {
                            "type": "text",
                            "parameter_name": "invoice_number",
                            "text": "INV-000138",
                        },
                        {
                            "type": "text",
                            "parameter_name": "amount_due",
                            "text": "₹22,000.00",
                        },
                        {
                            "type": "text",
                            "parameter_name": "due_date",
                            "text": "20 June 2026",
                        },
                    ],
                }
            ],
        },
    }


def test_parameters_follow_spec_order_not_mapping_order(reminder: TemplateSpec) -> None:
    shuffled = dict(reversed(list(REMINDER_PARAMS.items())))
    body = build_template_message(reminder, "+919820012345", shuffled)
    names = [
        p["parameter_name"] for p in body["template"]["components"][0]["parameters"]
    ]
    assert names == list(reminder.parameters)


def test_language_override_and_opaque(reminder: TemplateSpec) -> None:
    body = build_template_message(
        reminder,
        "+919820012345",
        REMINDER_PARAMS,
        language="en_US",
        opaque="run=1;inv=42",
    )
    assert body["template"]["language"] == {"policy": "deterministic", "code": "en_US"}
    assert body["biz_opaque_callback_data"] == "run=1;inv=42"
    assert "biz_opaque_callback_data" not in build_template_message(
        reminder, "+919820012345", REMINDER_PARAMS
    )


def test_opaque_limit_is_512_utf8_bytes(reminder: TemplateSpec) -> None:
    build_template_message(reminder, "+919820012345", REMINDER_PARAMS, opaque="a" * 512)
    with pytest.raises(TemplateError, match="512"):
        build_template_message(
            reminder, "+919820012345", REMINDER_PARAMS, opaque="a" * 513
        )
    with pytest.raises(TemplateError, match="512"):
        build_template_message(
            reminder, "+919820012345", REMINDER_PARAMS, opaque="₹" * 200
        )


def test_missing_and_extra_parameters_are_named(reminder: TemplateSpec) -> None:
    params = {k: v for k, v in REMINDER_PARAMS.items() if k != "due_date"} | {
        "balance": "1"
    }
    with pytest.raises(TemplateError, match="due_date.*balance") as info:
        build_template_message(reminder, "+919820012345", params)
    assert info.value.template == "payment_reminder"
    assert set(info.value.parameters) == {"due_date", "balance"}


def test_empty_value_names_template_and_parameter(reminder: TemplateSpec) -> None:
    with pytest.raises(TemplateError, match="payment_reminder.*party_name") as info:
        build_template_message(
            reminder, "+919820012345", dict(REMINDER_PARAMS, party_name=" \n ")
        )
    assert info.value.parameters == ("party_name",)


@pytest.mark.parametrize(
    "to", ["9820012345", "919820012345", "+91 98200 12345", "", "+0123456789"]
)
def test_recipient_must_be_e164(reminder: TemplateSpec, to: str) -> None:
    with pytest.raises(ValueError, match="E.164"):
        build_template_message(reminder, to, REMINDER_PARAMS)


def test_render_text(reminder: TemplateSpec) -> None:
    assert render_text(
        reminder, dict(REMINDER_PARAMS, party_name="Rajesh\tEnterprises")
    ) == (
        "Dear Rajesh Enterprises, Invoice INV-000138 for ₹22,000.00 was due on 20 June 2026. "
        "Kindly arrange payment. Reply here for any queries."
    )
    with pytest.raises(TemplateError, match="amount_due"):
        render_text(
            reminder, {k: v for k, v in REMINDER_PARAMS.items() if k != "amount_due"}
        )


def test_render_all_shipped_templates() -> None:
    specs = load_templates()
    received = render_text(
        specs["payment_received"],
        {
            "party_name": "Priya Textiles",
            "amount_received": "₹10,000.00",
            "invoice_number": "INV-000142",
            "balance_due": "₹38,500.00",
        },
    )
    assert received == (
        "Dear Priya Textiles, we have received ₹10,000.00 against Invoice INV-000142. "
        "Balance due: ₹38,500.00. Thank you!"
    )
    created = render_text(
        specs["invoice_created"],
        {
            "party_name": "Priya Textiles",
            "invoice_number": "INV-000142",
            "invoice_amount": "₹48,500.00",
            "due_date": "7 July 2026",
        },
    )
    assert created.endswith("is due on 7 July 2026. Thank you for your business.")


@pytest.mark.parametrize(
    "module",
    [
        zoho_whatsapp.rules.phone,
        zoho_whatsapp.rules.money,
        zoho_whatsapp.rules.templates,
    ],
)
def test_docstring_examples(module: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TEMPLATES_PATH_ENV, raising=False)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0
