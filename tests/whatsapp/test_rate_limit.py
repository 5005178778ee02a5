"""The limiter never lets a backlog out faster than its rate, even after the process stalls."""

from __future__ import annotations

import threading
import time

from zoho_whatsapp.whatsapp import rate_limit
from zoho_whatsapp.whatsapp.rate_limit import RateLimiter


def _grants(limiter: RateLimiter, threads: int, per_thread: int) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(per_thread):
            limiter.acquire()
            with lock:
                times.append(time.monotonic())

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return sorted(times)


class RecordedLimiter(RateLimiter):
    """Records the moment of every grant as the limiter decides it (under its lock), free of the
    scheduling noise between a grant and the moment its thread gets to note the time."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.grants: list[float] = []
        super().__init__(*args, **kwargs)
        self.grants.clear()  # the constructor's starting point is not a grant

    @property
    def _last(self) -> float:
        return self.__dict__["_last_grant"]

    @_last.setter
    def _last(self, value: float) -> None:
        self.__dict__["_last_grant"] = value
        self.grants.append(value)


def test_grants_are_spaced_by_the_interval() -> None:
    limiter = RecordedLimiter(100, jitter=0.0)
    _grants(limiter, threads=8, per_thread=10)
    gaps = [b - a for a, b in zip(limiter.grants, limiter.grants[1:], strict=False)]
    assert len(limiter.grants) == 80 and min(gaps) >= limiter.interval, min(gaps)


def test_a_stall_does_not_release_a_burst(monkeypatch) -> None:
    """Every sleeping thread oversleeps by 0.3 s once (a CPU hog, a paused process): the grants
    that follow stay one interval apart, and no sliding second holds more than the rate."""
    rate = 50
    real_sleep = time.sleep
    stalled: set[int] = set()

    def stalling_sleep(seconds: float) -> None:
        me = threading.get_ident()
        extra = 0.0
        if me not in stalled and len(stalled) < 8:
            stalled.add(me)
            extra = 0.3
        real_sleep(seconds + extra)

    monkeypatch.setattr(rate_limit.time, "sleep", stalling_sleep)
    limiter = RateLimiter(rate, jitter=0.0)
    times = _grants(limiter, threads=8, per_thread=15)
    assert stalled, "the stall was not simulated"
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Measured when each thread got back from acquire(), so a loaded machine adds noise: half an
    # interval still tells paced grants from a booked-ahead limiter's burst (gaps of ~0 s).
    assert min(gaps) >= limiter.interval * 0.5, f"burst after a stall: gap {min(gaps):.4f}s"
    lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        assert hi - lo + 1 <= rate


def test_a_task_taking_over_a_pool_slot_does_not_send_right_after_the_previous_one() -> None:
    """Task A sends its last message and ends; task B takes its whatsapp_sends slot at once and
    sends its first: the two sends are still an interval apart, as the provider counts them."""
    a = RateLimiter(20)
    a.acquire()
    last_of_a = time.monotonic()
    b = RateLimiter(20)
    b.acquire()
    gap = time.monotonic() - last_of_a
    assert gap >= 0.95 * b.interval, f"hand-off gap {gap:.4f}s under the {b.interval:.4f}s interval"


def test_pause_pushes_the_next_grant_back() -> None:
    limiter = RateLimiter(1000)
    limiter.acquire()
    limiter.pause(0.2)
    start = time.monotonic()
    limiter.acquire()
    assert time.monotonic() - start >= 0.19


def test_waiting_threads_do_not_wake_at_every_slot(monkeypatch) -> None:
    """32 threads wait for 60 slots: one sleep per slot, not one per waiting thread per slot."""
    real_sleep = time.sleep
    sleeps = []

    def counted_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(rate_limit.time, "sleep", counted_sleep)
    limiter = RateLimiter(200, jitter=0.0)
    times = _grants(limiter, threads=32, per_thread=2)
    assert len(times) == 64
    assert len(sleeps) <= 2 * len(times), f"{len(sleeps)} sleeps for {len(times)} grants: a thundering herd"
