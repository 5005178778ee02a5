"""Go-live: until a person switches the installation live, the scheduler's own runs only rehearse.

Unpausing the reminder DAG makes the scheduler start the latest 09:00 run at once (catchup is off,
so it runs the most recent slot), and the trigger form's "unpause on trigger" box is ticked by
default: a new installation would send today's real reminders before anyone looked at a dry run.
So a **scheduled** run is a dry run (renders and validates every message, sends none) until the
Airflow Variable ``zoho_whatsapp_go_live`` is ``true``. A run a person starts (Trigger, backfill)
does what its ``dry_run`` param says.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

GO_LIVE_VARIABLE = "zoho_whatsapp_go_live"
LIVE_VALUES = frozenset({"true", "yes", "on", "1"})
HOW_TO_GO_LIVE = (
    f"after checking a dry run's summary, go live: Admin -> Variables -> {GO_LIVE_VARIABLE} = true "
    f"(or `airflow variables set {GO_LIVE_VARIABLE} true`)"
)


@dataclass(frozen=True)
class RunMode:
    """Whether one run sends, and the sentence its log and summary give as the reason."""

    dry_run: bool
    live: bool  # the installation, not this run
    why: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_live(value: object) -> bool:
    """The Variable's value as a switch: ``true``/``yes``/``on``/``1`` (any case) is live, anything else not.

    >>> is_live("True"), is_live(None), is_live("false")
    (True, False, False)
    """
    return str(value or "").strip().lower() in LIVE_VALUES


def run_mode(*, requested_dry_run: bool, run_type: str, go_live: object) -> RunMode:
    """Decide once per run, at its start, whether it sends.

    >>> run_mode(requested_dry_run=False, run_type="scheduled", go_live=None).dry_run
    True
    >>> run_mode(requested_dry_run=False, run_type="manual", go_live=None).dry_run
    False
    """
    live = is_live(go_live)
    if requested_dry_run:
        return RunMode(True, live, "dry run: the run's dry_run param is true; nothing is sent")
    if run_type == "scheduled" and not live:
        return RunMode(True, False, (
            f"dry run: this installation is not live yet (Variable {GO_LIVE_VARIABLE} is not true), so "
            f"scheduled runs render and validate every message and send none; {HOW_TO_GO_LIVE}"
        ))
    if live:
        return RunMode(False, True, "live: messages are sent")
    return RunMode(False, False, (
        f"live: this {run_type} run sends, as its dry_run param says; scheduled runs stay dry runs until "
        f"the Variable {GO_LIVE_VARIABLE} is true"
    ))
