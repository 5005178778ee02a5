"""Which reminder stage an invoice is due today, given the stages it has already reached.

Stages are IST calendar days relative to the due date (-3, 0, +1, +7, +15, +30 by default),
then a repeat every ``repeat_every_days`` after the last one. The rules:

* each stage at most once per invoice;
* a stage missed (the DAG was paused, a backfill) is caught up once: only the most advanced
  stage whose day has come is sent, the missed ones in between never are;
* never a stage older than (or equal to) the latest one reached;
* never two stages on one day, nor one on a day before a stage already reached (a backfill
  running behind a later run);
* repeats come ``repeat_every_days`` after the latest reminder of the invoice, not on a fixed
  calendar, so a late final notice is not followed by a repeat the next morning.

>>> from zoho_whatsapp.rules.policy import CollectionsPolicy
>>> decide_stage(date(2026, 7, 1), date(2026, 7, 9), {}, CollectionsPolicy()).key  # 8 days late
'+7'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from zoho_whatsapp.rules.policy import CollectionsPolicy, Stage, stage_key

__all__ = ["WAIT_REASONS", "StageDecision", "StageWait", "decide_stage", "upcoming_due_dates"]

WAIT_REASONS = (
    "before_first_stage",  # not yet at the first stage's day
    "stage_sent_today",  # the invoice already reached a stage today
    "stage_sent_later",  # it reached a stage on a later day than this one (a backfill behind)
    "awaiting_next_stage",  # its latest stage is reached; the next one's day has not come
    "repeats_off",  # the last stage is reached and repeat_every_days is 0
)


@dataclass(frozen=True)
class StageDecision:
    """An invoice is due ``stage`` today.

    ``offset`` identifies this occurrence for the ledger: the stage's own offset, or for a repeat
    the days past due on the day it is sent (always above every offset reached before).
    """

    stage: Stage  # the configured stage whose templates and tone apply (the last one for repeats)
    offset: int
    days_from_due: int  # today - due date, in IST calendar days
    repeat: int = 0  # 0 for a configured stage, n for the n-th repeat after the last one
    skipped: tuple[int, ...] = ()  # configured stages missed and never to be sent

    @property
    def key(self) -> str:
        return stage_key(self.offset)

    @property
    def late_by_days(self) -> int:
        """How many days after its own day a caught-up stage goes out (0: on time)."""
        return self.days_from_due - self.offset


@dataclass(frozen=True)
class StageWait:
    """No stage today, why (one of ``WAIT_REASONS``) and the earliest IST day one could be due."""

    reason: str
    next_on: date | None
    detail: str = ""


def decide_stage(
    due_date: date, today: date, reached: Mapping[int, date], policy: CollectionsPolicy
) -> StageDecision | StageWait:
    """The stage ``due_date``'s invoice is due on ``today`` (IST), or why none is.

    ``reached`` maps the offset of every stage occurrence the invoice has reached (sent, or
    possibly sent) to the IST day it was reached.
    """
    days = (today - due_date).days
    latest = max(reached) if reached else None
    last_on = max(reached.values()) if reached else None
    if last_on is not None and last_on >= today:
        reason = "stage_sent_today" if last_on == today else "stage_sent_later"
        return _wait(reason, due_date, today, reached, policy, f"stage {stage_key(latest)} reached on {last_on}")

    final = policy.final_stage
    if latest is None or latest < final.offset:
        pending = [s for s in policy.stages if latest is None or s.offset > latest]
        due_now = [s for s in pending if s.offset <= days]
        if due_now:
            return StageDecision(due_now[-1], due_now[-1].offset, days, 0, tuple(s.offset for s in due_now[:-1]))
        reason = "before_first_stage" if latest is None else "awaiting_next_stage"
        return _wait(reason, due_date, today, reached, policy, f"{days} day(s) from the due date")

    if policy.repeat_every_days == 0:
        return StageWait("repeats_off", None, f"the last stage {stage_key(latest)} was reached on {last_on}")
    assert last_on is not None  # latest is not None here, so reached is not empty
    if today >= last_on + timedelta(days=policy.repeat_every_days) and days > latest:
        repeat = sum(1 for offset in reached if offset > final.offset) + 1
        return StageDecision(final, days, days, repeat)
    return _wait("awaiting_next_stage", due_date, today, reached, policy, f"last reminder on {last_on}")


def _wait(
    reason: str, due_date: date, today: date, reached: Mapping[int, date], policy: CollectionsPolicy, detail: str
) -> StageWait:
    """The wait with the earliest later day on which ``decide_stage`` could decide a stage."""
    latest = max(reached) if reached else None
    last_on = max(reached.values()) if reached else None
    floor = max(today, last_on) + timedelta(days=1) if last_on is not None else today + timedelta(days=1)
    final = policy.final_stage
    if latest is None or latest < final.offset:
        first_pending = next(s for s in policy.stages if latest is None or s.offset > latest)
        return StageWait(reason, max(floor, due_date + timedelta(days=first_pending.offset)), detail)
    if policy.repeat_every_days == 0:
        return StageWait(reason, None, detail)
    assert last_on is not None
    next_on = max(floor, last_on + timedelta(days=policy.repeat_every_days), due_date + timedelta(days=latest + 1))
    return StageWait(reason, next_on, detail)


def upcoming_due_dates(policy: CollectionsPolicy, today: date) -> tuple[date, date] | None:
    """The due dates (first, last; inclusive) of not-yet-overdue invoices a stage may be due for today.

    Stages at or before the due date need invoices Zoho does not list as overdue: list them with
    ``status=unpaid`` and ``due_date_start``/``due_date_end``. ``None`` when no stage comes before
    the day after the due date. A pre-due stage missed is caught up until the due date, so the
    range starts today.
    """
    leads = [-s.offset for s in policy.stages if s.offset <= 0]
    if not leads:
        return None
    return today, today + timedelta(days=max(leads))
