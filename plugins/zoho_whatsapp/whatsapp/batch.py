"""Send one batch of planned ledger rows: concurrent, paced, and exactly once."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, asdict, dataclass, field
from datetime import datetime
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from zoho_whatsapp.ledger import RunInfo, SendKey, SendLedger
from zoho_whatsapp.ledger.delivery import NOT_ON_WHATSAPP, OPTED_OUT, callback_data
from zoho_whatsapp.ledger.ledger import DEFAULT_NOT_ON_WHATSAPP_DAYS, RECIPIENT_CAP, RecipientCap
from zoho_whatsapp.rules.templates import TemplateError, TemplateSpec, build_template_message, render_text
from zoho_whatsapp.whatsapp.batching import pair_rate_order
from zoho_whatsapp.whatsapp.errors import Outcome, PairRateExceeded, ThroughputExceeded, WhatsAppSendError
from zoho_whatsapp.whatsapp.hook import WhatsAppHook
from zoho_whatsapp.whatsapp.rate_limit import RateLimiter
from zoho_whatsapp.whatsapp.window_wait import HELD_FOR_WINDOW
from zoho_whatsapp.whatsapp.window_wait import now as window_now

log = logging.getLogger(__name__)

_CLAIM_REFUSALS = {"cadence": "skipped_cadence", RECIPIENT_CAP: "skipped_recipient_cap",
                   OPTED_OUT: "skipped_opted_out", NOT_ON_WHATSAPP: "skipped_not_on_whatsapp"}
PAIR_INTERVAL = PairRateExceeded.pair_interval_seconds
THROUGHPUT_WINDOW = 1.0  # Meta counts a number's throughput per sliding second


@dataclass(frozen=True)
class BatchRef:
    """What XCom carries between planning and sending: where the rows are, never the rows."""

    key: SendKey
    batch: int
    parallel_share: int = 1  # how many batches share the messages_per_second budget
    # Planned in this batch, and batches in the run: only for the name the UI shows, not its identity.
    messages: int = field(default=0, compare=False)
    batches: int = field(default=0, compare=False)
    # The window planning used for numbers not on WhatsApp; the claim checks again with the same one.
    not_on_whatsapp_days: float = field(default=DEFAULT_NOT_ON_WHATSAPP_DAYS, compare=False)
    # What planning decided by, for the send (reminders): the customer cadence each claim checks,
    # the DAG params that override the policy file (send window, live balance), when the invoices
    # were read from Zoho (ISO, UTC) and through which connection to read them again.
    min_days_between: int = field(default=0, compare=False)
    policy_overrides: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    fetched_at: str | None = field(default=None, compare=False)
    zoho_conn_id: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Flat, for XCom and the task's log: organization_id, kind, occasion, batch, parallel_share, messages,
        batches, not_on_whatsapp_days, min_days_between, policy_overrides, fetched_at, zoho_conn_id."""
        return {**asdict(self.key), "batch": self.batch, "parallel_share": self.parallel_share,
                "messages": self.messages, "batches": self.batches, "not_on_whatsapp_days": self.not_on_whatsapp_days,
                "min_days_between": self.min_days_between, "policy_overrides": dict(self.policy_overrides),
                "fetched_at": self.fetched_at, "zoho_conn_id": self.zoho_conn_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchRef:
        key = SendKey(str(data["organization_id"]), str(data["kind"]), str(data["occasion"]))
        return cls(key, int(data["batch"]), int(data.get("parallel_share", 1)), int(data.get("messages", 0)),
                   int(data.get("batches", 0)),
                   not_on_whatsapp_days=float(data.get("not_on_whatsapp_days", DEFAULT_NOT_ON_WHATSAPP_DAYS)),
                   min_days_between=int(data.get("min_days_between") or 0),
                   policy_overrides=dict(data.get("policy_overrides") or {}),
                   fetched_at=data.get("fetched_at"), zoho_conn_id=data.get("zoho_conn_id"))

    @property
    def label(self) -> str:
        """The mapped send task's name in the UI: ``batch 2/4 · 80 messages`` (batches count from 1)."""
        if not self.batches:  # planned before batches carried their size
            return f"batch {self.batch + 1}"
        return f"batch {self.batch + 1}/{self.batches} · {self.messages} message{'s' if self.messages != 1 else ''}"


@dataclass
class BatchResult:
    counts: Counter[str] = field(default_factory=Counter)
    stop_error: WhatsAppSendError | None = None

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


@dataclass(eq=False)
class BatchSender:
    """Claims each planned row in the ledger, sends it, settles it; the rest of the batch goes on.

    :param recipient_cap: at most this many messages of its kinds to one number within its window.
    :param retry_later_attempts: in-task retries of a send Meta refused with a retry-later code;
        after that the row is released to ``planned`` and the task fails so Airflow retries it.
    """

    hook: WhatsAppHook
    ledger: SendLedger
    templates: dict[str, TemplateSpec]
    run: RunInfo
    _: KW_ONLY
    messages_per_second: float = 20.0
    max_workers: int = 8
    min_days_between: int = 0
    recipient_cap: RecipientCap | None = None
    retry_later_attempts: int = 3
    backoff_seconds: float = 2.0
    pair_interval: float = PAIR_INTERVAL
    dry_run: bool = False
    # Called with a message's lead row right before its claim; returns the row to claim (the message
    # re-planned, e.g. with the current balance) or None when there is nothing left to send.
    before_claim: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.messages_per_second)
        self.max_workers = max(1, self.max_workers)
        self._stop = threading.Event()
        self._pair_lock = threading.Lock()
        self._next_for_recipient: dict[str, float] = {}
        self._in_flight: set[str] = set()
        self._result = BatchResult()
        self._count_lock = threading.Lock()
        self._done = 0
        self._total = 0
        self._not_on_whatsapp_days = DEFAULT_NOT_ON_WHATSAPP_DAYS

    def send(self, ref: BatchRef, *, stop_at: datetime | None = None) -> BatchResult:
        """``stop_at``: claim nothing from this moment on (the send window closes); the rest stays planned."""
        self._not_on_whatsapp_days = ref.not_on_whatsapp_days
        self._stop_at = stop_at
        self.min_days_between = max(self.min_days_between, ref.min_days_between)
        rows = self.ledger.batch_rows(ref.key, ref.batch)
        interrupted = self.ledger.mark_interrupted([r["id"] for r in rows if r["status"] == "sending"], self.run)
        if interrupted:
            log.warning(
                "%d message(s) were in flight when an earlier try died: recorded as 'unknown', NOT resent. "
                "Check them with `make audit`; set the resend_unknown param to force them.",
                interrupted,
            )
            self._count("interrupted_unknown", interrupted)
        # A message is its lead row; the other rows of a statement go with it.
        leads = [r for r in rows if r.get("message_id") in (None, r["id"])]
        todo = [r for r in leads if r["status"] == "planned"]
        already = Counter(r["status"] for r in leads if r["status"] != "planned")
        log.info(
            "batch %s of %s/%s: %d to send, already settled: %s",
            ref.batch, ref.key.kind, ref.key.occasion, len(todo), dict(already) or "none",
        )
        if self.dry_run:
            return self._dry_run(todo)
        self._total = len(todo)
        ordered = pair_rate_order(todo, self.limiter.interval, self.pair_interval)
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="whatsapp-send") as pool:
            try:
                for _ in pool.map(self._send_one, ordered):
                    pass
            except BaseException:
                # Killed (SIGTERM, timeout): let in-flight sends settle, start no new one.
                self._stop.set()
                log.warning("interrupted: finishing the sends in flight, leaving the rest planned")
                raise
        result = self._result
        log.info("batch %s finished: %s", ref.batch, result.as_dict())
        if result.stop_error is not None:
            raise AirflowFailException(
                f"stopped sending: {result.stop_error}. {result.counts.get('released', 0)} message(s) released "
                "unsent; re-run after fixing the connection."
            )
        if result.counts.get("deferred"):
            raise AirflowException(
                f"{result.counts['deferred']} message(s) were refused with retry-later codes "
                f"({self._deferred_codes()}); they stay planned and the next try sends them"
            )
        return result

    # -- one message ------------------------------------------------------------------------------

    def _send_one(self, row: dict[str, Any]) -> None:
        if self._stop.is_set():
            return
        if self._stop_at is not None and window_now() >= self._stop_at:
            self._count(HELD_FOR_WINDOW)
            return
        self._wait_for_recipient(row["recipient"])
        try:
            self._claim_and_send(row)
        finally:
            self._recipient_done(row["recipient"])

    def _claim_and_send(self, row: dict[str, Any]) -> None:
        if self.before_claim is not None:
            fresh = self.before_claim(row)
            if fresh is None:  # nothing left to remind (paid since the fetch): recorded by before_claim
                self._count("skipped_paid_since_fetch")
                return
            row = fresh
        token = uuid.uuid4().hex
        claim = self.ledger.claim(
            row["id"], self.run, token, min_days_between=self.min_days_between, recipient_cap=self.recipient_cap,
            not_on_whatsapp_days=self._not_on_whatsapp_days,
        )
        if not claim.claimed:
            if claim.reason == RECIPIENT_CAP:
                log.warning("%s to %s not sent: that number already had %d alert(s) within the hour",
                            row["invoice_number"], row["phone_masked"], self.recipient_cap.limit)
            elif claim.reason in (OPTED_OUT, NOT_ON_WHATSAPP):
                log.info("%s to %s not sent: %s since it was planned", row["invoice_number"], row["phone_masked"],
                         claim.reason)
            self._count(_CLAIM_REFUSALS.get(claim.reason, "already_taken"))
            return
        try:
            body = self._body(row)
        except (TemplateError, KeyError, ValueError) as exc:
            self.ledger.settle(row["id"], token, "failed", reason="template_error", error_message=str(exc))
            self._count("failed")
            return
        attempt = 0
        while True:
            if self._stop.is_set():
                self.ledger.settle(row["id"], token, "planned", reason="stopped", error_message="run stopped before sending")
                self._count("released")
                return
            self.limiter.acquire()
            try:
                wamid = self.hook.send_message(body)
            except WhatsAppSendError as exc:
                attempt += 1
                if exc.outcome is Outcome.RETRY_LATER and attempt <= self.retry_later_attempts:
                    if isinstance(exc, PairRateExceeded):
                        wait = self.pair_interval
                    elif isinstance(exc, ThroughputExceeded):
                        # Meta counts throughput per sliding second: a second's pause is back under the cap.
                        wait = min(self.backoff_seconds, THROUGHPUT_WINDOW) * 2 ** (attempt - 1)
                        self.limiter.pause(wait)
                    else:
                        wait = self.backoff_seconds * 2 ** (attempt - 1)
                    log.info("%s: %s; retrying in %.1fs", row["invoice_number"], exc, wait)
                    time.sleep(wait)
                    continue
                self._settle_error(row, token, exc)
                return
            except Exception as exc:  # a bug after the request may have left: never resend blindly
                self.ledger.settle(row["id"], token, "unknown", reason="client_error", error_message=repr(exc)[:500])
                self._count("unknown")
                log.exception("unexpected error sending %s", row["invoice_number"])
                return
            self.ledger.settle(row["id"], token, "sent", wamid=wamid)
            self._count("sent")
            return

    def _settle_error(self, row: dict[str, Any], token: str, exc: WhatsAppSendError) -> None:
        number = row["invoice_number"]
        if exc.outcome is Outcome.RETRY_LATER:
            self.ledger.settle(row["id"], token, "planned", reason="retry_later", error_code=exc.code, error_message=str(exc))
            self._count("deferred")
            self._count(f"deferred_code_{exc.code}")
        elif exc.outcome is Outcome.UNKNOWN:
            self.ledger.settle(row["id"], token, "unknown", reason="no_answer", error_code=exc.code, error_message=str(exc))
            self._count("unknown")
            log.warning("%s to %s: outcome unknown (%s); recorded, not resent", number, row["phone_masked"], exc)
        elif exc.outcome is Outcome.STOP_RUN:
            self.ledger.settle(row["id"], token, "planned", reason="stopped", error_code=exc.code, error_message=str(exc))
            self._count("released")
            with self._count_lock:
                if self._result.stop_error is None:
                    self._result.stop_error = exc
            self._stop.set()
            log.error("stopping the batch: %s", exc)
        else:
            self.ledger.settle(row["id"], token, "failed", reason="whatsapp_error", error_code=exc.code, error_message=str(exc))
            self._count("failed")
            log.warning("%s to %s failed permanently: %s", number, row["phone_masked"], exc)

    def _body(self, row: dict[str, Any]) -> dict[str, Any]:
        spec = self.templates[row["template_name"]]
        params = json.loads(row["parameters"] or "{}")
        opaque = callback_data(row["organization_id"], row["kind"], row["invoice_id"], row["occasion"])
        return build_template_message(spec, row["recipient"], params, language=row["template_language"], opaque=opaque)

    def _wait_for_recipient(self, recipient: str) -> None:
        # Meta measures the pair rate where the requests arrive, so the next message to a number
        # waits for the previous one's answer and then the whole interval: a request delayed on a
        # busy machine can never land closer than the interval to the one after it.
        while True:
            with self._pair_lock:
                now = time.monotonic()
                ready = self._next_for_recipient.get(recipient, now)
                if recipient not in self._in_flight and ready <= now:
                    self._in_flight.add(recipient)
                    return
            time.sleep(max(ready - now, 0.005))

    def _recipient_done(self, recipient: str) -> None:
        with self._pair_lock:
            self._in_flight.discard(recipient)
            self._next_for_recipient[recipient] = time.monotonic() + self.pair_interval

    def _count(self, key: str, n: int = 1) -> None:
        with self._count_lock:
            self._result.counts[key] += n
            if key in ("sent", "failed", "unknown", "deferred", "released"):
                self._done += n
                step = max(1, self._total // 10)
                if self._done % step == 0 or self._done == self._total:
                    log.info("progress: %d/%d settled %s", self._done, self._total, self._result.as_dict())

    def _deferred_codes(self) -> str:
        return ", ".join(
            f"{k.removeprefix('deferred_code_')}×{v}" for k, v in self._result.counts.items() if k.startswith("deferred_code_")
        )

    def _dry_run(self, todo: list[dict[str, Any]]) -> BatchResult:
        for i, row in enumerate(todo):
            body = self._body(row)  # proves the message would be accepted by the template rules
            if i < 5:
                spec = self.templates[row["template_name"]]
                text = render_text(spec, json.loads(row["parameters"]))
                log.info("dry run: would send to %s: %s", row["phone_masked"], text)
            del body
        self._count("would_send", len(todo))
        log.info("dry run: %d message(s) rendered, none sent", len(todo))
        return self._result

