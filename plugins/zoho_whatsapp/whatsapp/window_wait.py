"""Which send window a batch keeps to, and how its wait for the next opening is worded.

The reminder DAG's send tasks keep to the policy's window (``include/config/reminder_policy.yaml``,
09:00-20:00 IST by default, overridable by the run's params); outside it they wait in the
triggerer, not on a worker. The window code reads the time through :func:`now`, so a test can move
the clock instead of sleeping until the morning.

``ZOHO_WHATSAPP_SEND_WINDOW=always`` (set only by the local tooling in ``include/local_airflow.py``:
tests, ``make demo``, ``make bench``) sends at any hour, so that a rehearsal at 22:00 against the
sandbox does not wait for the morning.

>>> window = SendWindow()
>>> describe(window)
'09:00–20:00 IST'
>>> closed_because(datetime(2026, 11, 29, 20, 14, tzinfo=IST), window)
'now 20:14'
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from zoho_whatsapp.rules.window import IST, SendWindow, holiday_name, is_send_day

__all__ = ["FROM_POLICY", "HELD_FOR_WINDOW", "WINDOW_ENV", "clock", "closed_because", "describe", "now",
           "resolve_window"]

FROM_POLICY = "policy"
# A batch's count of rows it left planned because the window had closed (BatchSender.send's stop_at).
HELD_FOR_WINDOW = "held_for_window"
WINDOW_ENV = "ZOHO_WHATSAPP_SEND_WINDOW"
ALWAYS = "always"


def _utcnow() -> datetime:
    return datetime.now(UTC)


# Replaced by tests (a clock at 20:14 IST); everything that decides by the window reads it via now().
clock: Callable[[], datetime] = _utcnow


def now() -> datetime:
    """The current time as the send window sees it (aware)."""
    return clock()


def resolve_window(spec: str | Mapping[str, Any] | None, params: Mapping[str, Any] | None = None) -> SendWindow | None:
    """The window a send task keeps to, or ``None`` for "any hour".

    ``spec`` is ``"policy"`` (the policy file's ``send_window`` with the run's params applied:
    ``send_window_start``, ``sundays_off``, ...), a mapping shaped like the file's ``send_window``
    (``{"start": "09:00", "end": "20:00", "sundays_off": true, "holidays": {"country": "IN"}}``),
    or ``None``. Raises ``PolicyError`` for a window that cannot be used.
    """
    from zoho_whatsapp.rules.policy import CollectionsPolicy, load_policy

    if spec is None:
        return None
    if isinstance(spec, str):
        if spec.strip() != FROM_POLICY:
            raise ValueError(f"send_window: expected {FROM_POLICY!r}, a mapping or None, got {spec!r}")
        if os.environ.get(WINDOW_ENV, "").strip().lower() == ALWAYS:
            return None
        return load_policy(overrides=params or {}).window
    return CollectionsPolicy.from_mapping({"send_window": dict(spec)}).window


def describe(window: SendWindow) -> str:
    """``09:00–20:00 IST, Sundays off, holidays: IN``: the window as the task log names it."""
    text = f"{window.start:%H:%M}–{window.end:%H:%M} IST"
    if window.sundays_off:
        text += ", Sundays off"
    if window.holiday_country:
        region = "-".join(p for p in (window.holiday_country, window.holiday_subdivision) if p)
        text += f", holidays: {region}"
    return text


def closed_because(moment: datetime, window: SendWindow) -> str:
    """Why the window is shut at ``moment``: ``now 20:14``, ``Sunday 29 Nov, 10:14``, ``Diwali (8 Nov)``."""
    local = moment.astimezone(IST)
    if not is_send_day(local.date(), window):
        name = holiday_name(local.date(), window)
        return f"{name} ({local:%-d %b})" if name else f"{local:%A %-d %b}, {local:%H:%M}"
    return f"now {local:%H:%M}"
