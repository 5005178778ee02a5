"""A thread-safe pacing limiter: N sends per second, evenly spaced, shared by a batch's threads."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """Hand out send slots at most ``rate`` per second.

    Slots are spaced ``1/rate`` apart rather than released in bursts, so a sliding one-second
    window at the provider never sees more than ``rate`` requests.

    >>> limiter = RateLimiter(20)
    >>> limiter.acquire()  # returns once this thread may send
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - now
        if delay > 0:
            time.sleep(delay)

    def pause(self, seconds: float) -> None:
        """Push every future slot back, after the provider said we are too fast."""
        with self._lock:
            self._next = max(self._next, time.monotonic() + seconds)
