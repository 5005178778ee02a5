"""Opt-in notes in Zoho Books after a reminder went out, so the accounts team sees it where it works.

"WhatsApp reminder sent to +91 98XXXXXX45 for INV-000138, INV-000139, stage +7" is added as an
internal comment (never shown to the customer). The contract has no way to write a comment on a
contact (``/contacts/{id}/comments`` is read-only in contacts.yml), so the note goes on the
message's first invoice with ``POST /invoices/{id}/comments`` and names every invoice of the
message: one write per message, whatever the number of invoices.

Writes spend the organization's daily API quota, which reads need too. So this is off unless the
caller makes a :class:`ZohoComments`, every write is paced with the hook's other calls within
Zoho's 100 requests a minute, writing stops while fewer than ``reserve_calls`` of the day's quota
would be left, and Zoho's "daily quota exhausted" (:class:`ZohoQuotaExhausted`) stops it for good, never retried
(one :class:`ZohoComments` serves one send task: a later task that day makes at most one more
attempt, which Zoho refuses). A note that cannot be written is counted and
logged, never raised: the message it describes has been sent already.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

from zoho_whatsapp.ui.privacy import scrub
from zoho_whatsapp.zoho.errors import ZohoError, ZohoQuotaExhausted
from zoho_whatsapp.zoho.hook import RequestPacer, ZohoBooksHook

__all__ = [
    "DEFAULT_DAILY_QUOTA",
    "DEFAULT_RESERVE_CALLS",
    "FAILED",
    "QUOTA_EXHAUSTED",
    "QUOTA_RESERVE",
    "ZohoComments",
    "reminder_note",
]

log = logging.getLogger(__name__)

DEFAULT_DAILY_QUOTA = 1000  # the Free plan's; set the organization's plan (2000, 5000, 10000)
DEFAULT_RESERVE_CALLS = 200  # kept for the day's reads: invoice alerts, re-runs, the live-balance re-reads
MAX_NAMED_INVOICES = 50  # a note naming more says "and N more": the reader wants the gist, not a ledger

# Why a note was not written (ZohoComments.not_written's keys).
QUOTA_RESERVE = "quota_reserve"  # writing would eat into the calls kept for reads
QUOTA_EXHAUSTED = "quota_exhausted"  # ZohoQuotaExhausted today
FAILED = "failed"  # any other Zoho error; the reminder itself is unaffected

def reminder_note(phone_masked: str, invoice_numbers: Sequence[str], stage_key: str) -> str:
    """The comment's text; the number is masked again in case an unmasked one was passed.

    >>> reminder_note("+91 98XXXXXX45", ["INV-000138", "INV-000139"], "+7")
    'WhatsApp reminder sent to +91 98XXXXXX45 for INV-000138, INV-000139, stage +7'
    >>> reminder_note("+919820012345", ["INV-1"], "-3")
    'WhatsApp reminder sent to +91XXXXXXXX45 for INV-1, stage -3'
    """
    numbers = [str(n) for n in invoice_numbers]
    named = ", ".join(numbers[:MAX_NAMED_INVOICES])
    if len(numbers) > MAX_NAMED_INVOICES:
        named += f" and {len(numbers) - MAX_NAMED_INVOICES} more"
    return f"WhatsApp reminder sent to {scrub(phone_masked, limit=40)} for {named}, stage {stage_key}"


class ZohoComments:
    """Write reminder notes through ``hook``, within the rate limit and the day's quota.

    :param hook: the hook of the send path; its calls are paced together with the notes (one
        :class:`~zoho_whatsapp.zoho.hook.RequestPacer` per hook, created here if it has none).
    :param reserve_calls: calls of the day's quota that notes must leave unspent.
    :param daily_quota: the organization's daily API calls (plan: Free 1000, Standard 2000,
        Professional 5000, Premium and up 10000).
    :param calls_used_before: calls already spent today elsewhere that the caller knows of (the
        run's fetch task, for instance); this hook's own calls are counted as they happen.
    :param requests_per_minute: Zoho's per-organization limit (``rate_window_seconds`` long).

    ``written`` counts notes written, ``not_written`` why the others were not; ``stopped`` says
    why writing stopped for good (``None`` while it goes on).
    """

    def __init__(
        self,
        hook: ZohoBooksHook,
        *,
        reserve_calls: int = DEFAULT_RESERVE_CALLS,
        daily_quota: int = DEFAULT_DAILY_QUOTA,
        calls_used_before: int = 0,
        requests_per_minute: int = 100,
        rate_window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if reserve_calls < 0 or daily_quota < 1 or calls_used_before < 0:
            raise ValueError("reserve_calls and calls_used_before must be >= 0 and daily_quota >= 1")
        self.hook = hook
        self.reserve_calls = reserve_calls
        self.daily_quota = daily_quota
        self.calls_used_before = calls_used_before
        if hook.pacer is None:
            hook.pacer = RequestPacer(requests_per_minute, rate_window_seconds, clock=clock, sleep=sleep)
        self.written = 0
        self.not_written: Counter[str] = Counter()
        self.stopped: str | None = None

    @property
    def calls_left_today(self) -> int:
        """The day's quota minus what is known to be spent (``calls_used_before`` + this hook's calls)."""
        return self.daily_quota - self.calls_used_before - self.hook.api_calls

    def note_reminder(
        self,
        customer_id: str,
        phone_masked: str,
        invoice_numbers: Sequence[str],
        stage_key: str,
        *,
        invoice_ids: Sequence[str] | None = None,
    ) -> bool:
        """Add the note for one sent message; ``True`` when Zoho stored it.

        ``invoice_ids`` (same order as ``invoice_numbers``) saves a read: without it the first
        invoice is looked up by its number, which costs one more call.
        """
        if not invoice_numbers:
            raise ValueError(f"customer {customer_id}: a reminder note needs at least one invoice number")
        reason = self._stop_reason(calls_needed=1 if invoice_ids else 2)
        if reason is not None:
            self.not_written[reason] += 1
            return False
        text = reminder_note(phone_masked, invoice_numbers, stage_key)
        try:
            invoice_id = str(invoice_ids[0]) if invoice_ids else self._invoice_id(str(invoice_numbers[0]))
            if invoice_id is None:
                log.warning("customer %s: invoice %s not found in Zoho Books; no note written",
                            customer_id, invoice_numbers[0])
                self.not_written[FAILED] += 1
                return False
            self.hook.request(
                "POST", f"invoices/{invoice_id}/comments",
                json={"description": text, "show_comment_to_clients": False},
            )
        except ZohoQuotaExhausted:
            self._exhausted()
            self.not_written[QUOTA_EXHAUSTED] += 1
            return False
        except ZohoError as exc:
            log.warning("customer %s: could not add the reminder note in Zoho Books: %s", customer_id, exc)
            self.not_written[FAILED] += 1
            return False
        self.written += 1
        return True

    def summary(self) -> dict[str, object]:
        """What a run report shows: notes written, the ones not written by reason, and why it stopped."""
        return {"written": self.written, "not_written": dict(self.not_written), "stopped": self.stopped}

    def _stop_reason(self, *, calls_needed: int) -> str | None:
        if self.stopped is not None:
            return self.stopped
        if self.calls_left_today - calls_needed < self.reserve_calls:
            self.stopped = QUOTA_RESERVE
            log.warning(
                "stopping Zoho Books reminder notes: %d of the day's %d API calls are left and %d are kept in "
                "reserve (%d note(s) written)", self.calls_left_today, self.daily_quota, self.reserve_calls,
                self.written,
            )
            return self.stopped
        return None

    def _exhausted(self) -> None:
        self.stopped = QUOTA_EXHAUSTED
        log.warning("Zoho Books says the daily API quota is spent: no more reminder notes today "
                    "(%d written)", self.written)

    def _invoice_id(self, invoice_number: str) -> str | None:
        row = self.hook.find_invoice(invoice_number)
        return str(row["invoice_id"]) if row and row.get("invoice_id") else None
