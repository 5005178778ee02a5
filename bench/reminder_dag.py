"""The reminder DAG's own settings, read from the DAG file so the benchmark runs what the DAG runs."""

from __future__ import annotations

import ast
import importlib.util
from typing import Any

from bench.harness import REPO

DAG_FILE = REPO / "dags" / "zoho_books_payment_reminders.py"
DAG_ID = "zoho_books_payment_reminders"
SEND_TASK = "send_reminders"


def load() -> tuple[Any, Any]:
    """(module, DAG) of the reminder DAG file; call in a child process only (it imports Airflow)."""
    spec = importlib.util.spec_from_file_location("bench_reminder_dag", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # One DAG per Zoho organization (include/config/organizations.yaml): the first keeps the plain id.
    built = module.zoho_books_payment_reminders()
    return module, next(d for d in (built if isinstance(built, list) else [built]) if d.dag_id == DAG_ID)


def send_settings() -> dict[str, Any]:
    """What the DAG gives each mapped send task, and how many of them may run at once."""
    module, dag = load()
    task = dag.get_task(SEND_TASK)
    kwargs = task.partial_kwargs
    parallel = kwargs.get("max_active_tis_per_dag") or kwargs.get("max_active_tis_per_dagrun") or 1
    params = {name: dag.params[name] for name in dag.params}
    return {
        "max_parallel": int(getattr(module, "MAX_PARALLEL_BATCHES", parallel)),
        "max_batches": int(getattr(module, "MAX_BATCHES", 1000)),
        "concurrency": int(parallel),
        "concurrency_scope": "dag" if kwargs.get("max_active_tis_per_dag") else "dagrun",
        "pool": kwargs.get("pool"),
        "operator_kwargs": {
            k: v for k, v in kwargs.items()
            if k in ("max_workers", "whatsapp_conn_id", "ledger_conn_id", "min_days_between_reminders")
        },
        "params": params,
    }


def constants() -> dict[str, Any]:
    """The DAG file's module-level constants (``MAX_PARALLEL_BATCHES`` ...), read without importing it."""
    tree = ast.parse(DAG_FILE.read_text())
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found
