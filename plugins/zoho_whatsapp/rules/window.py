"""When a reminder may reach a customer: office hours in India time, minus Sundays and holidays.

India has no daylight saving time, so ``Asia/Kolkata`` is always UTC+05:30 and "09:00 IST"
names one instant every day of the year.

>>> window = SendWindow()
>>> next_send_time(datetime(2026, 7, 7, 21, 15, tzinfo=IST), window).isoformat()
'2026-07-08T09:00:00+05:30'
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "IST",
    "SendWindow",
    "WindowError",
    "holiday_name",
    "ist_date",
    "is_send_day",
    "is_within_window",
    "next_send_day",
    "next_send_time",
    "parse_dates",
    "window_closes_at",
]

IST = ZoneInfo("Asia/Kolkata")
SUNDAY = 6  # date.weekday()
# Every day closed for a year means the configuration is wrong, not that we should keep looking.
_MAX_DAYS_SEARCHED = 366


class WindowError(ValueError):
    """A send window that cannot be used (start not before end, no open day in a year, ...)."""


@dataclass(frozen=True)
class SendWindow:
    """Hours (IST, ``start`` inclusive, ``end`` exclusive) and days on which messages may go out.

    ``holiday_country`` (e.g. ``"IN"``) switches on that country's public holidays from the
    ``holidays`` package, optionally for one ``holiday_subdivision`` (e.g. ``"MH"``);
    ``extra_holidays`` are the organization's own closed days; ``working_days`` are dates that
    open even though they are holidays or Sundays (a working Saturday-style exception).
    """

    start: time = time(9, 0)
    end: time = time(20, 0)
    sundays_off: bool = False
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    holiday_categories: tuple[str, ...] = ("public",)
    extra_holidays: frozenset[date] = field(default_factory=frozenset)
    working_days: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, time) or value.tzinfo is not None:
                raise WindowError(f"send window {name}: expected a naive time of day (IST), got {value!r}")
        if self.start >= self.end:
            raise WindowError(
                f"send window start {self.start:%H:%M} must be before end {self.end:%H:%M} (IST, same day)"
            )
        if self.holiday_country is not None:
            # Fail when the policy is loaded, not at 09:00 on the first day it is consulted.
            _country_holidays(
                self.holiday_country, self.holiday_subdivision, self.holiday_categories, date.today().year
            )


def ist_date(moment: datetime) -> date:
    """The IST calendar day of an aware ``moment`` (naive datetimes are refused, not guessed)."""
    return _to_ist(moment).date()


def _to_ist(moment: datetime) -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:  # naive: utcoffset() is None
        raise WindowError(f"expected a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(IST)


@functools.lru_cache(maxsize=64)
def _country_holidays(country: str, subdivision: str | None, categories: tuple[str, ...], year: int) -> dict[date, str]:
    import holidays  # imported here: only organizations that switch holidays on pay for it

    try:
        found = holidays.country_holidays(country, subdiv=subdivision, years=year, categories=categories)
    except (NotImplementedError, KeyError, ValueError) as exc:
        raise WindowError(
            f"holidays for country {country!r} subdivision {subdivision!r} categories {list(categories)}: {exc}"
        ) from None
    return dict(found.items())


def holiday_name(day: date, window: SendWindow) -> str | None:
    """Why ``day`` is closed for holidays (the holiday's name), or ``None`` if it is not a holiday."""
    if day in window.working_days:
        return None
    if day in window.extra_holidays:
        return "organization holiday"
    if window.holiday_country is None:
        return None
    return _country_holidays(
        window.holiday_country, window.holiday_subdivision, window.holiday_categories, day.year
    ).get(day)


def is_send_day(day: date, window: SendWindow) -> bool:
    """Whether messages may go out at all on the IST calendar day ``day``."""
    if day in window.working_days:
        return True
    if window.sundays_off and day.weekday() == SUNDAY:
        return False
    return holiday_name(day, window) is None


def next_send_day(day: date, window: SendWindow) -> date:
    """``day`` itself if it is a send day, else the first send day after it."""
    for offset in range(_MAX_DAYS_SEARCHED):
        candidate = day + timedelta(days=offset)
        if is_send_day(candidate, window):
            return candidate
    raise WindowError(f"no send day within {_MAX_DAYS_SEARCHED} days of {day}: check the holidays configuration")


def is_within_window(moment: datetime, window: SendWindow) -> bool:
    """Whether a message may be sent at ``moment`` (an aware datetime, any timezone)."""
    local = _to_ist(moment)
    return is_send_day(local.date(), window) and window.start <= local.time() < window.end


def next_send_time(moment: datetime, window: SendWindow) -> datetime:
    """The first instant at or after ``moment`` when a message may be sent, in IST.

    ``moment`` itself when it is inside the window; else the next opening (today's start if it
    is still to come, otherwise the start of the next send day).
    """
    local = _to_ist(moment)
    if is_within_window(local, window):
        return local
    day = local.date()
    # At window.start exactly a send day has returned above, so < and <= agree here.
    if not (local.time() < window.start and is_send_day(day, window)):  # pragma: no mutate
        day = next_send_day(day + timedelta(days=1), window)
    return datetime.combine(day, window.start, tzinfo=IST)


def window_closes_at(moment: datetime, window: SendWindow) -> datetime:
    """When the window that is open at ``moment`` closes (IST): the same day's ``end``."""
    local = _to_ist(moment)
    if not is_within_window(local, window):
        raise WindowError(f"the send window is not open at {local:%Y-%m-%d %H:%M} IST")
    return datetime.combine(local.date(), window.end, tzinfo=IST)


def parse_dates(values: Iterable[object], what: str) -> frozenset[date]:
    """``YYYY-MM-DD`` strings or dates (from YAML or DAG params) as a set of dates."""
    out: set[date] = set()
    for value in values:
        if isinstance(value, datetime):
            raise WindowError(f"{what}: expected a date, got the datetime {value!r}")
        if isinstance(value, date):
            out.add(value)
            continue
        try:
            out.add(date.fromisoformat(str(value).strip()))
        except ValueError:
            raise WindowError(f"{what}: expected YYYY-MM-DD, got {value!r}") from None
    return frozenset(out)
