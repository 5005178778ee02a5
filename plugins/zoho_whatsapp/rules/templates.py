"""WhatsApp template definitions and the Cloud API request bodies built from them.

The templates live in ``include/templates/whatsapp_templates.yaml`` and must mirror the ones
approved in WhatsApp Manager (named parameters). Everything here is pure: the only I/O is
reading that file.

>>> spec = TemplateSpec("payment_reminder", "en", ("party_name",), "Dear {{party_name}}, hi.")
>>> render_text(spec, {"party_name": "Priya\\nTextiles"})
'Dear Priya Textiles, hi.'
>>> build_template_message(spec, "+919820012345", {"party_name": "Priya"})["template"]["language"]
{'policy': 'deterministic', 'code': 'en'}
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_TEMPLATES_PATH",
    "MAX_OPAQUE_BYTES",
    "MAX_PARAMETER_CHARS",
    "TEMPLATES_PATH_ENV",
    "TemplateError",
    "TemplateSpec",
    "build_template_message",
    "load_templates",
    "render_text",
    "resolve_templates_path",
    "sanitise_parameter",
]

# plugins/zoho_whatsapp/rules/templates.py -> parents[3] is the repository root.
DEFAULT_TEMPLATES_PATH: Path = (
    Path(__file__).resolve().parents[3]
    / "include"
    / "templates"
    / "whatsapp_templates.yaml"
)
TEMPLATES_PATH_ENV = "ZOHO_WHATSAPP_TEMPLATES"

MAX_PARAMETER_CHARS = 1024
MAX_OPAQUE_BYTES = 512  # biz_opaque_callback_data limit, counted in UTF-8 bytes
MAX_BODY_CHARS = 1024  # WhatsApp Manager rejects longer template bodies
ELLIPSIS = "\u2026"

CATEGORIES = frozenset({"utility", "marketing", "authentication"})
_TEMPLATE_NAME = re.compile(r"[a-z0-9_]{1,512}")
_PARAMETER_NAME = re.compile(r"[a-z_]+")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Za-z]{2,4})?")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_ENTRY_KEYS = frozenset(
    {
        "name",
        "language",
        "category",
        "parameter_format",
        "parameters",
        "body",
        "description",
    }
)

# Meta rejects parameter text with newlines, tabs or more than 4 consecutive spaces.
_LINE_BREAKS_AND_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_LONG_SPACE_RUN = re.compile(r" {5,}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


class TemplateError(ValueError):
    """A template definition or its parameters are wrong.

    ``template`` and ``parameters`` name what is at fault (when known).
    """

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        parameters: Iterable[str] = (),
    ) -> None:
        self.template = template
        self.parameters = tuple(parameters)
        super().__init__(f"template {template!r}: {message}" if template else message)


@dataclass(frozen=True)
class TemplateSpec:
    """One approved WhatsApp template with named body parameters (validated on creation)."""

    name: str
    language: str
    parameters: tuple[str, ...]
    body: str
    category: str = "utility"

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _TEMPLATE_NAME.fullmatch(name):
            raise TemplateError(
                f"invalid template name {name!r}: use lowercase letters, digits and underscores",
                template=name if isinstance(name, str) else None,
            )
        if not isinstance(self.language, str) or not _LANGUAGE.fullmatch(self.language):
            raise TemplateError(
                f"invalid language code {self.language!r}", template=name
            )
        if self.category not in CATEGORIES:
            raise TemplateError(
                f"invalid category {self.category!r}: one of {sorted(CATEGORIES)}",
                template=name,
            )
        if not isinstance(self.parameters, tuple):
            raise TemplateError("parameters must be a tuple of names", template=name)
        bad = [
            p
            for p in self.parameters
            if not isinstance(p, str) or not _PARAMETER_NAME.fullmatch(p)
        ]
        if bad:
            raise TemplateError(
                f"invalid parameter names {bad!r}: use lowercase letters and underscores",
                template=name,
                parameters=map(str, bad),
            )
        duplicates = sorted(
            {p for p in self.parameters if self.parameters.count(p) > 1}
        )
        if duplicates:
            raise TemplateError(
                f"parameters declared twice: {', '.join(duplicates)}",
                template=name,
                parameters=duplicates,
            )
        if not isinstance(self.body, str) or not self.body.strip():
            raise TemplateError("body is empty", template=name)
        if len(self.body) > MAX_BODY_CHARS:
            raise TemplateError(
                f"body longer than {MAX_BODY_CHARS} characters", template=name
            )
        used = _placeholders(self.body)
        undeclared = [p for p in used if p not in self.parameters]
        if undeclared:
            raise TemplateError(
                "body uses undeclared placeholders: "
                + ", ".join("{{" + p + "}}" for p in undeclared),
                template=name,
                parameters=undeclared,
            )
        unused = [p for p in self.parameters if p not in used]
        if unused:
            raise TemplateError(
                f"declared parameters missing from body: {', '.join(unused)}",
                template=name,
                parameters=unused,
            )


def _placeholders(body: str) -> list[str]:
    """Placeholder names in order of first use; ``{{ x }}`` or ``{{1}}`` count as-is (invalid)."""
    seen: list[str] = []
    for match in _PLACEHOLDER.finditer(body):
        if match.group(1) not in seen:
            seen.append(match.group(1))
    return seen


def resolve_templates_path() -> Path:
    """The templates file in use: ``$ZOHO_WHATSAPP_TEMPLATES`` if set, else the default."""
    override = os.environ.get(TEMPLATES_PATH_ENV, "").strip()
    return Path(override) if override else DEFAULT_TEMPLATES_PATH


def load_templates(path: Path | None = None) -> dict[str, TemplateSpec]:
    """Load and validate the templates file; keys are template names.

    ``path`` defaults to ``resolve_templates_path()``. Any problem raises ``TemplateError``.

    >>> sorted(load_templates())[:3]
    ['invoice_created', 'payment_received', 'payment_reminder']
    """
    source = Path(path) if path is not None else resolve_templates_path()
    try:
        stat = source.stat()
    except OSError as exc:
        raise TemplateError(f"cannot read templates file {source}: {exc}") from exc
    # Every send task loads the file (a YAML parse: ~0.15 s of CPU, a tenth of a 5,000-message send at
    # 500/s): parsed once per process while the file is unchanged; an edit is seen by the next load.
    return dict(_load_templates(str(source), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _load_templates(path: str, _mtime_ns: int, _size: int) -> dict[str, TemplateSpec]:
    source = Path(path)
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TemplateError(f"cannot read templates file {source}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TemplateError(
            f"templates file {source} is not valid YAML: {exc}"
        ) from exc

    entries = document.get("templates") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise TemplateError(f"{source}: expected a non-empty 'templates:' list")

    specs: dict[str, TemplateSpec] = {}
    for index, entry in enumerate(entries):
        spec = _spec_from_entry(entry, f"{source} templates[{index}]")
        if spec.name in specs:
            raise TemplateError(f"{source}: defined twice", template=spec.name)
        specs[spec.name] = spec
    return specs


def _spec_from_entry(entry: object, where: str) -> TemplateSpec:
    if not isinstance(entry, dict):
        raise TemplateError(f"{where}: expected a mapping, got {type(entry).__name__}")
    name = entry.get("name")
    label = name if isinstance(name, str) else None
    unknown = sorted(set(map(str, entry)) - _ENTRY_KEYS)
    if unknown:
        # Catches typos such as "paramters" that would otherwise silently drop a field.
        raise TemplateError(f"{where}: unknown keys {unknown}", template=label)
    missing = [k for k in ("name", "language", "body") if k not in entry]
    if missing:
        raise TemplateError(f"{where}: missing keys {missing}", template=label)
    parameter_format = entry.get("parameter_format", "named")
    if parameter_format != "named":
        raise TemplateError(
            f"{where}: parameter_format must be 'named', got {parameter_format!r}",
            template=label,
        )
    parameters = entry.get("parameters") or []
    if not isinstance(parameters, list):
        raise TemplateError(
            f"{where}: 'parameters' must be a list of names", template=label
        )
    return TemplateSpec(
        name=name,
        language=entry["language"],
        parameters=tuple(parameters),
        body=entry["body"],
        category=entry.get("category", "utility"),
    )


def sanitise_parameter(text: object, name: str) -> str:
    """Make ``text`` acceptable as a WhatsApp template parameter value.

    Line breaks, tabs and other control characters become one space, runs of 5+ spaces
    collapse to one, the ends are stripped and the result is capped at 1024 characters
    (ending in an ellipsis). An empty result raises ``TemplateError`` naming ``name``.

    >>> sanitise_parameter("  Rajesh\\tEnterprises\\r\\n Pvt      Ltd ", "party_name")
    'Rajesh Enterprises  Pvt Ltd'
    """
    value = "" if text is None else str(text)
    value = _LINE_BREAKS_AND_CONTROLS.sub(" ", value)
    value = _LONG_SPACE_RUN.sub(" ", value).strip()
    if not value:
        raise TemplateError(f"parameter {name!r} is empty", parameters=(name,))
    if len(value) > MAX_PARAMETER_CHARS:
        value = value[: MAX_PARAMETER_CHARS - 1].rstrip() + ELLIPSIS
    return value


def _sanitised_params(
    spec: TemplateSpec, params: Mapping[str, object]
) -> dict[str, str]:
    missing = [p for p in spec.parameters if p not in params]
    extra = [str(p) for p in params if p not in spec.parameters]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing parameters: {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected parameters: {', '.join(extra)}")
        raise TemplateError(
            "; ".join(problems), template=spec.name, parameters=missing + extra
        )
    values: dict[str, str] = {}
    for name in spec.parameters:
        try:
            values[name] = sanitise_parameter(params[name], name)
        except TemplateError as exc:
            raise TemplateError(
                str(exc), template=spec.name, parameters=(name,)
            ) from None
    return values


def build_template_message(
    spec: TemplateSpec,
    to_e164: str,
    params: Mapping[str, str],
    language: str | None = None,
    opaque: str | None = None,
) -> dict[str, Any]:
    """Build the Cloud API ``POST /{phone-number-id}/messages`` JSON body for ``spec``.

    Parameters go out in ``spec.parameters`` order as named text parameters. ``opaque``
    becomes ``biz_opaque_callback_data`` (echoed in status webhooks; at most 512 bytes).
    Missing or unexpected ``params`` raise ``TemplateError`` naming them.
    """
    if not isinstance(to_e164, str) or not _E164.fullmatch(to_e164):
        raise ValueError(
            f"to_e164: expected an E.164 number such as '+919820012345', got {to_e164!r}"
        )
    code = spec.language if language is None else language
    if not isinstance(code, str) or not _LANGUAGE.fullmatch(code):
        raise TemplateError(f"invalid language code {code!r}", template=spec.name)
    values = _sanitised_params(spec, params)

    template: dict[str, Any] = {
        "name": spec.name,
        # The contract's LanguageObject requires policy; Meta accepts it alongside code.
        "language": {"policy": "deterministic", "code": code},
    }
    if spec.parameters:
        # Nothing to fill in: omit components rather than send an empty parameter list.
        template["components"] = [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "parameter_name": name, "text": values[name]}
                    for name in spec.parameters
                ],
            }
        ]
    message: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to_e164,
        "type": "template",
        "template": template,
    }
    if opaque is not None:
        if len(opaque.encode("utf-8")) > MAX_OPAQUE_BYTES:
            raise TemplateError(
                f"biz_opaque_callback_data is {len(opaque.encode('utf-8'))} bytes, "
                f"limit {MAX_OPAQUE_BYTES}",
                template=spec.name,
            )
        message["biz_opaque_callback_data"] = opaque
    return message


def render_text(spec: TemplateSpec, params: Mapping[str, str]) -> str:
    """The message as the customer reads it: ``spec.body`` with sanitised values filled in."""
    values = _sanitised_params(spec, params)
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], spec.body)
