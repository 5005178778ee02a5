"""Send one batch of planned ledger rows: concurrent, paced, and exactly once."""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk.exceptions import AirflowException, AirflowFailException

from zoho_whatsapp.ledger import RunInfo, SendLedger
from zoho_whatsapp.rules.templates import TemplateError, TemplateSpec, build_template_message, render_text
from zoho_whatsapp.whatsapp.errors import Outcome, WhatsAppSendError
from zoho_whatsapp.whatsapp.hook import WhatsAppHook
from zoho_whatsapp.whatsapp.rate_limit import RateLimiter

log = logging.getLogger(__name__)

PAIR_INTERVAL = 6.0  # Meta: one message per 6 s to the same recipient (code 131056)
THROUGHPUT_WINDOW = 1.0  # Meta: messages per second per number (code 130429 above it)


@dataclass(frozen=True)
class BatchRef:
    """What XCom carries between planning and sending: where the rows are, never the rows."""

    organization_id: str
    kind: str
    occasion: str
    batch: int
    parallel_share: int = 1  # how many batches share the messages_per_second budget

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BatchResult:
    counts: Counter[str] = field(default_factory=Counter)
    stop_error: WhatsAppSendError | None = None

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


class BatchSender:
    """Claims each planned row in the ledger, sends it, settles it; the rest of the batch goes on.

    :param retry_later_attempts: in-task retries of a send Meta refused with a retry-later code;
        after that the row is released to ``planned`` and the task fails so Airflow retries it.
    """

    def __init__(
        self,
        hook: WhatsAppHook,
        ledger: SendLedger,
        templates: dict[str, TemplateSpec],
        run: RunInfo,
        *,
        messages_per_second: float = 20.0,
        max_workers: int = 8,
        min_days_between: int = 0,
        retry_later_attempts: int = 3,
        backoff_seconds: float = 2.0,
        pair_interval: float = PAIR_INTERVAL,
        dry_run: bool = False,
    ) -> None:
        self.hook = hook
        self.ledger = ledger
        self.templates = templates
        self.run = run
        self.limiter = RateLimiter(messages_per_second)
        self.max_workers = max(1, max_workers)
        self.min_days_between = min_days_between
        self.retry_later_attempts = retry_later_attempts
        self.backoff_seconds = backoff_seconds
        self.pair_interval = pair_interval
        self.dry_run = dry_run
        self._stop = threading.Event()
        self._pair_lock = threading.Lock()
        self._next_for_recipient: dict[str, float] = {}
        self._result = BatchResult()
        self._count_lock = threading.Lock()
        self._done = 0
        self._total = 0

    def send(self, ref: BatchRef) -> BatchResult:
        rows = self.ledger.batch_rows(
            organization_id=ref.organization_id, kind=ref.kind, occasion=ref.occasion, batch=ref.batch
        )
        interrupted = self.ledger.mark_interrupted([r["id"] for r in rows if r["status"] == "sending"], self.run)
        if interrupted:
            log.warning(
                "%d message(s) were in flight when an earlier try died: recorded as 'unknown', NOT resent. "
                "Check them with `make audit`; set the resend_unknown param to force them.",
                interrupted,
            )
            self._count("interrupted_unknown", interrupted)
        todo = [r for r in rows if r["status"] == "planned"]
        already = Counter(r["status"] for r in rows if r["status"] != "planned")
        log.info(
            "batch %s of %s/%s: %d to send, already settled: %s",
            ref.batch, ref.kind, ref.occasion, len(todo), dict(already) or "none",
        )
        if self.dry_run:
            return self._dry_run(todo)
        self._total = len(todo)
        ordered = _pair_rate_order(todo, self.limiter.interval, self.pair_interval)
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
        self._wait_for_recipient(row["recipient"])
        token = uuid.uuid4().hex
        claim = self.ledger.claim(row["id"], self.run, token, min_days_between=self.min_days_between)
        if not claim.claimed:
            self._count("skipped_cadence" if claim.reason == "cadence" else "already_taken")
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
                    if exc.code == 131056:
                        wait = self.pair_interval
                    elif exc.code == 130429:
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
        opaque = f"{row['organization_id']}:{row['kind']}:{row['invoice_id']}:{row['occasion']}"
        return build_template_message(spec, row["recipient"], params, language=row["template_language"], opaque=opaque)

    def _wait_for_recipient(self, recipient: str) -> None:
        with self._pair_lock:
            now = time.monotonic()
            slot = max(now, self._next_for_recipient.get(recipient, now))
            self._next_for_recipient[recipient] = slot + self.pair_interval
        if slot > now:
            time.sleep(slot - now)

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


def _pair_rate_order(rows: list[dict[str, Any]], interval: float, pair_interval: float) -> list[dict[str, Any]]:
    """The send order in which Meta's pair rate (one message per recipient per 6 s) costs least.

    A recipient with k messages needs at least ``(k - 1) * pair_interval`` seconds, so the batch
    can end no sooner than its longest chain; the chain only stays that short if it starts at
    once and every later message goes out as soon as its spacing allows. This walks the batch's
    own clock, one send slot every ``interval`` seconds: at each slot the recipient allowed to
    send with the most messages left goes first, others fill the gaps. With one message per
    recipient it is plain row order.
    """
    queues: dict[str, deque[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        queues.setdefault(str(row.get("recipient") or ""), deque()).append(row)
    ready = [(-len(q), q[0]["id"], recipient) for recipient, q in queues.items()]
    heapq.heapify(ready)
    waiting: list[tuple[float, int, str]] = []  # (may send again at, next row id, recipient)
    clock = 0.0
    order: list[dict[str, Any]] = []
    while ready or waiting:
        while waiting and waiting[0][0] <= clock:
            _, _, recipient = heapq.heappop(waiting)
            left = queues[recipient]
            heapq.heappush(ready, (-len(left), left[0]["id"], recipient))
        if not ready:
            clock = waiting[0][0]
            continue
        _, _, recipient = heapq.heappop(ready)
        left = queues[recipient]
        order.append(left.popleft())
        if left:
            heapq.heappush(waiting, (clock + pair_interval, left[0]["id"], recipient))
        clock += interval
    return order
