"""Webhook → WhatsApp through a real Airflow (api-server, scheduler, dag-processor, triggerer).

Heavy (about two minutes and four Airflow processes), so opt-in: ``ZW_LIVE_STACK=1 pytest tests/webhooks/test_live_stack.py -s``.
The latency figures in the README come from ``python -m tests.webhooks.live_stack --events 20``.
"""

from __future__ import annotations

import os

import pytest


@pytest.mark.skipif(os.environ.get("ZW_LIVE_STACK") != "1", reason="starts a whole Airflow; set ZW_LIVE_STACK=1")
def test_webhooks_reach_whatsapp_through_a_running_airflow() -> None:
    from tests.webhooks.live_stack import main

    summary = main(["--events", "5"])
    assert summary["events"] == 5
    assert summary["messages"] == 6  # the warm-up event and five more: one message each, none twice
    assert summary["worst_s"] < 30
