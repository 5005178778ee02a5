"""Meta's side of the webhooks: signed status events and replies POSTed to a callback URL.

Off until the setting ``callback_url`` is set (constructor, ``set_faults``, ``POST /_sandbox/faults``
or ``python -m sandbox --callback-url``). Then, a moment (``callback_delay_ms``) after each accepted
message, the sandbox POSTs what Meta would, one status per request, signed with ``webhook_secret``
(``X-Hub-Signature-256``):

* ``sent`` then ``delivered`` for every message, ``read`` as well for ``callback_read_percent`` of them;
* an asynchronous ``failed`` (code ``callback_failed_code``, 131026 "not on WhatsApp" by default)
  instead, for every message to the ``callback_failed_percent`` of numbers chosen by the seed
  (the same numbers every run; :meth:`Callbacks.fails` says which);
* ``callback_duplicate_percent`` of messages get one status twice, ``callback_reorder_percent``
  get theirs in reverse order (timestamps keep the real order, as Meta's do);
* ``callback_replies``: the recipient of the N-th delivered message replies with a text
  (by default the 2nd says "paid yesterday", the 5th "STOP"); a number that is not on WhatsApp
  cannot reply, so messages that fail asynchronously are not counted.

A POST answered with anything but 2xx (or not answered) is retried ``callback_retries`` times with
a growing pause, as Meta retries. :meth:`Callbacks.log` lists every event with its attempts.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from .faults import Faults

WORKERS = 4
GAP_SECONDS = 0.02  # between the statuses of one message
RETRY_BASE_SECONDS = 0.2


class Callbacks:
    """The queue of webhooks to POST, and the threads that POST them."""

    def __init__(self, faults: Faults, whatsapp: Any, seed: int) -> None:
        self.faults = faults
        self.whatsapp = whatsapp
        self.seed = seed
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = itertools.count(1)
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.reset()

    # -- public -----------------------------------------------------------------------------------
    def reset(self) -> None:
        with self._cond:
            self._queue.clear()
            self._log: list[dict[str, Any]] = []
            self._delivered = 0
            self._rng = random.Random(f"callbacks:{self.seed}")

    def log(self) -> list[dict[str, Any]]:
        """Every webhook scheduled so far: kind, wamid, status/text, whether a duplicate, attempts, HTTP status."""
        with self._cond:
            return [dict(e, attempts=list(e["attempts"])) for e in self._log]

    def pending(self) -> int:
        """Webhooks scheduled but not yet answered (or given up)."""
        with self._cond:
            return sum(1 for e in self._log if e["outcome"] == "pending")

    def fails(self, wa_id: str) -> bool:
        """Whether messages to this number fail asynchronously (decided by the seed and the number)."""
        share = int(self.faults.get("callback_failed_percent") or 0)
        digest = hashlib.sha256(f"{self.seed}:{wa_id}".encode()).digest()
        return int.from_bytes(digest[:4], "big") % 100 < share

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every scheduled webhook was answered or given up; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        with self._cond:
            self._stopping = False

    # -- scheduling (called by WhatsApp for every accepted message) ---------------------------------
    def on_accepted(self, record: dict[str, Any]) -> None:
        url = self.faults.get("callback_url")
        if not url:
            return
        delay = float(self.faults.get("callback_delay_ms") or 0) / 1000.0
        wa_id = record["wa_id"]
        now = time.time()
        with self._cond:
            rng = self._rng
            delivered = 0  # this message's place among the delivered ones: only those can be replied to
            if self.fails(wa_id):
                code = int(self.faults.get("callback_failed_code"))
                events = [("failed", int(now), code)]
            else:
                self._delivered += 1
                delivered = self._delivered
                events = [("sent", int(now), None), ("delivered", int(now) + 1, None)]
                if rng.randrange(100) < int(self.faults.get("callback_read_percent") or 0):
                    events.append(("read", int(now) + 2, None))
            if rng.randrange(100) < int(self.faults.get("callback_reorder_percent") or 0):
                events.reverse()
            duplicate = rng.randrange(100) < int(self.faults.get("callback_duplicate_percent") or 0)
            if duplicate:
                events.append(events[rng.randrange(len(events))])
            due = time.monotonic() + delay
            for index, (status, stamp, code) in enumerate(events):
                raw, headers = self.whatsapp.status_webhook_for(record, status, timestamp=stamp, error_code=code)
                self._schedule(due + index * GAP_SECONDS, url, raw, headers, {
                    "kind": "status", "wamid": record["wamid"], "wa_id": wa_id, "status": status,
                    "error_code": code, "timestamp": stamp, "duplicate": duplicate and index == len(events) - 1,
                })
            for rule in self.faults.get("callback_replies") or []:
                if delivered and int(rule["after"]) == delivered:
                    raw, headers = self.whatsapp.inbound_webhook(wa_id, str(rule["text"]))
                    self._schedule(due + (len(events) + 2) * GAP_SECONDS, url, raw, headers, {
                        "kind": "message", "wamid": record["wamid"], "wa_id": wa_id, "text": str(rule["text"]),
                        "duplicate": False,
                    })
            self._start_workers()

    def _schedule(self, due: float, url: str, raw: bytes, headers: dict[str, str], entry: dict[str, Any]) -> None:
        """Queue one POST (caller holds ``self._cond``)."""
        entry.update(seq=next(self._seq), url=url, attempts=[], outcome="pending", http_status=None,
                     scheduled_at=time.time(), first_post_at=None, answered_at=None)
        self._log.append(entry)
        heapq.heappush(self._queue, (due, entry["seq"], {"entry": entry, "raw": raw, "headers": headers, "try": 0}))
        self._cond.notify()

    def _start_workers(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < WORKERS:
            thread = threading.Thread(target=self._work, name=f"sandbox-callbacks-{len(self._threads)}", daemon=True)
            thread.start()
            self._threads.append(thread)

    # -- the POSTing threads -------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._queue or self._queue[0][0] > time.monotonic()):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._cond.wait(timeout=wait)
                if self._stopping:
                    return
                _, _, job = heapq.heappop(self._queue)
            self._post(job)

    def _post(self, job: dict[str, Any]) -> None:
        entry = job["entry"]
        started = time.time()
        with self._cond:
            entry["first_post_at"] = entry["first_post_at"] or started
        status: int | None = None
        error = None
        request = urllib.request.Request(entry["url"], data=job["raw"], headers=job["headers"], method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (OSError, ValueError) as exc:
            error = exc.__class__.__name__
        answered = time.time()
        retries = int(self.faults.get("callback_retries") or 0)
        with self._cond:
            entry["attempts"].append({"at": started, "status": status, "error": error,
                                      "ms": round((answered - started) * 1000, 2)})
            entry["http_status"] = status
            if status is not None and 200 <= status < 300:
                entry["outcome"], entry["answered_at"] = "delivered", answered
                return
            if job["try"] >= retries or self._stopping:
                entry["outcome"] = "given_up"
                return
            job["try"] += 1
            heapq.heappush(self._queue, (time.monotonic() + RETRY_BASE_SECONDS * 2 ** (job["try"] - 1),
                                         entry["seq"], job))
            self._cond.notify()
