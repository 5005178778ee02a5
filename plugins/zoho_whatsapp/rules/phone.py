"""Turn the free-text numbers typed into Zoho Books into WhatsApp-ready E.164 numbers.

Zoho stores whatever the user typed ("9820012345", "+91 98200 12345", "098200-12345").
String surgery ("prepend +91 if 10 digits") is wrong for numbers such as ``9198765432``,
which is itself a valid Indian mobile, so everything goes through ``phonenumbers``.

>>> to_whatsapp_number("098200-12345")
'+919820012345'
>>> mask_phone("+919820012345")
'+91 98XXXXXX45'
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

__all__ = ["REASONS", "UnusableNumber", "mask_phone", "to_whatsapp_number"]

REASONS = ("no_mobile", "invalid_mobile", "not_mobile")

# FIXED_LINE_OR_MOBILE is what phonenumbers reports for regions (US, CA, ...) whose
# numbering plan cannot tell the two apart; WhatsApp works on those numbers.
_SENDABLE_TYPES = frozenset(
    {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}
)

# Placeholders people type into a mandatory-looking field instead of leaving it blank.
_PLACEHOLDERS = frozenset(
    {"n/a", "na", "n.a.", "nil", "none", "null", "nan", "not available", "no", "-"}
)
_HAS_ALNUM = re.compile(r"\w")
_LEADING_IDD_00 = re.compile(r"^[\s(]*00")


class UnusableNumber(ValueError):
    """The contact has no number WhatsApp can be sent to.

    ``reason`` is one of ``"no_mobile"`` (nothing entered), ``"invalid_mobile"`` (not a
    valid phone number) or ``"not_mobile"`` (valid, but a landline / toll-free / ...).
    """

    def __init__(self, reason: str, raw: str | None, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown UnusableNumber reason {reason!r}")
        self.reason = reason
        self.raw = raw
        self.detail = detail
        message = f"{reason}: {raw!r}"
        super().__init__(f"{message} ({detail})" if detail else message)

    @property
    def masked(self) -> str:
        """The message with the number masked, for logs and the ledger.

        >>> UnusableNumber("not_mobile", "022 2345 6789", "FIXED_LINE").masked
        "not_mobile: '02XXXXXXX89' (FIXED_LINE)"
        """
        shown = mask_phone(self.raw) if self.raw and self.reason != "no_mobile" else self.raw
        message = f"{self.reason}: {shown!r}"
        return f"{message} ({self.detail})" if self.detail else message


def _is_blank(text: str) -> bool:
    stripped = text.strip()
    return (
        not stripped
        or stripped.casefold() in _PLACEHOLDERS
        or not _HAS_ALNUM.search(stripped)
    )


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def to_whatsapp_number(raw: str | None, default_region: str = "IN") -> str:
    """Return the E.164 form of ``raw`` (e.g. ``'+919820012345'``) or raise ``UnusableNumber``.

    ``default_region`` is the organization's ``country_code``; it only applies to numbers
    written without an international prefix.

    >>> to_whatsapp_number("0091 98200 12345")
    '+919820012345'
    >>> to_whatsapp_number("022 2345 6789")
    Traceback (most recent call last):
    ...
    zoho_whatsapp.rules.phone.UnusableNumber: not_mobile: '022 2345 6789' (FIXED_LINE)
    """
    if raw is None:
        raise UnusableNumber("no_mobile", None)
    if isinstance(raw, int) and not isinstance(raw, bool):
        # A spreadsheet import can turn the field into a number; its digits are still the number.
        raw = str(raw)
    if not isinstance(raw, str):
        raise UnusableNumber("invalid_mobile", repr(raw), "not a string")
    if _is_blank(raw):
        raise UnusableNumber("no_mobile", raw)

    region = (default_region or "").strip().upper() or None
    number = _parse(raw, region)
    if (
        number is None or not phonenumbers.is_valid_number(number)
    ) and _LEADING_IDD_00.match(raw):
        # "00" is the international prefix almost everywhere, but phonenumbers only honours the
        # default region's own prefix (011 in the US): an IN-style "0091 ..." stored in a US
        # organization would otherwise be misread as a national number.
        number = _parse(_LEADING_IDD_00.sub("+", raw, count=1), None) or number

    if number is None:
        raise UnusableNumber("invalid_mobile", raw, "unparseable")
    if not phonenumbers.is_valid_number(number):
        raise UnusableNumber("invalid_mobile", raw, "not a valid number")
    number_type = phonenumbers.number_type(number)
    if number_type not in _SENDABLE_TYPES:
        raise UnusableNumber("not_mobile", raw, PhoneNumberType.to_string(number_type))
    # E.164 has no room for an extension; a mobile reached via one is still the same handset.
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """Mask a number for logs: keep country code, first 2 and last 2 national digits.

    Never raises, so it is safe inside log statements.

    >>> mask_phone("+19259219201")
    '+1 92XXXXXX01'
    """
    try:
        number = phonenumbers.parse(e164, None)
        country = f"+{number.country_code} "
        national = phonenumbers.national_significant_number(number)
    except (NumberParseException, TypeError, AttributeError):
        country = ""
        national = "".join(ch for ch in str(e164) if ch.isdigit())
    if len(national) <= 4:
        return country + "X" * len(national)
    return country + national[:2] + "X" * (len(national) - 4) + national[-2:]
