"""The send window: 09:00-20:00 IST by default, Sundays and holidays optional, never a naive time."""

from __future__ import annotations

import doctest
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import pytest

import zoho_whatsapp.rules.window
from zoho_whatsapp.rules.window import (
    IST,
    SendWindow,
    WindowError,
    holiday_name,
    is_send_day,
    is_within_window,
    ist_date,
    next_send_day,
    next_send_time,
    parse_dates,
)

DEFAULT = SendWindow()
TUESDAY = date(2026, 7, 7)
SATURDAY = date(2026, 7, 11)
SUNDAY = date(2026, 7, 12)
GANDHI_JAYANTI = date(2026, 10, 2)  # a Friday, a national holiday in India


def ist(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=IST)


@pytest.mark.parametrize(
    ("hour", "minute", "second", "open_"),
    [
        (0, 0, 0, False),
        (8, 59, 59, False),
        (9, 0, 0, True),  # start is inclusive
        (13, 30, 0, True),
        (19, 59, 59, True),
        (20, 0, 0, False),  # end is exclusive
        (23, 59, 59, False),
    ],
)
def test_default_window_boundaries(hour: int, minute: int, second: int, open_: bool) -> None:
    assert is_within_window(ist(TUESDAY, hour, minute, second), DEFAULT) is open_


def test_moments_in_other_timezones_are_converted_to_ist() -> None:
    assert is_within_window(datetime(2026, 7, 7, 3, 30, tzinfo=UTC), DEFAULT)  # 09:00 IST
    assert not is_within_window(datetime(2026, 7, 7, 3, 29, 59, tzinfo=UTC), DEFAULT)
    assert not is_within_window(datetime(2026, 7, 7, 14, 30, tzinfo=UTC), DEFAULT)  # 20:00 IST
    assert ist_date(datetime(2026, 7, 6, 19, 0, tzinfo=UTC)) == date(2026, 7, 7)  # 00:30 IST next day
    assert ist_date(datetime(2026, 7, 6, 18, 29, tzinfo=UTC)) == date(2026, 7, 6)


def test_ist_has_no_daylight_saving_time() -> None:
    """09:00 IST is 03:30 UTC on every day of the year (Europe's and America's DST changes included)."""
    day = date(2026, 1, 1)
    while day.year == 2026:
        opening = next_send_time(datetime(day.year, day.month, day.day, 0, 0, tzinfo=UTC), DEFAULT)
        assert opening.astimezone(UTC).time() == time(3, 30), day
        day += timedelta(days=1)


class _Unknown(tzinfo):
    """A tzinfo that does not know its offset: as good as naive."""

    def utcoffset(self, dt: datetime | None) -> None:
        return None


@pytest.mark.parametrize(
    "naive",
    [datetime(2026, 7, 7, 10, 0), datetime(2026, 7, 7, 10, 0, tzinfo=_Unknown()), "2026-07-07T10:00:00+05:30", None],
)
def test_naive_or_non_datetimes_are_refused(naive: object) -> None:
    with pytest.raises(WindowError, match="timezone-aware"):
        is_within_window(naive, DEFAULT)  # type: ignore[arg-type]
    with pytest.raises(WindowError):
        next_send_time(naive, DEFAULT)  # type: ignore[arg-type]
    with pytest.raises(WindowError):
        ist_date(naive)  # type: ignore[arg-type]


def test_next_send_time() -> None:
    assert next_send_time(ist(TUESDAY, 6, 15), DEFAULT) == ist(TUESDAY, 9)
    assert next_send_time(ist(TUESDAY, 9), DEFAULT) == ist(TUESDAY, 9)
    inside = datetime(2026, 7, 7, 5, 0, tzinfo=UTC)  # 10:30 IST
    assert next_send_time(inside, DEFAULT) == inside
    assert next_send_time(inside, DEFAULT).tzinfo == IST
    assert next_send_time(ist(TUESDAY, 19, 59, 59), DEFAULT) == ist(TUESDAY, 19, 59, 59)
    assert next_send_time(ist(TUESDAY, 20), DEFAULT) == ist(TUESDAY + timedelta(days=1), 9)
    assert next_send_time(ist(TUESDAY, 23, 59), DEFAULT) == ist(TUESDAY + timedelta(days=1), 9)


def test_a_send_deferred_past_20_00_goes_out_next_morning_once() -> None:
    late = ist(TUESDAY, 20, 30)
    opening = next_send_time(late, DEFAULT)
    assert opening == ist(TUESDAY + timedelta(days=1), 9)
    assert next_send_time(opening, DEFAULT) == opening  # asking again at the opening does not defer again
    assert is_within_window(opening, DEFAULT)


def test_sundays_are_open_unless_switched_off() -> None:
    assert is_send_day(SUNDAY, DEFAULT)
    assert next_send_time(ist(SATURDAY, 21), DEFAULT) == ist(SUNDAY, 9)
    closed = SendWindow(sundays_off=True)
    assert not is_send_day(SUNDAY, closed)
    assert is_send_day(SATURDAY, closed)
    assert not is_within_window(ist(SUNDAY, 12), closed)
    assert next_send_time(ist(SATURDAY, 21), closed) == ist(SUNDAY + timedelta(days=1), 9)
    assert next_send_time(ist(SUNDAY, 7), closed) == ist(SUNDAY + timedelta(days=1), 9)
    assert next_send_time(ist(SUNDAY, 12), closed) == ist(SUNDAY + timedelta(days=1), 9)
    assert next_send_day(SUNDAY, closed) == SUNDAY + timedelta(days=1)
    assert next_send_day(SATURDAY, closed) == SATURDAY


def test_india_public_holidays_from_the_holidays_package() -> None:
    window = SendWindow(holiday_country="IN")
    assert holiday_name(GANDHI_JAYANTI, window) == "Mahatma Gandhi's Birthday"
    assert holiday_name(date(2026, 1, 26), window) == "Republic Day"
    assert holiday_name(date(2026, 8, 15), window) == "Independence Day"
    assert holiday_name(TUESDAY, window) is None
    assert not is_send_day(GANDHI_JAYANTI, window)
    assert is_send_day(GANDHI_JAYANTI, DEFAULT)  # holidays are opt-in
    assert holiday_name(GANDHI_JAYANTI, DEFAULT) is None
    eve = ist(GANDHI_JAYANTI - timedelta(days=1), 20, 5)
    assert next_send_time(eve, window) == ist(GANDHI_JAYANTI + timedelta(days=1), 9)
    assert next_send_time(ist(GANDHI_JAYANTI, 8), window) == ist(GANDHI_JAYANTI + timedelta(days=1), 9)


def test_holiday_and_sunday_in_a_row() -> None:
    # 2026-08-15 (Independence Day) is a Saturday: closed Saturday and Sunday, open Monday.
    window = SendWindow(holiday_country="IN", sundays_off=True)
    friday_evening = ist(date(2026, 8, 14), 20)
    assert next_send_time(friday_evening, window) == ist(date(2026, 8, 17), 9)


def test_organization_holidays_and_working_days() -> None:
    window = SendWindow(extra_holidays=frozenset({TUESDAY}), sundays_off=True, working_days=frozenset({SUNDAY}))
    assert holiday_name(TUESDAY, window) == "organization holiday"
    assert not is_send_day(TUESDAY, window)
    assert next_send_time(ist(TUESDAY, 10), window) == ist(TUESDAY + timedelta(days=1), 9)
    assert is_send_day(SUNDAY, window)  # a working day opens even a Sunday
    with_india = SendWindow(holiday_country="IN", working_days=frozenset({GANDHI_JAYANTI}))
    assert is_send_day(GANDHI_JAYANTI, with_india)
    assert holiday_name(GANDHI_JAYANTI, with_india) is None


def test_a_subdivision_adds_its_own_holidays() -> None:
    # Ganesh Chaturthi is a Maharashtra holiday, not a national one.
    ganesh_chaturthi = date(2026, 9, 14)
    maharashtra = SendWindow(holiday_country="IN", holiday_subdivision="MH")
    assert holiday_name(ganesh_chaturthi, maharashtra) == "Ganesh Chaturthi"
    assert not is_send_day(ganesh_chaturthi, maharashtra)
    assert is_send_day(ganesh_chaturthi, SendWindow(holiday_country="IN"))


def test_custom_hours() -> None:
    window = SendWindow(start=time(10, 30), end=time(18, 0))
    assert not is_within_window(ist(TUESDAY, 10, 29), window)
    assert is_within_window(ist(TUESDAY, 10, 30), window)
    assert not is_within_window(ist(TUESDAY, 18), window)
    assert next_send_time(ist(TUESDAY, 9), window) == ist(TUESDAY, 10, 30)


@pytest.mark.parametrize(
    ("start", "end"),
    [(time(20), time(9)), (time(9), time(9)), (time(9, 1), time(9))],
)
def test_start_must_come_before_end(start: time, end: time) -> None:
    with pytest.raises(WindowError, match="before end"):
        SendWindow(start=start, end=end)


def test_window_times_must_be_naive_times() -> None:
    with pytest.raises(WindowError, match="start"):
        SendWindow(start=time(9, tzinfo=IST))
    with pytest.raises(WindowError, match="end"):
        SendWindow(end="20:00")  # type: ignore[arg-type]


def test_unknown_holiday_country_subdivision_or_category_fails_at_construction() -> None:
    with pytest.raises(WindowError, match="XX"):
        SendWindow(holiday_country="XX")
    with pytest.raises(WindowError, match="ZZ"):
        SendWindow(holiday_country="IN", holiday_subdivision="ZZ")
    with pytest.raises(WindowError, match="bogus"):
        SendWindow(holiday_country="IN", holiday_categories=("bogus",))


def test_a_year_without_a_send_day_is_a_configuration_error() -> None:
    closed = frozenset(TUESDAY + timedelta(days=n) for n in range(400))
    window = SendWindow(extra_holidays=closed)
    with pytest.raises(WindowError, match="no send day"):
        next_send_day(TUESDAY, window)
    with pytest.raises(WindowError, match="no send day"):
        next_send_time(ist(TUESDAY, 10), window)
    almost = SendWindow(extra_holidays=frozenset(TUESDAY + timedelta(days=n) for n in range(365)))
    assert next_send_day(TUESDAY, almost) == TUESDAY + timedelta(days=365)


def test_parse_dates() -> None:
    assert parse_dates(["2026-10-02", date(2026, 1, 26), " 2026-08-15 "], "x") == {
        GANDHI_JAYANTI,
        date(2026, 1, 26),
        date(2026, 8, 15),
    }
    with pytest.raises(WindowError, match="holidays.extra.*02/10/2026"):
        parse_dates(["02/10/2026"], "holidays.extra")
    with pytest.raises(WindowError, match="datetime"):
        parse_dates([datetime(2026, 10, 2, 9, 0)], "x")


def test_docstring_examples() -> None:
    result = doctest.testmod(zoho_whatsapp.rules.window)
    assert result.attempted > 0
    assert result.failed == 0
