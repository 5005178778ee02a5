"""What a WhatsApp Cloud API failure means for the message and for the run.

Decided on Meta's error ``code``, never on the HTTP status (throttling comes as 400 or 429).
"""

from __future__ import annotations

import enum

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class Outcome(enum.Enum):
    RETRY_LATER = "retry_later"  # the envelope proves nothing was sent: safe to send again later
    UNKNOWN = "unknown"  # the request may have been accepted: resending may duplicate
    STOP_RUN = "stop_run"  # credentials or account are broken: every further send fails too
    PERMANENT = "permanent"  # this message can never be sent as it is: record and move on


RETRY_LATER_CODES = frozenset({4, 80007, 130429, 131056, 131000, 131016})
STOP_RUN_CODES = frozenset({0, 190, 368, 131031, 133010})
PERMANENT_CODES = frozenset({100, 131026, 131047, 131051})


def classify(code: int | None) -> Outcome:
    """Map a Cloud API error code to what to do about it.

    >>> classify(130429)
    <Outcome.RETRY_LATER: 'retry_later'>
    >>> classify(132001)
    <Outcome.PERMANENT: 'permanent'>
    """
    if code is None:
        return Outcome.UNKNOWN
    if code in RETRY_LATER_CODES:
        return Outcome.RETRY_LATER
    if code in STOP_RUN_CODES:
        return Outcome.STOP_RUN
    if code in PERMANENT_CODES or 132000 <= code <= 132999:
        return Outcome.PERMANENT
    # An undocumented code still came in an error envelope, so Meta did not send the message;
    # treating it as permanent records it and keeps the batch going without risking a duplicate.
    return Outcome.PERMANENT


class WhatsAppSendError(AirflowException):
    """One send failed; ``outcome`` says whether it may be retried, must not be, or stops the run."""

    def __init__(
        self,
        message: str,
        *,
        outcome: Outcome,
        code: int | None = None,
        status: int | None = None,
        fbtrace_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.code = code
        self.status = status
        self.fbtrace_id = fbtrace_id


class WhatsAppConfigError(AirflowFailException):
    """The ``whatsapp_default`` connection is incomplete or its credentials are refused."""
