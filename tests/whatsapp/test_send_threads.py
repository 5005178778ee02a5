"""A batch gets the threads its share of the rate needs: Meta's latency, not the threads, bounds it."""

from __future__ import annotations

from zoho_whatsapp.pipeline import MOST_SEND_THREADS, THREAD_HOLD_SECONDS, send_threads


def test_the_standard_tier_keeps_the_dags_threads() -> None:
    assert send_threads(20, 32) == 32  # 80 msg/s over 4 batches: 5 in flight would do, 32 is the floor


def test_a_batch_at_hundreds_a_second_gets_a_thread_for_each_message_in_flight() -> None:
    assert send_threads(250, 32) == 63  # 1,000 msg/s over 4 batches: 250/s x 0.25 s held
    assert send_threads(250, 32) * 1 / THREAD_HOLD_SECONDS >= 250  # enough to reach the share
    assert send_threads(10_000, 32) == MOST_SEND_THREADS
