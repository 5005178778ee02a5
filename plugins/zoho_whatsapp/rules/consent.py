"""Whether a customer's WhatsApp reply opts them out of reminders (or back in). Pure functions: no I/O.

Meta offers no STOP keyword for utility messages (its ``user_preferences`` webhook covers marketing
only), so the product honours replies itself. A reply counts only when the whole message is a
keyword: "STOP" opts out, "please don't stop the service" does not. Matching ignores case, spaces,
invisible characters that keyboards insert (zero-width joiners in Devanagari) and closing
punctuation, so "Stop reminders!", "stopreminders" and "बंद  करें।" all match.

>>> consent_action("  Stop Reminders! ")
'opt_out'
>>> consent_action("बंद करें")
'opt_out'
>>> consent_action("start")
'opt_in'
>>> consent_action("paid yesterday") is None
True
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Literal

__all__ = [
    "DEFAULT_OPT_IN_KEYWORDS",
    "DEFAULT_OPT_OUT_KEYWORDS",
    "OPT_IN",
    "OPT_OUT",
    "ConsentAction",
    "consent_action",
    "keyword_list",
    "normalise_reply",
]

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
ConsentAction = Literal["opt_out", "opt_in"]

DEFAULT_OPT_OUT_KEYWORDS: tuple[str, ...] = ("STOP", "UNSUBSCRIBE", "STOP REMINDERS", "बंद करें", "रोकें")
DEFAULT_OPT_IN_KEYWORDS: tuple[str, ...] = ("START",)

# Closing punctuation people add to a one-word reply, including the Devanagari danda.
_TRAILING = ".!?,;:।॥'\")"
_MAX_KEYWORD_REPLY = 64  # a keyword reply is short; longer texts are conversation, not a command


def normalise_reply(text: str) -> str:
    """The form keywords and replies are compared in: NFKC (full-width letters are letters), case-folded,
    without spaces or invisibles."""
    text = unicodedata.normalize("NFKC", text)
    kept = [
        ch
        for ch in text
        # Cf: zero-width (non-)joiners, BOM, direction marks; Z*: every kind of space; Cc: controls.
        if not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cc", "Cs", "Zs", "Zl", "Zp")
    ]
    return "".join(kept).casefold().strip(_TRAILING)


def keyword_list(value: str | Iterable[str] | None, default: Iterable[str]) -> tuple[str, ...]:
    """A configured keyword list (a list, or one comma-separated string), or ``default`` when unset.

    >>> keyword_list("STOP, CANCEL", ())
    ('STOP', 'CANCEL')
    """
    if value is None or value == "" or value == []:
        return tuple(default)
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    words = tuple(w.strip() for w in items if normalise_reply(str(w)))
    return words or tuple(default)


def consent_action(
    text: str | None,
    opt_out: Iterable[str] = DEFAULT_OPT_OUT_KEYWORDS,
    opt_in: Iterable[str] = DEFAULT_OPT_IN_KEYWORDS,
) -> ConsentAction | None:
    """``"opt_out"`` when the whole reply is an opt-out keyword, ``"opt_in"`` for an opt-in one, else None.

    A word in both lists opts out: when in doubt, stop messaging.
    """
    if not text or len(text) > _MAX_KEYWORD_REPLY:
        return None
    reply = normalise_reply(text)
    if not reply:
        return None
    if reply in {normalise_reply(k) for k in opt_out}:
        return OPT_OUT
    if reply in {normalise_reply(k) for k in opt_in}:
        return OPT_IN
    return None
