"""The collections policy: reminder stages, cadence, send window, exclusions and minimums.

Loaded from ``include/config/reminder_policy.yaml`` (or ``$ZOHO_WHATSAPP_REMINDER_POLICY``) and
overridable per run by DAG params. Pure apart from reading that file.

>>> policy = CollectionsPolicy()
>>> [stage.key for stage in policy.stages]
['-3', '0', '+1', '+7', '+15', '+30']
>>> policy.with_overrides({"min_days_between_reminders": 5, "batch_size": 100}).min_days_between_reminders
5
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from zoho_whatsapp.rules.money import parse_amount
from zoho_whatsapp.rules.templates import TemplateSpec
from zoho_whatsapp.rules.window import SendWindow, WindowError, parse_dates

__all__ = [
    "DEFAULT_POLICY_PATH",
    "MULTI_PARAMETERS",
    "OVERRIDABLE",
    "POLICY_PATH_ENV",
    "SINGLE_PARAMETERS",
    "TONES",
    "CollectionsPolicy",
    "CustomFieldSwitch",
    "PolicyError",
    "ZohoNotes",
    "Stage",
    "load_policy",
    "resolve_policy_path",
    "stage_key",
]

# plugins/zoho_whatsapp/rules/policy.py -> parents[3] is the repository root.
DEFAULT_POLICY_PATH: Path = Path(__file__).resolve().parents[3] / "include" / "config" / "reminder_policy.yaml"
POLICY_PATH_ENV = "ZOHO_WHATSAPP_REMINDER_POLICY"

TONES = ("courtesy", "due", "overdue", "firm", "final")
# What a stage template may ask for: one invoice, or a statement of several.
SINGLE_PARAMETERS = ("party_name", "invoice_number", "amount_due", "due_date")
MULTI_PARAMETERS = ("party_name", "invoice_count", "total_due", "oldest_due_date", "invoice_numbers")
# Values of the opt-out custom field that mean "no WhatsApp reminders" (compared case-insensitively).
DEFAULT_OFF_VALUES = frozenset({"off", "no", "false", "disabled", "stop", "0", "n"})
DEFAULT_CUSTOM_FIELD = "cf_whatsapp_reminders"

_STAGE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_HHMM = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")


class PolicyError(ValueError):
    """The reminder policy (file, DAG params or templates it names) cannot be used as written."""


def stage_key(offset: int) -> str:
    """How a stage is named to people: ``-3``, ``0``, ``+7`` (days relative to the due date)."""
    return f"+{offset}" if offset > 0 else str(offset)


@dataclass(frozen=True)
class Stage:
    """One reminder stage: ``offset`` IST calendar days after the due date (negative: before it)."""

    offset: int
    name: str
    tone: str
    template: str  # single-invoice wording
    template_multi: str  # several invoices of one customer in one message

    def __post_init__(self) -> None:
        if isinstance(self.offset, bool) or not isinstance(self.offset, int):
            raise PolicyError(f"stage offset must be a whole number of days, got {self.offset!r}")
        if not isinstance(self.name, str) or not _STAGE_NAME.fullmatch(self.name):
            raise PolicyError(f"stage {stage_key(self.offset)}: invalid name {self.name!r} (lowercase, digits, _)")
        if self.tone not in TONES:
            raise PolicyError(f"stage {stage_key(self.offset)}: tone {self.tone!r} is not one of {list(TONES)}")
        for attr in ("template", "template_multi"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr):
                raise PolicyError(f"stage {stage_key(self.offset)}: {attr} is missing")

    @property
    def key(self) -> str:
        return stage_key(self.offset)


DEFAULT_STAGES: tuple[Stage, ...] = (
    Stage(-3, "courtesy", "courtesy", "reminder_courtesy", "reminder_courtesy_multi"),
    Stage(0, "due_today", "due", "reminder_due_today", "reminder_due_today_multi"),
    Stage(1, "overdue_1", "overdue", "reminder_overdue_1", "reminder_overdue_1_multi"),
    Stage(7, "overdue_7", "overdue", "reminder_overdue_7", "reminder_overdue_7_multi"),
    Stage(15, "overdue_15", "firm", "reminder_overdue_15", "reminder_overdue_15_multi"),
    Stage(30, "final_notice", "final", "reminder_final_notice", "reminder_final_notice_multi"),
)


@dataclass(frozen=True)
class CustomFieldSwitch:
    """An invoice custom field that switches WhatsApp reminders off for that invoice.

    ``name`` matches the field's ``api_name`` (``cf_...``), its ``label`` (case-insensitive) or its
    ``customfield_id``; a value in ``off_values`` (case-insensitive) or boolean ``false`` means off.
    """

    name: str = DEFAULT_CUSTOM_FIELD
    off_values: frozenset[str] = DEFAULT_OFF_VALUES

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise PolicyError("reminders_custom_field: name is empty")
        object.__setattr__(self, "off_values", frozenset(str(v).strip().casefold() for v in self.off_values))


@dataclass(frozen=True)
class ZohoNotes:
    """Opt-in: a note on the invoice in Zoho Books after each reminder, within the day's API quota."""

    enabled: bool = False
    daily_quota: int = 1000  # the organization's plan: Free 1000, Standard 2000, Professional 5000, Premium+ 10000
    reserve_calls: int = 200  # calls of the day's quota the notes leave for everything else

    def __post_init__(self) -> None:
        _bool(self.enabled, "zoho_notes.enabled")
        if _whole(self.daily_quota, "zoho_notes.daily_quota") < 1:
            raise PolicyError("zoho_notes.daily_quota must be at least 1")
        _whole(self.reserve_calls, "zoho_notes.reserve_calls")


@dataclass(frozen=True)
class CollectionsPolicy:
    """Everything a reminder run decides by; built from the YAML file, then DAG params."""

    stages: tuple[Stage, ...] = DEFAULT_STAGES
    repeat_every_days: int = 15  # after the last stage, while unpaid; 0: never repeat
    min_days_between_reminders: int = 3  # per customer
    window: SendWindow = field(default_factory=SendWindow)
    default_minimum: Decimal = Decimal(1)
    minimums: Mapping[str, Decimal] = field(default_factory=dict)  # currency code -> minimum balance
    reminders_field: CustomFieldSwitch | None = field(default_factory=CustomFieldSwitch)
    portal_url: str | None = None
    live_balance_after_minutes: int = 15
    zoho_notes: ZohoNotes = field(default_factory=ZohoNotes)
    language: str = "en"
    locale: str = "en_IN"

    def __post_init__(self) -> None:
        stages = tuple(sorted(self.stages, key=lambda s: s.offset))
        if not stages:
            raise PolicyError("at least one reminder stage is needed")
        offsets = [s.offset for s in stages]
        duplicates = sorted({stage_key(o) for o in offsets if offsets.count(o) > 1})
        if duplicates:
            raise PolicyError(f"stages defined twice: {', '.join(duplicates)}")
        object.__setattr__(self, "stages", stages)
        for name in ("repeat_every_days", "min_days_between_reminders", "live_balance_after_minutes"):
            _whole(getattr(self, name), name)
        if not isinstance(self.window, SendWindow):
            raise PolicyError(f"window: expected a SendWindow, got {self.window!r}")
        object.__setattr__(self, "default_minimum", _minimum(self.default_minimum, "minimum_outstanding.default"))
        object.__setattr__(
            self, "minimums", {_currency(c): _minimum(v, f"minimum_outstanding.{c}") for c, v in self.minimums.items()}
        )
        if self.portal_url is not None:
            parts = urlsplit(str(self.portal_url))
            if parts.scheme != "https" or not parts.netloc:
                raise PolicyError(f"portal_url must be an https:// URL, got {self.portal_url!r}")

    # -- questions the rules ask ----------------------------------------------------------------

    @property
    def final_stage(self) -> Stage:
        return self.stages[-1]

    def minimum_for(self, currency_code: str) -> Decimal:
        """The smallest balance worth a reminder in ``currency_code``."""
        return self.minimums.get(str(currency_code).strip().upper(), self.default_minimum)

    def template_names(self) -> set[str]:
        return {name for s in self.stages for name in (s.template, s.template_multi)}

    def check_templates(self, templates: Mapping[str, TemplateSpec]) -> None:
        """Raise ``PolicyError`` naming every stage template that is missing or asks for unknown values."""
        problems: list[str] = []
        for stage in self.stages:
            for name, allowed in ((stage.template, SINGLE_PARAMETERS), (stage.template_multi, MULTI_PARAMETERS)):
                spec = templates.get(name)
                if spec is None:
                    problems.append(f"stage {stage.key}: template {name!r} is not defined")
                    continue
                unknown = [p for p in spec.parameters if p not in allowed]
                if unknown:
                    problems.append(
                        f"stage {stage.key}: template {name!r} uses {', '.join(unknown)}; "
                        f"it may use only {', '.join(allowed)}"
                    )
        if problems:
            raise PolicyError("; ".join(problems))

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CollectionsPolicy:
        """Build from the YAML file's mapping; unknown keys are refused (a typo must not be ignored)."""
        if not isinstance(data, Mapping):
            raise PolicyError(f"expected a mapping, got {type(data).__name__}")
        _only(data, _FILE_KEYS, "policy")
        kwargs: dict[str, Any] = {}
        if "stages" in data:
            kwargs["stages"] = tuple(_stage(entry, i) for i, entry in enumerate(_list(data["stages"], "stages")))
        for name in ("repeat_every_days", "min_days_between_reminders", "live_balance_after_minutes"):
            if data.get(name) is not None:
                kwargs[name] = _whole(data[name], name)
        if data.get("send_window") is not None:
            kwargs["window"] = _window(data["send_window"])
        if data.get("minimum_outstanding") is not None:
            kwargs["default_minimum"], kwargs["minimums"] = _minimums(data["minimum_outstanding"])
        if "reminders_custom_field" in data:
            kwargs["reminders_field"] = _custom_field(data["reminders_custom_field"])
        if "portal_url" in data:
            kwargs["portal_url"] = data["portal_url"] or None
        if data.get("zoho_notes") is not None:
            notes = data["zoho_notes"]
            if not isinstance(notes, Mapping):
                raise PolicyError("zoho_notes: expected a mapping (enabled, daily_quota, reserve_calls)")
            _only(notes, ("enabled", "daily_quota", "reserve_calls"), "zoho_notes")
            kwargs["zoho_notes"] = ZohoNotes(**{k: v for k, v in notes.items() if v is not None})
        for name in ("language", "locale"):
            if data.get(name) is not None:
                kwargs[name] = str(data[name])
        return cls(**kwargs)

    def with_overrides(self, params: Mapping[str, Any]) -> CollectionsPolicy:
        """This policy with the DAG params in ``OVERRIDABLE`` applied; other keys are ignored.

        A param set to ``None`` keeps the configured value; an empty string switches an optional
        feature off (``holiday_country``, ``reminders_custom_field``, ``portal_url``).
        """
        given = {k: v for k, v in params.items() if k in OVERRIDABLE and v is not None}
        if not given:
            return self
        changes: dict[str, Any] = {}
        window: dict[str, Any] = {}
        for name, value in given.items():
            if name == "stages":
                changes["stages"] = self._select_stages(value)
            elif name in ("repeat_every_days", "min_days_between_reminders", "live_balance_after_minutes"):
                changes[name] = _whole(value, name)
            elif name in ("send_window_start", "send_window_end"):
                window[name.removeprefix("send_window_")] = _time_of_day(value, name)
            elif name == "sundays_off":
                window["sundays_off"] = _bool(value, name)
            elif name in ("holiday_country", "holiday_subdivision"):
                window[name] = str(value).strip().upper() or None
            elif name == "extra_holidays":
                window["extra_holidays"] = _dates(value, name)
            elif name == "minimum_outstanding":
                changes["default_minimum"], changes["minimums"] = _minimums(value)
            elif name == "reminders_custom_field":
                text = str(value).strip()
                base = self.reminders_field or CustomFieldSwitch()
                changes["reminders_field"] = replace(base, name=text) if text else None
            elif name == "portal_url":
                changes["portal_url"] = str(value).strip() or None
        if window:
            try:
                changes["window"] = replace(self.window, **window)
            except WindowError as exc:
                raise PolicyError(str(exc)) from None
        return replace(self, **changes)

    def _select_stages(self, value: Any) -> tuple[Stage, ...]:
        by_offset = {s.offset: s for s in self.stages}
        wanted = [_offset(v, "stages") for v in _list(value, "stages")]
        unknown = [stage_key(o) for o in wanted if o not in by_offset]
        if unknown:
            known = ", ".join(s.key for s in self.stages)
            raise PolicyError(f"stages: {', '.join(unknown)} not configured (configured: {known})")
        if not wanted:
            raise PolicyError("stages: at least one stage is needed")
        return tuple(by_offset[o] for o in dict.fromkeys(wanted))


# DAG params a run may set (besides its own, which are ignored here).
OVERRIDABLE = frozenset(
    {
        "stages",
        "repeat_every_days",
        "min_days_between_reminders",
        "send_window_start",
        "send_window_end",
        "sundays_off",
        "holiday_country",
        "holiday_subdivision",
        "extra_holidays",
        "minimum_outstanding",
        "reminders_custom_field",
        "portal_url",
        "live_balance_after_minutes",
    }
)
_FILE_KEYS = frozenset(
    {
        "stages",
        "repeat_every_days",
        "min_days_between_reminders",
        "send_window",
        "minimum_outstanding",
        "reminders_custom_field",
        "portal_url",
        "live_balance_after_minutes",
        "zoho_notes",
        "language",
        "locale",
    }
)


def resolve_policy_path() -> Path:
    """The policy file in use: ``$ZOHO_WHATSAPP_REMINDER_POLICY`` if set, else the default."""
    override = os.environ.get(POLICY_PATH_ENV, "").strip()
    return Path(override) if override else DEFAULT_POLICY_PATH


def load_policy(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> CollectionsPolicy:
    """Read the policy file (``path`` or ``resolve_policy_path()``), then apply ``overrides``."""
    source = Path(path) if path is not None else resolve_policy_path()
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(f"cannot read the reminder policy {source}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    try:
        policy = CollectionsPolicy.from_mapping(data if data is not None else {})
    except (PolicyError, WindowError) as exc:
        raise PolicyError(f"{source}: {exc}") from None
    return policy.with_overrides(overrides or {})


# -- parsing helpers -------------------------------------------------------------------------------


def _only(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    unknown = sorted(set(map(str, data)) - set(allowed))
    if unknown:
        raise PolicyError(f"{where}: unknown keys {unknown}")


def _list(value: Any, what: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise PolicyError(f"{what}: expected a list, got {value!r}")
    return list(value)


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{what}: expected a whole number >= 0, got {value!r}")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise PolicyError(f"{what}: expected true or false, got {value!r}")
    return value


def _offset(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise PolicyError(f"{what}: expected a number of days such as -3, 0 or +7, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,4}", value.strip()):
        return int(value.strip())
    raise PolicyError(f"{what}: expected a number of days such as -3, 0 or +7, got {value!r}")


def _time_of_day(value: Any, what: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 09:00 as the sexagesimal number 540.
        if 0 <= value < 24 * 60:
            return time(value // 60, value % 60)
    elif isinstance(value, str):
        match = _HHMM.fullmatch(value.strip())
        if match:
            return time(int(match.group(1)), int(match.group(2)))
    raise PolicyError(f"{what}: expected a time of day HH:MM (IST), got {value!r}")


def _dates(value: Any, what: str) -> frozenset:
    try:
        return parse_dates(_list(value, what), what)
    except WindowError as exc:
        raise PolicyError(str(exc)) from None


def _currency(code: Any) -> str:
    text = str(code).strip().upper()
    if not _CURRENCY.fullmatch(text):
        raise PolicyError(f"minimum_outstanding: {code!r} is not a currency code such as INR")
    return text


def _minimum(value: Any, what: str) -> Decimal:
    try:
        amount = parse_amount(value, what)
    except ValueError as exc:
        raise PolicyError(str(exc)) from None
    if amount < 0:
        raise PolicyError(f"{what}: must not be negative, got {value!r}")
    return amount


def _minimums(value: Any) -> tuple[Decimal, dict[str, Decimal]]:
    """A number (every currency) or a mapping ``{default: 1, INR: 100, USD: 2}``."""
    if isinstance(value, Mapping):
        default = _minimum(value.get("default", 1), "minimum_outstanding.default")
        per_currency = {_currency(k): _minimum(v, f"minimum_outstanding.{k}") for k, v in value.items() if k != "default"}
        return default, per_currency
    return _minimum(value, "minimum_outstanding"), {}


def _stage(entry: Any, index: int) -> Stage:
    where = f"stages[{index}]"
    if not isinstance(entry, Mapping):
        raise PolicyError(f"{where}: expected a mapping, got {entry!r}")
    _only(entry, ("offset", "name", "tone", "template", "template_multi"), where)
    missing = [k for k in ("offset", "name", "tone", "template", "template_multi") if entry.get(k) in (None, "")]
    if missing:
        raise PolicyError(f"{where}: missing {', '.join(missing)}")
    return Stage(
        offset=_offset(entry["offset"], f"{where}.offset"),
        name=str(entry["name"]),
        tone=str(entry["tone"]),
        template=str(entry["template"]),
        template_multi=str(entry["template_multi"]),
    )


def _window(data: Any) -> SendWindow:
    if not isinstance(data, Mapping):
        raise PolicyError(f"send_window: expected a mapping, got {data!r}")
    _only(data, ("start", "end", "sundays_off", "holidays"), "send_window")
    kwargs: dict[str, Any] = {}
    for name in ("start", "end"):
        if data.get(name) is not None:
            kwargs[name] = _time_of_day(data[name], f"send_window.{name}")
    if data.get("sundays_off") is not None:
        kwargs["sundays_off"] = _bool(data["sundays_off"], "send_window.sundays_off")
    holidays = data.get("holidays") or {}
    if not isinstance(holidays, Mapping):
        raise PolicyError(f"send_window.holidays: expected a mapping, got {holidays!r}")
    _only(holidays, ("country", "subdivision", "categories", "extra", "working_days"), "send_window.holidays")
    if holidays.get("country"):
        kwargs["holiday_country"] = str(holidays["country"]).strip().upper()
    if holidays.get("subdivision"):
        kwargs["holiday_subdivision"] = str(holidays["subdivision"]).strip().upper()
    if holidays.get("categories"):
        kwargs["holiday_categories"] = tuple(str(c) for c in _list(holidays["categories"], "holidays.categories"))
    if holidays.get("extra"):
        kwargs["extra_holidays"] = _dates(holidays["extra"], "send_window.holidays.extra")
    if holidays.get("working_days"):
        kwargs["working_days"] = _dates(holidays["working_days"], "send_window.holidays.working_days")
    try:
        return SendWindow(**kwargs)
    except WindowError as exc:
        raise PolicyError(str(exc)) from None


def _custom_field(data: Any) -> CustomFieldSwitch | None:
    if data in (None, "", False):
        return None
    if isinstance(data, str):
        return CustomFieldSwitch(name=data.strip())
    if not isinstance(data, Mapping):
        raise PolicyError(f"reminders_custom_field: expected a name or a mapping, got {data!r}")
    _only(data, ("name", "off_values"), "reminders_custom_field")
    if not data.get("name"):
        return None
    off = data.get("off_values")
    values = DEFAULT_OFF_VALUES if off is None else _list(off, "reminders_custom_field.off_values")
    for value in values:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            # YAML reads unquoted off/no/false as the boolean false: "off" would silently be lost.
            raise PolicyError(f"reminders_custom_field.off_values: quote every value, got {value!r}")
    return CustomFieldSwitch(name=str(data["name"]).strip(), off_values=frozenset(str(v) for v in values))
