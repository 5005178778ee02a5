"""Reminder stages: each at most once, missed ones caught up once, never backwards, never two a day."""

from __future__ import annotations

import doctest
from datetime import date, timedelta

import pytest

import zoho_whatsapp.rules.stages
from zoho_whatsapp.rules.policy import CollectionsPolicy, Stage
from zoho_whatsapp.rules.stages import (
    WAIT_REASONS,
    StageDecision,
    StageWait,
    decide_stage,
    upcoming_due_dates,
)

POLICY = CollectionsPolicy()
DUE = date(2026, 7, 1)


def on(days: int) -> date:
    """The IST day ``days`` after the due date."""
    return DUE + timedelta(days=days)


def decide(days: int, reached: dict[int, int] | None = None, policy: CollectionsPolicy = POLICY):
    """Decide on day due+``days``; ``reached`` maps stage offsets to the due-relative day reached."""
    return decide_stage(DUE, on(days), {o: on(d) for o, d in (reached or {}).items()}, policy)


# --- first contact (no history) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "offset", "skipped"),
    [
        (-3, -3, ()),
        (-2, -3, ()),  # a courtesy missed yesterday is caught up before the due date
        (-1, -3, ()),
        (0, 0, (-3,)),
        (1, 1, (-3, 0)),
        (6, 1, (-3, 0)),
        (7, 7, (-3, 0, 1)),
        (14, 7, (-3, 0, 1)),
        (15, 15, (-3, 0, 1, 7)),
        (29, 15, (-3, 0, 1, 7)),
        (30, 30, (-3, 0, 1, 7, 15)),
        (120, 30, (-3, 0, 1, 7, 15)),  # first contact long after: the final notice, not a repeat
    ],
)
def test_first_contact_gets_the_most_advanced_stage_whose_day_has_come(
    days: int, offset: int, skipped: tuple[int, ...]
) -> None:
    decision = decide(days)
    assert isinstance(decision, StageDecision)
    assert decision.offset == offset
    assert decision.stage.offset == offset
    assert decision.skipped == skipped
    assert decision.repeat == 0
    assert decision.days_from_due == days
    assert decision.late_by_days == days - offset


@pytest.mark.parametrize("days", [-4, -10, -400])
def test_before_the_first_stage_nothing_is_due(days: int) -> None:
    wait = decide(days)
    assert wait == StageWait("before_first_stage", on(-3), wait.detail)
    assert str(days) in wait.detail


def test_stage_templates_and_tones_follow_the_stage() -> None:
    decision = decide(15)
    assert decision.stage == Stage(15, "overdue_15", "firm", "reminder_overdue_15", "reminder_overdue_15_multi")
    assert decision.key == "+15"
    assert decide(-3).key == "-3"
    assert decide(0).key == "0"


# --- with history ----------------------------------------------------------------------------------


def test_each_stage_in_turn_on_its_own_day() -> None:
    reached: dict[int, int] = {}
    sent_on: list[tuple[int, int]] = []
    for days in range(-5, 31):
        decision = decide(days, reached)
        if isinstance(decision, StageDecision):
            reached[decision.offset] = days
            sent_on.append((days, decision.offset))
            assert decision.late_by_days == 0
    assert sent_on == [(-3, -3), (0, 0), (1, 1), (7, 7), (15, 15), (30, 30)]


def test_the_next_stage_waits_for_its_day() -> None:
    wait = decide(3, {-3: -3, 0: 0, 1: 1})
    assert wait == StageWait("awaiting_next_stage", on(7), wait.detail)
    assert decide(6, {1: 1}).reason == "awaiting_next_stage"
    assert decide(7, {1: 1}).offset == 7
    # the wait before a configured stage says when it comes
    assert decide(-1, {-3: -3}).next_on == on(0)


def test_a_paused_week_is_caught_up_once_with_the_latest_stage_only() -> None:
    # +1 sent, the DAG paused for 10 days: on resume the invoice gets +7 (not +1 again, not both).
    decision = decide(11, {1: 1})
    assert (decision.offset, decision.skipped, decision.late_by_days) == (7, (), 4)
    # paused past two stages: only the most advanced one, the other is skipped for good
    decision = decide(16, {1: 1})
    assert (decision.offset, decision.skipped) == (15, (7,))
    after = decide(17, {1: 1, 15: 16})
    assert after.reason == "awaiting_next_stage" and after.next_on == on(30)


def test_never_two_stages_in_one_day() -> None:
    # the courtesy went out this morning (caught up on the due date): no due-today stage as well
    wait = decide(0, {-3: 0})
    assert wait == StageWait("stage_sent_today", on(1), wait.detail)
    assert decide(1, {-3: 0}).offset == 1  # the next day it may


def test_a_stage_reached_on_a_later_day_blocks_an_earlier_one() -> None:
    # a backfill of day +7 running after day +9 already sent +7
    wait = decide(7, {7: 9})
    assert wait.reason == "stage_sent_later"
    assert wait.next_on == on(15)
    assert decide(8, {1: 9}).reason == "stage_sent_later"


def test_never_a_stage_older_than_the_latest_reached() -> None:
    # the due date was moved later after +15 went out: now only 10 days past due
    wait = decide(10, {15: 5})
    assert wait.reason == "awaiting_next_stage"
    assert wait.next_on == on(30)
    for days in range(10, 30):
        assert isinstance(decide(days, {15: 5}), StageWait), days
    assert decide(30, {15: 5}).offset == 30


def test_each_stage_at_most_once() -> None:
    assert isinstance(decide(8, {7: 7}), StageWait)
    assert isinstance(decide(14, {7: 7}), StageWait)
    assert isinstance(decide(0, {0: -1}), StageWait)  # reached a day early (due date moved): not again


def test_stages_reached_under_an_older_configuration_still_count() -> None:
    # +10 was a stage once; the invoice must not get +7 now
    assert isinstance(decide(12, {10: 10}), StageWait)
    assert decide(15, {10: 10}).offset == 15


# --- repeats after the last stage -----------------------------------------------------------------


def test_repeats_every_n_days_after_the_final_notice() -> None:
    assert decide(44, {30: 30}) == StageWait("awaiting_next_stage", on(45), decide(44, {30: 30}).detail)
    first = decide(45, {30: 30})
    assert (first.offset, first.repeat, first.stage.offset, first.key) == (45, 1, 30, "+45")
    assert first.stage.template == "reminder_final_notice"
    second = decide(60, {30: 30, 45: 45})
    assert (second.offset, second.repeat) == (60, 2)
    assert decide(59, {30: 30, 45: 45}).next_on == on(60)


def test_a_late_final_notice_is_not_repeated_the_next_morning() -> None:
    # the final notice was caught up on day +44: the first repeat comes 15 days after that
    assert decide(45, {30: 44}).reason == "awaiting_next_stage"
    assert decide(45, {30: 44}).next_on == on(59)
    assert decide(58, {30: 44}).reason == "awaiting_next_stage"
    repeat = decide(59, {30: 44})
    assert (repeat.offset, repeat.repeat) == (59, 1)


def test_repeats_count_only_offsets_beyond_the_final_stage() -> None:
    assert decide(75, {-3: -3, 1: 1, 7: 7, 15: 15, 30: 30, 45: 45, 60: 60}).repeat == 3


def test_a_repeat_needs_the_days_past_due_to_have_grown() -> None:
    # the due date moved later: 20 days past due now, though +45 was reached; a month later still
    # nothing older than +45 is sent, even with the repeat interval long passed
    wait = decide(20, {30: 0, 45: 1})
    assert wait.reason == "awaiting_next_stage"
    assert wait.next_on == on(46)
    assert isinstance(decide(45, {30: 0, 45: 1}), StageWait)
    assert decide(46, {30: 0, 45: 1}).offset == 46


def test_no_repeats_when_switched_off() -> None:
    policy = CollectionsPolicy(repeat_every_days=0)
    wait = decide(400, {30: 30}, policy)
    assert wait.reason == "repeats_off"
    assert wait.next_on is None
    assert decide(-1, {-3: -3}, policy).next_on == on(0)
    assert decide(30, {30: 30}, policy).reason == "stage_sent_today"
    assert decide(30, {30: 30}, policy).next_on is None


def test_one_day_repeats_are_allowed_but_never_twice_a_day() -> None:
    policy = CollectionsPolicy(repeat_every_days=1)
    assert decide(31, {30: 30}, policy).offset == 31
    assert decide(31, {30: 30, 31: 31}, policy).reason == "stage_sent_today"


# --- properties over a whole calendar ------------------------------------------------------------


@pytest.mark.parametrize("pause", [(), range(3, 10), range(20, 50), range(-2, 40)])
def test_a_daily_run_over_four_months(pause: range | tuple[()]) -> None:
    """Day by day, with the DAG paused on ``pause`` days: the invariants hold on every day."""
    reached: dict[int, date] = {}
    for days in range(-10, 120):
        if days in pause:
            continue
        today = on(days)
        decision = decide_stage(DUE, today, reached, POLICY)
        if isinstance(decision, StageDecision):
            assert decision.offset not in reached  # each stage at most once
            assert all(decision.offset > o for o in reached)  # never backwards
            assert all(d < today for d in reached.values())  # never two a day
            assert decision.offset <= days  # never before its day
            if reached:
                last = max(reached.values())
                if decision.repeat:
                    assert (today - last).days >= POLICY.repeat_every_days
            reached[decision.offset] = today
        else:
            assert decision.reason in WAIT_REASONS
            assert decision.next_on is None or decision.next_on > today
    configured = [o for o in reached if o <= POLICY.final_stage.offset]
    assert configured[-1] == 30  # everyone reaches the final notice while unpaid
    repeats = sorted(o for o in reached if o > 30)
    assert all(b - a >= 15 for a, b in zip([30, *repeats], repeats, strict=False))


def test_wait_next_on_is_the_first_day_a_stage_is_decided() -> None:
    """``next_on`` is exact: nothing is due before it, and a stage is due on it."""
    histories = [{}, {-3: -3}, {1: 1}, {15: 20}, {30: 30}, {30: 44}, {30: 30, 45: 50}, {-3: 0}, {7: 9}]
    for history in histories:
        for days in range(-6, 70):
            result = decide(days, history)
            if not isinstance(result, StageWait) or result.next_on is None:
                continue
            for later in range((result.next_on - DUE).days - 1, days, -1):
                assert isinstance(decide(later, history), StageWait), (history, days, later)
            assert isinstance(decide((result.next_on - DUE).days, history), StageDecision), (history, days)


def test_custom_stages_only_after_the_due_date() -> None:
    policy = CollectionsPolicy(
        stages=(Stage(14, "late", "overdue", "a", "b"), Stage(7, "week", "overdue", "c", "d")), repeat_every_days=7
    )
    assert [s.offset for s in policy.stages] == [7, 14]  # sorted
    assert decide(0, policy=policy) == StageWait("before_first_stage", on(7), decide(0, policy=policy).detail)
    assert decide(7, policy=policy).offset == 7
    assert decide(21, {14: 14}, policy).repeat == 1
    assert upcoming_due_dates(policy, DUE) is None


def test_upcoming_due_dates_cover_the_pre_due_stages() -> None:
    today = date(2026, 7, 7)
    assert upcoming_due_dates(POLICY, today) == (today, today + timedelta(days=3))
    only_due_day = CollectionsPolicy(stages=(Stage(0, "due", "due", "a", "b"), Stage(5, "late", "overdue", "c", "d")))
    assert upcoming_due_dates(only_due_day, today) == (today, today)
    week_ahead = CollectionsPolicy(stages=(Stage(-7, "early", "courtesy", "a", "b"), Stage(-2, "soon", "courtesy", "c", "d")))
    assert upcoming_due_dates(week_ahead, today) == (today, today + timedelta(days=7))


def test_docstring_examples() -> None:
    result = doctest.testmod(zoho_whatsapp.rules.stages)
    assert result.attempted > 0
    assert result.failed == 0
