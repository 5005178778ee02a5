"""The CeleryExecutor stack (include/local_stack.py) for the tests of this folder: one per test session.

Starting it takes about a minute and its runs several more, so the tests that need it run only
with ``ZW_STACK=1`` (``make test-stack``); the compose mapping tests run always.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.stack import helpers

STACK_SETTINGS = {
    "AIRFLOW_VAR_ZOHO_WHATSAPP_GO_LIVE": (
        "true", "the daily run these tests check must send: the installation is live (docs/operations.md)"),
    # Shortened for the tests, with their reasons (docs/stack.md lists them).
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": (
        "30", "a killed worker's task is found without heartbeat after 30 s instead of 5 min"),
}
SANDBOX = {"invoices": 320, "whatsapp_latency_ms": 100}  # 307 messages; each request in flight for 100 ms
_RUNNING: list[Any] = []  # the session's stack, for the failure reports below


@pytest.fixture(scope="session")
def stack() -> Iterator[Any]:
    """The stack, up, with the 09:00 run that unpausing the reminder DAG starts already finished."""
    if os.environ.get("ZW_STACK") != "1":
        pytest.skip("starts the whole CeleryExecutor stack; run with ZW_STACK=1 (make test-stack)")
    from local_stack import Stack

    # Generous waits: CI runs this on a 2-core machine that may be busy; the assertions stay exact.
    with Stack(overrides=STACK_SETTINGS, sandbox=SANDBOX, keep=bool(os.environ.get("ZW_STACK_KEEP")),
               start_timeout=600) as running:
        _RUNNING.append(running)
        try:
            scheduled = helpers.wait_for_first_run(running, timeout=300)
            running.daily = {"run": scheduled, "state": running.wait_for_run(helpers.REMINDER_DAG,
                                                                              scheduled["dag_run_id"], timeout=600),
                             "messages": running.sandbox.messages(), "ledger": helpers.ledger_rows(running)}
            yield running
        finally:
            _RUNNING.remove(running)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed stack test's report carries the ends of the services' and the newest tasks' logs: the stack's
    home is removed when the session ends, and in CI nothing else would show what the scheduler or a worker did."""
    report = yield
    if report.failed and _RUNNING:
        report.sections.append(("stack: the services' and newest tasks' logs (last lines)", _RUNNING[-1].tails()))
    return report


@pytest.fixture
def fresh(stack: Any) -> Any:
    """Nothing running, the sandbox's data and message log as seeded, an empty ledger."""
    helpers.wait_idle(stack)
    stack.reset_data()
    return stack
