"""The collections policy file and its DAG-param overrides."""

from __future__ import annotations

import doctest
from datetime import date, time
from decimal import Decimal
from pathlib import Path

import pytest

import zoho_whatsapp.rules.policy
from zoho_whatsapp.rules.policy import (
    DEFAULT_POLICY_PATH,
    OVERRIDABLE,
    POLICY_PATH_ENV,
    CollectionsPolicy,
    CustomFieldSwitch,
    PolicyError,
    Stage,
    load_policy,
    resolve_policy_path,
    stage_key,
)
from zoho_whatsapp.rules.templates import TEMPLATES_PATH_ENV, load_templates
from zoho_whatsapp.rules.window import SendWindow

POLICY = CollectionsPolicy()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_file_is_the_default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(POLICY_PATH_ENV, raising=False)
    monkeypatch.delenv(TEMPLATES_PATH_ENV, raising=False)
    repo = Path(__file__).resolve().parents[2]
    assert DEFAULT_POLICY_PATH == repo / "include" / "config" / "reminder_policy.yaml"
    assert resolve_policy_path() == DEFAULT_POLICY_PATH
    policy = load_policy()
    assert policy == CollectionsPolicy()
    assert [(s.key, s.tone) for s in policy.stages] == [
        ("-3", "courtesy"),
        ("0", "due"),
        ("+1", "overdue"),
        ("+7", "overdue"),
        ("+15", "firm"),
        ("+30", "final"),
    ]
    assert (policy.repeat_every_days, policy.min_days_between_reminders) == (15, 3)
    assert policy.window == SendWindow(start=time(9), end=time(20))
    assert policy.minimum_for("INR") == Decimal(1)
    assert policy.reminders_field == CustomFieldSwitch("cf_whatsapp_reminders")
    assert "off" in policy.reminders_field.off_values
    assert policy.portal_url is None
    assert policy.live_balance_after_minutes == 15
    policy.check_templates(load_templates())


def test_env_var_and_explicit_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "repeat_every_days: 7\n")
    monkeypatch.setenv(POLICY_PATH_ENV, str(path))
    assert resolve_policy_path() == path
    assert load_policy().repeat_every_days == 7
    assert load_policy().stages == POLICY.stages  # what the file leaves out keeps its default
    assert load_policy(DEFAULT_POLICY_PATH).repeat_every_days == 15


def test_empty_file_is_the_default(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "")) == POLICY


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="missing.yaml: No such file or directory"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(write(tmp_path, "stages: [\n"))
    with pytest.raises(PolicyError, match=r"policy.yaml.*expected a mapping"):
        load_policy(write(tmp_path, "- 1\n"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("min_days_between_reminder: 3\n", "min_days_between_reminder"),
        ("send_window: {start: '09:00', stop: '20:00'}\n", "stop"),
        ("send_window: {holidays: {country: IN, contry: IN}}\n", "contry"),
        ("reminders_custom_field: {name: cf_x, offvalues: ['off']}\n", "offvalues"),
        ("stages: [{offset: 0, name: due, tone: due, template: a, template_multi: b, colour: red}]\n", "colour"),
        ("stages: [{offset: 0, name: due, tone: due, template: a}]\n", "template_multi"),
        ("stages: [{offset: 0, name: due, tone: angry, template: a, template_multi: b}]\n", "angry"),
        ("stages: [{offset: soon, name: due, tone: due, template: a, template_multi: b}]\n", "soon"),
        ("stages: [{offset: 0, name: Due Day, tone: due, template: a, template_multi: b}]\n", "Due Day"),
        ("stages: []\n", "at least one"),
        ("stages: {offset: 0}\n", "expected a list"),
        ("stages: [7]\n", "expected a mapping"),
        (
            "stages: [{offset: 7, name: a, tone: due, template: a, template_multi: b},"
            " {offset: 7, name: b, tone: due, template: a, template_multi: b}]\n",
            r"twice: \+7",
        ),
        ("repeat_every_days: -1\n", "repeat_every_days"),
        ("min_days_between_reminders: 2.5\n", "min_days_between_reminders"),
        ("min_days_between_reminders: true\n", "min_days_between_reminders"),
        ("send_window: {start: '20:00', end: '09:00'}\n", "before end"),
        ("send_window: {start: '9am'}\n", "9am"),
        ("send_window: {start: '24:00'}\n", "24:00"),
        ("send_window: {sundays_off: 'yes'}\n", "sundays_off"),
        ("send_window: {holidays: {country: XX}}\n", "XX"),
        ("send_window: {holidays: {extra: ['2/10/2026']}}\n", "2/10/2026"),
        ("send_window: 9\n", "send_window"),
        ("minimum_outstanding: {default: 1, RUPEES: 5}\n", "RUPEES"),
        ("minimum_outstanding: -1\n", "negative"),
        ("minimum_outstanding: {INR: lots}\n", "lots"),
        ("reminders_custom_field: {name: cf_x, off_values: [off]}\n", "quote"),
        ("reminders_custom_field: 7\n", "reminders_custom_field"),
        ("portal_url: http://portal.example.in\n", "https"),
        ("portal_url: portal.example.in\n", "https"),
        ("portal_url: https:///pay\n", "https"),
        ("stages: 7\n", "expected a list"),
        ("stages: [{offset: 7.5, name: a, tone: due, template: a, template_multi: b}]\n", "7.5"),
        ("send_window: {start: true}\n", "True"),
        ("send_window: {start: 1440}\n", "1440"),
        ("send_window: {end: -1}\n", "-1"),
        ("reminders_custom_field: {name: cf_x, off_values: [null]}\n", "quote"),
        ("reminders_custom_field: {name: cf_x, off_values: [1.5]}\n", "quote"),
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        load_policy(write(tmp_path, text))


def test_a_full_file(tmp_path: Path) -> None:
    text = """
stages:
  - {offset: "+14", name: late, tone: firm, template: t_late, template_multi: t_late_multi}
  - {offset: 0, name: due, tone: due, template: t_due, template_multi: t_due_multi}
repeat_every_days: 0
min_days_between_reminders: 5
send_window:
  start: 10:30
  end: "18:00"
  sundays_off: true
  holidays: {country: in, subdivision: mh, categories: [public], extra: ["2026-11-09"], working_days: [2026-10-02]}
minimum_outstanding: {default: 2, inr: 100}
reminders_custom_field: {name: WhatsApp reminders, off_values: ["Do not remind"]}
portal_url: https://portal.example.in/pay
live_balance_after_minutes: 30
language: en_US
locale: en_US
"""
    policy = load_policy(write(tmp_path, text))
    assert [(s.offset, s.name) for s in policy.stages] == [(0, "due"), (14, "late")]  # sorted by offset
    assert policy.final_stage.template == "t_late"
    assert (policy.repeat_every_days, policy.min_days_between_reminders) == (0, 5)
    assert policy.window == SendWindow(
        start=time(10, 30),  # unquoted 10:30 is the YAML 1.1 number 630: read back as a time
        end=time(18),
        sundays_off=True,
        holiday_country="IN",
        holiday_subdivision="MH",
        extra_holidays=frozenset({date(2026, 11, 9)}),
        working_days=frozenset({date(2026, 10, 2)}),
    )
    assert (policy.minimum_for("INR"), policy.minimum_for("usd")) == (Decimal(100), Decimal(2))
    assert policy.reminders_field == CustomFieldSwitch("WhatsApp reminders", frozenset({"do not remind"}))
    assert policy.portal_url == "https://portal.example.in/pay"
    assert (policy.live_balance_after_minutes, policy.language, policy.locale) == (30, "en_US", "en_US")
    assert policy.template_names() == {"t_late", "t_late_multi", "t_due", "t_due_multi"}


def test_window_times_as_yaml_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads unquoted 00:00 and 23:59 as 0 and 1439 (minutes): both ends of the day are valid
    window = load_policy(write(tmp_path, "send_window: {start: 00:00, end: 23:59}\n")).window
    assert (window.start, window.end) == (time(0, 0), time(23, 59))
    # unquoted 9:30 is 570; a plain number is minutes after midnight too, from 0
    window = load_policy(write(tmp_path, "send_window: {start: 0, end: 9:30}\n")).window
    assert (window.start, window.end) == (time(0, 0), time(9, 30))


def test_optional_values_left_empty_in_the_file(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "portal_url: ''\n")).portal_url is None
    assert load_policy(write(tmp_path, "portal_url:\n")).portal_url is None
    assert load_policy(write(tmp_path, "reminders_custom_field: false\n")).reminders_field is None
    assert load_policy(write(tmp_path, "reminders_custom_field: ''\n")).reminders_field is None


def test_custom_field_can_be_switched_off_in_the_file(tmp_path: Path) -> None:
    assert load_policy(write(tmp_path, "reminders_custom_field: null\n")).reminders_field is None
    assert load_policy(write(tmp_path, "reminders_custom_field: {name: ''}\n")).reminders_field is None
    assert load_policy(write(tmp_path, "reminders_custom_field: cf_hold\n")).reminders_field == CustomFieldSwitch(
        "cf_hold"
    )


# --- DAG params ----------------------------------------------------------------------------------------------


def test_overrides_ignore_other_params_and_none() -> None:
    params = {"batch_size": 100, "dry_run": True, "template_name": "x", "min_days_between_reminders": None}
    assert POLICY.with_overrides(params) is POLICY
    assert "batch_size" not in OVERRIDABLE


def test_overrides() -> None:
    policy = POLICY.with_overrides(
        {
            "stages": ["+7", 30, "0"],
            "repeat_every_days": 0,
            "min_days_between_reminders": 1,
            "send_window_start": "08:00",
            "send_window_end": "21:30",
            "sundays_off": True,
            "holiday_country": "in",
            "holiday_subdivision": "ka",
            "extra_holidays": ["2026-11-09"],
            "minimum_outstanding": {"INR": 500, "default": 3},
            "reminders_custom_field": "cf_collections",
            "portal_url": "https://pay.example.in",
            "live_balance_after_minutes": 0,
        }
    )
    assert [s.key for s in policy.stages] == ["0", "+7", "+30"]
    assert (policy.repeat_every_days, policy.min_days_between_reminders) == (0, 1)
    assert policy.window == SendWindow(
        start=time(8),
        end=time(21, 30),
        sundays_off=True,
        holiday_country="IN",
        holiday_subdivision="KA",
        extra_holidays=frozenset({date(2026, 11, 9)}),
    )
    assert (policy.minimum_for("INR"), policy.minimum_for("USD")) == (Decimal(500), Decimal(3))
    assert policy.reminders_field == CustomFieldSwitch("cf_collections")
    assert policy.portal_url == "https://pay.example.in"
    assert policy.live_balance_after_minutes == 0
    assert POLICY.min_days_between_reminders == 3  # the original is untouched


def test_empty_strings_switch_optional_features_off() -> None:
    configured = POLICY.with_overrides({"holiday_country": "IN", "portal_url": "https://pay.example.in"})
    off = configured.with_overrides({"holiday_country": "", "reminders_custom_field": " ", "portal_url": ""})
    assert off.window.holiday_country is None
    assert off.reminders_field is None
    assert off.portal_url is None
    again = off.with_overrides({"reminders_custom_field": "cf_again"})
    assert again.reminders_field == CustomFieldSwitch("cf_again")
    # renaming the field keeps the configured off values
    worded = CollectionsPolicy(reminders_field=CustomFieldSwitch("cf_a", frozenset({"hold"})))
    assert worded.with_overrides({"reminders_custom_field": "cf_b"}).reminders_field == CustomFieldSwitch(
        "cf_b", frozenset({"hold"})
    )


def test_a_number_sets_the_minimum_for_every_currency() -> None:
    policy = CollectionsPolicy(minimums={"INR": Decimal(100)}).with_overrides({"minimum_outstanding": 10})
    assert (policy.minimum_for("INR"), policy.minimum_for("USD")) == (Decimal(10), Decimal(10))
    assert policy.with_overrides({"minimum_outstanding": "0"}).minimum_for("INR") == Decimal(0)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"stages": [5]}, r"\+5 not configured"),
        ({"stages": []}, "at least one"),
        ({"stages": "7"}, "expected a list"),
        ({"stages": [True]}, "True"),
        ({"repeat_every_days": -2}, "repeat_every_days"),
        ({"min_days_between_reminders": "3"}, "min_days_between_reminders"),
        ({"send_window_start": "21:00"}, "before end"),
        ({"send_window_end": "25:00"}, "25:00"),
        ({"sundays_off": "no"}, "sundays_off"),
        ({"holiday_country": "XX"}, "XX"),
        ({"extra_holidays": ["someday"]}, "someday"),
        ({"minimum_outstanding": -5}, "negative"),
        ({"portal_url": "ftp://x"}, "https"),
    ],
)
def test_bad_overrides_are_refused(params: dict[str, object], fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        POLICY.with_overrides(params)


def test_load_policy_applies_overrides() -> None:
    assert load_policy(DEFAULT_POLICY_PATH, {"min_days_between_reminders": 7}).min_days_between_reminders == 7


def test_stage_validation() -> None:
    assert stage_key(-3) == "-3" and stage_key(0) == "0" and stage_key(7) == "+7"
    for offset in (True, "7", 7.0, None):
        with pytest.raises(PolicyError, match="whole number"):
            Stage(offset, "a", "due", "t", "u")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="invalid name"):
        Stage(1, None, "due", "t", "u")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="template is missing"):
        Stage(1, "a", "due", 5, "u")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="name is empty"):
        CustomFieldSwitch(None)  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="template_multi"):
        Stage(1, "a", "due", "t", "")
    with pytest.raises(PolicyError, match="template"):
        Stage(1, "a", "due", "", "u")
    with pytest.raises(PolicyError, match="name"):
        CustomFieldSwitch(" ")
    with pytest.raises(PolicyError, match="SendWindow"):
        CollectionsPolicy(window="09:00-20:00")  # type: ignore[arg-type]
    with pytest.raises(PolicyError, match="live_balance_after_minutes"):
        CollectionsPolicy(live_balance_after_minutes=-1)
    with pytest.raises(PolicyError, match="minimum_outstanding.default"):
        CollectionsPolicy(default_minimum=Decimal(-1))


def test_docstring_examples() -> None:
    result = doctest.testmod(zoho_whatsapp.rules.policy)
    assert result.attempted > 0
    assert result.failed == 0
