"""A thread-safe pacing limiter: N sends per second, evenly spaced, shared by a batch's threads."""

from __future__ import annotations

import threading
import time

# How much later than its slot a request may reach the provider (thread wake-up, scheduling, the
# network). Meta counts messages per sliding second at its end; slots spaced exactly 1/rate apart
# put rate + 1 requests into one second as soon as one of them is a little late (measured: a few
# ThroughputExceeded errors per thousand messages with four batches sharing 80/s). Spacing them (1 + JITTER)/rate
# apart keeps every sliding second at or under rate for lateness up to JITTER, for about 5% less
# than the nominal rate.
JITTER_SECONDS = 0.05


class RateLimiter:
    """Hand out send slots at most ``rate`` per second, as the provider will count them.

    Slots are spaced ``(1 + jitter) / rate`` apart rather than released in bursts, so a sliding
    one-second window at the provider never sees more than ``rate`` requests, even when some
    arrive up to ``jitter`` seconds after their slot. Several limiters whose rates add up to the
    provider's cap (the parallel batches of a run) therefore never exceed the cap together. The
    first slot comes one interval after the limiter is created, so a limiter created as another
    stops (the next task taking a pool slot) never sends within an interval of the other's last send.

    >>> limiter = RateLimiter(20)
    >>> limiter.acquire()  # returns once this thread may send
    """

    def __init__(self, rate: float, *, jitter: float = JITTER_SECONDS) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if jitter < 0:
            raise ValueError(f"jitter must not be negative, got {jitter}")
        self.rate = rate
        self.interval = (1.0 + jitter) / rate
        # The first slot is one interval after creation, not at once: tasks sharing a number take
        # turns in the whatsapp_sends pool, and a task that gets a slot the moment another ends
        # must not send right after that task's last send (measured: 21 msg/s under a 20/s cap).
        self._last = time.monotonic()
        self._lock = threading.Lock()
        # Only the thread next in turn sleeps until the next slot; the others block on this lock in
        # the kernel. Without it every waiting thread (32 per batch) woke at each slot to find it
        # taken: a thundering herd that cost CPU and delayed the grant it competed for.
        self._turn = threading.Lock()

    def acquire(self) -> None:
        # A slot is granted only when it is taken, an interval after the previous grant, never
        # booked ahead: after a stall (a busy CPU, a paused process) the waiting threads are let
        # through one interval apart instead of all at once, so a backlog is never sent faster
        # than the cap.
        with self._turn:
            while True:
                with self._lock:
                    now = time.monotonic()
                    wait = self._last + self.interval - now
                    if wait <= 0:
                        self._last = now
                        return
                time.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Push every future slot back, after the provider said we are too fast."""
        with self._lock:
            self._last = max(self._last, time.monotonic() + seconds - self.interval)
