"""Send one batch of planned ledger rows: concurrent, paced, and exactly once."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, asdict, dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException
from sqlalchemy.engine import Connection

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


class Settler:
    """Writes how sends ended, the outcomes of threads settling at the same moment in one transaction.

    ``settle`` returns once its outcome is written: the thread that gets the write lock writes every
    outcome waiting, its own and the others'. Nothing waits for a timer, so a crash leaves no sent
    message unrecorded that is not in a thread's hands.

    >>> settler = Settler(ledger)
    >>> settler.settle(row_id, token, "sent", wamid=wamid)
    """

    def __init__(self, ledger: SendLedger, connection: Connection | None = None) -> None:
        self.ledger = ledger
        self.connection = connection
        self._pending: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def settle(self, row_id: int, claim_token: str, status: str, **outcome: Any) -> None:
        with self._pending_lock:
            self._pending.append({"row_id": row_id, "claim_token": claim_token, "status": status, **outcome})
        with self._write_lock:  # a writer before us may have written ours already
            with self._pending_lock:
                outcomes, self._pending = self._pending, []
            if outcomes:
                self.ledger.settle_many(outcomes, connection=self.connection)


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
        self._claim_lock = threading.Lock()
        self._waiting_lock = threading.Lock()
        self._waiting = 0
        self._todo: deque[dict[str, Any]] = deque()
        self._claimed: deque[tuple[dict[str, Any], str]] = deque()
        self._settles = Settler(self.ledger)
        self._claim_connection: Connection | None = None
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
        self._todo = deque(pair_rate_order(todo, self.limiter.interval, self.pair_interval))
        # Claims and settles each hold a connection for the batch (they take turns under their locks).
        claim_connection, settle_connection = self.ledger.engine.connect(), self.ledger.engine.connect()
        self._claim_connection, self._settles = claim_connection, Settler(self.ledger, settle_connection)
        try:
            with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="whatsapp-send") as pool:
                workers = [pool.submit(self._work) for _ in range(self.max_workers)]
                try:
                    for worker in workers:
                        worker.result()
                except BaseException:
                    # Killed (SIGTERM, timeout): let in-flight sends settle, start no new one.
                    self._stop.set()
                    log.warning("interrupted: finishing the sends in flight, leaving the rest planned")
                    raise
        finally:
            try:
                self._release_claimed()
            finally:
                claim_connection.close()
                settle_connection.close()
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

    def _work(self) -> None:
        """One sending thread: take a claimed message, send it, settle it; until none is left."""
        while (claimed := self._next_claimed()) is not None:
            row, token = claimed
            try:
                self._send_claimed(row, token)
            finally:
                self._recipient_done(row["recipient"])

    def _next_claimed(self) -> tuple[dict[str, Any], str] | None:
        # Group commit: the thread that gets the lock claims, in one transaction, a message for every
        # thread waiting for one at that moment, itself included. A message is claimed only once a
        # thread is there to send it, so a crash leaves no more `unknown` than there are threads.
        with self._waiting_lock:
            self._waiting += 1
        try:
            while True:
                with self._claim_lock:
                    if self._stop.is_set():
                        return None
                    if self._claimed:
                        return self._claimed.popleft()
                    chunk = self._take_ready(1 if self.before_claim is not None else self._waiting)
                    if chunk:
                        self._claim(chunk)
                        continue
                    if not self._todo:
                        return None
                    wait = self._next_ready_in()
                time.sleep(wait)
        finally:
            with self._waiting_lock:
                self._waiting -= 1

    def _take_ready(self, limit: int) -> list[dict[str, Any]]:
        """The next rows (up to ``limit``) whose number may get a message now, marked in flight.

        Meta measures the pair rate where the requests arrive, so the next message to a number
        waits for the previous one's answer and then the whole interval: a request delayed on a
        busy machine can never land closer than the interval to the one after it.
        """
        now, taken, kept = time.monotonic(), [], []
        while self._todo and len(taken) < limit and len(kept) < 4 * limit:
            if self._stop_at is not None and window_now() >= self._stop_at:  # read before each claim
                self._count(HELD_FOR_WINDOW, len(self._todo) + len(kept))
                self._todo.clear()
                return taken
            row = self._todo.popleft()
            recipient = row["recipient"]
            with self._pair_lock:
                ready = recipient not in self._in_flight and self._next_for_recipient.get(recipient, now) <= now
                if ready:
                    self._in_flight.add(recipient)
            (taken if ready else kept).append(row)
        self._todo.extendleft(reversed(kept))  # their turn comes when their number is free
        return taken

    def _next_ready_in(self) -> float:
        with self._pair_lock:
            now = time.monotonic()
            waits = [self._next_for_recipient.get(r["recipient"], now) - now for r in islice(self._todo, 64)
                     if r["recipient"] not in self._in_flight]
        return min(max(min(waits, default=0.005), 0.005), 0.5)

    def _claim(self, rows: list[dict[str, Any]]) -> None:
        wanted: list[dict[str, Any]] = []
        for row in rows:
            if self.before_claim is not None:
                fresh = self.before_claim(row)
                if fresh is None:  # nothing left to remind (paid since the fetch): recorded by before_claim
                    self._count("skipped_paid_since_fetch")
                    self._recipient_done(row["recipient"])
                    continue
                row = fresh
            wanted.append(row)
        token = uuid.uuid4().hex
        claims = self.ledger.claim_many(
            [row["id"] for row in wanted], self.run, token, min_days_between=self.min_days_between,
            recipient_cap=self.recipient_cap, not_on_whatsapp_days=self._not_on_whatsapp_days,
            connection=self._claim_connection,
        )
        for row, claim in zip(wanted, claims, strict=True):
            if claim.claimed:
                self._claimed.append((row, token))
                continue
            self._recipient_done(row["recipient"])
            if claim.reason == RECIPIENT_CAP:
                assert self.recipient_cap is not None
                log.warning("%s to %s not sent: that number already had %d alert(s) within the hour",
                            row["invoice_number"], row["phone_masked"], self.recipient_cap.limit)
            elif claim.reason in (OPTED_OUT, NOT_ON_WHATSAPP):
                log.info("%s to %s not sent: %s since it was planned", row["invoice_number"], row["phone_masked"],
                         claim.reason)
            self._count(_CLAIM_REFUSALS.get(claim.reason, "already_taken"))

    def _release_claimed(self) -> None:
        """Claimed but not sent when the batch stopped: back to ``planned`` (nothing left for Meta)."""
        while self._claimed:
            row, token = self._claimed.popleft()
            self._settles.settle(row["id"], token, "planned", reason="stopped", error_message="run stopped before sending")
            self._recipient_done(row["recipient"])
            self._count("released")

    def _send_claimed(self, row: dict[str, Any], token: str) -> None:
        try:
            body = self._body(row)
        except (TemplateError, KeyError, ValueError) as exc:
            self._settles.settle(row["id"], token, "failed", reason="template_error", error_message=str(exc))
            self._count("failed")
            return
        attempt = 0
        while True:
            if self._stop.is_set():
                self._settles.settle(row["id"], token, "planned", reason="stopped", error_message="run stopped before sending")
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
                self._settles.settle(row["id"], token, "unknown", reason="client_error", error_message=repr(exc)[:500])
                self._count("unknown")
                log.exception("unexpected error sending %s", row["invoice_number"])
                return
            self._settles.settle(row["id"], token, "sent", wamid=wamid)
            self._count("sent")
            return

    def _settle_error(self, row: dict[str, Any], token: str, exc: WhatsAppSendError) -> None:
        number = row["invoice_number"]
        if exc.outcome is Outcome.RETRY_LATER:
            self._settles.settle(row["id"], token, "planned", reason="retry_later", error_code=exc.code, error_message=str(exc))
            self._count("deferred")
            self._count(f"deferred_code_{exc.code}")
        elif exc.outcome is Outcome.UNKNOWN:
            self._settles.settle(row["id"], token, "unknown", reason="no_answer", error_code=exc.code, error_message=str(exc))
            self._count("unknown")
            log.warning("%s to %s: outcome unknown (%s); recorded, not resent", number, row["phone_masked"], exc)
        elif exc.outcome is Outcome.STOP_RUN:
            self._settles.settle(row["id"], token, "planned", reason="stopped", error_code=exc.code, error_message=str(exc))
            self._count("released")
            with self._count_lock:
                if self._result.stop_error is None:
                    self._result.stop_error = exc
            self._stop.set()
            log.error("stopping the batch: %s", exc)
        else:
            self._settles.settle(row["id"], token, "failed", reason="whatsapp_error", error_code=exc.code, error_message=str(exc))
            self._count("failed")
            log.warning("%s to %s failed permanently: %s", number, row["phone_masked"], exc)

    def _body(self, row: dict[str, Any]) -> dict[str, Any]:
        spec = self.templates[row["template_name"]]
        params = json.loads(row["parameters"] or "{}")
        opaque = callback_data(row["organization_id"], row["kind"], row["invoice_id"], row["occasion"])
        return build_template_message(spec, row["recipient"], params, language=row["template_language"], opaque=opaque)

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

