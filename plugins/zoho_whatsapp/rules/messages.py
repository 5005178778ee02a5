"""What planning decides for one message, whatever its kind: send it (:class:`Planned`) or not (:class:`Skip`).

Pure: a planned message has been built exactly as the send will build it, so a message that
cannot be sent is a skip now rather than a failure later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from zoho_whatsapp.rules.phone import UnusableNumber, mask_phone, to_whatsapp_number
from zoho_whatsapp.rules.templates import TemplateError, TemplateSpec, build_template_message

__all__ = ["Planned", "Skip", "choose_recipient", "plan_message"]


@dataclass(frozen=True)
class Planned:
    recipient: str  # E.164
    phone_masked: str
    template: str
    language: str
    parameters: dict[str, str]


@dataclass(frozen=True)
class Skip:
    reason: str  # no_mobile, invalid_mobile, not_mobile, zero_balance, template_error, not_in_zoho, ...
    detail: str
    phone_masked: str | None = None


def choose_recipient(candidates: Sequence[str], default_region: str) -> str:
    """The first candidate that is a WhatsApp-able mobile, in E.164.

    Raises the first candidate's :class:`UnusableNumber` when none is usable, so the recorded
    reason describes the number a person would look at first.
    """
    if not candidates:
        raise UnusableNumber("no_mobile", None, "no number in Zoho")
    first_error: UnusableNumber | None = None
    for raw in candidates:
        try:
            return to_whatsapp_number(raw, default_region)
        except UnusableNumber as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def plan_message(
    spec: TemplateSpec, language: str, recipient: str, parameters: Mapping[str, str], label: str
) -> Planned | Skip:
    """``spec`` filled with ``parameters`` for ``recipient``, validated; ``label`` names it in a skip."""
    masked = mask_phone(recipient)
    try:
        params = {name: parameters[name] for name in spec.parameters}
        build_template_message(spec, recipient, params, language=language)
    except (TemplateError, KeyError, ValueError) as exc:
        return Skip("template_error", f"{label}: {exc}", masked)
    return Planned(recipient, masked, spec.name, language, params)
