"""What the audit page may show of a ledger row: masked numbers only, never a secret or a raw number.

The ledger keeps what the send needs (``recipient`` in E.164, the Zoho row in ``source`` with the
contact's numbers, Meta's ``wamid``, which encodes the recipient's number); the page reads none of
them. Free text written by the pipeline (a skip's detail, Meta's error message) may quote the
number a person typed in Zoho, so every run of digits long enough to be a phone number is masked.
"""

from __future__ import annotations

import re

# A phone number as typed: digits with optional spaces, dots, dashes or brackets, 7+ digits in all.
_NUMBER = re.compile(r"(?<![\w])\+?\(?\d[\d\s().\-]{5,}\d(?![\w])")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_TEXT = 300


def mask_digits(raw: str) -> str:
    """Keep a number's first two and last two digits: ``'022 2345 6789'`` -> ``'02XXXXXXX89'``."""
    digits = [c for c in raw if c.isdigit()]
    prefix = "+" if raw.lstrip().startswith("+") else ""
    if len(digits) <= 4:
        return prefix + "X" * len(digits)
    return prefix + "".join(digits[:2]) + "X" * (len(digits) - 4) + "".join(digits[-2:])


def scrub(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """``text`` with every phone-number-like run of digits masked, cut to ``limit`` characters.

    >>> scrub("not_mobile: '022 2345 6789' (FIXED_LINE)")
    "not_mobile: '02XXXXXXX89' (FIXED_LINE)"
    >>> scrub("INV-000020 is due on 2026-11-20")
    'INV-000020 is due on 2026-11-20'
    """
    if text is None:
        return None

    def _mask(match: re.Match[str]) -> str:
        found = match.group(0)
        if sum(c.isdigit() for c in found) < 7 or _ISO_DATE.match(found.strip()):
            return found
        return mask_digits(found)

    cleaned = _NUMBER.sub(_mask, str(text))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
