"""Every DAG in dags/, as the dag-processor loads it: it imports, is tagged, retries, has an owner and docs, parses cheaply.

The shape of the Astronomer project template's ``tests/dags/test_dag_example.py`` (parametrised over
the DagBag, so a new DAG file is checked without writing a test for it), plus this project's
parse-cost rule: a DAG file's top level loads none of the modules ``bench/parse.py`` calls heavy.
What a single DAG does (schedule, tasks, params) is tested next to it, in tests/dags/test_<dag>.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import local_airflow
import pytest

from bench.parse import HEAVY, dag_files

REPO = local_airflow.REPO
# The reminder DAG file makes one DAG per Zoho organization (include/config/organizations.yaml): it is
# parsed here with two, so that every check below also covers a generated DAG.
TWO_ORGANIZATIONS = Path(__file__).with_name("two_organizations.yaml")
ORGANIZATIONS_ENV = "ZOHO_WHATSAPP_ORGANIZATIONS"
PROJECT_TAGS = {"zoho-books", "whatsapp"}  # how the Airflow UI's tag filter finds this project's DAGs
# Tasks that run once by design, and why; every other task retries at least once.
NO_RETRY = {
    ("zoho_books_payment_reminders", "account_for_every_invoice"): (
        "the run's verdict: it counts the ledger after the sends and fails the run while an invoice is "
        "unaccounted for; a retry would count the same rows again (the send tasks are what retries)"
    ),
}


@cache
def _dag_bag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    saved = os.environ.get(ORGANIZATIONS_ENV)
    os.environ[ORGANIZATIONS_ENV] = str(TWO_ORGANIZATIONS)
    try:
        return DagBag(dag_folder=str(local_airflow.DAGS_FOLDER))
    finally:
        if saved is None:
            del os.environ[ORGANIZATIONS_ENV]
        else:
            os.environ[ORGANIZATIONS_ENV] = saved


def get_import_errors() -> list[tuple[str | None, str | None]]:
    """(file, error) for each DAG file that failed to import; (None, None) first so the test always exists."""
    errors = _dag_bag().import_errors
    return [(None, None)] + [(os.path.relpath(path, REPO), str(error).strip()) for path, error in errors.items()]


def get_dags() -> list[tuple[str, Any, str]]:
    """(dag_id, DAG, file) for every DAG in the DagBag."""
    return [(dag_id, dag, os.path.relpath(dag.fileloc, REPO)) for dag_id, dag in sorted(_dag_bag().dags.items())]


@pytest.mark.parametrize("rel_path,rv", get_import_errors(), ids=[x[0] or "dags" for x in get_import_errors()])
def test_file_imports(rel_path: str | None, rv: str | None) -> None:
    if rel_path and rv:
        pytest.fail(f"{rel_path} failed to import with message\n{rv}")


def test_every_dag_file_defines_a_dag() -> None:
    files = {os.path.relpath(path, REPO) for path in dag_files()}
    assert files and files == {fileloc for _, _, fileloc in get_dags()}


@pytest.mark.parametrize("dag_id,dag,fileloc", get_dags(), ids=[x[0] for x in get_dags()])
def test_dag_tags(dag_id: str, dag: Any, fileloc: str) -> None:
    assert dag.tags, f"{dag_id} in {fileloc} has no tags"
    assert PROJECT_TAGS <= set(dag.tags), f"{dag_id} in {fileloc} lacks the project tags {PROJECT_TAGS}"


@pytest.mark.parametrize("dag_id,dag,fileloc", get_dags(), ids=[x[0] for x in get_dags()])
def test_dag_retries(dag_id: str, dag: Any, fileloc: str) -> None:
    assert dag.default_args.get("retries", 0) >= 1, f"{dag_id} in {fileloc} must set default_args retries >= 1"
    family = dag_id.split("__")[0]  # an organization's DAG (<dag_id>__<name>) has its family's tasks
    once = [t.task_id for t in dag.tasks if t.retries < 1 and (family, t.task_id) not in NO_RETRY]
    assert not once, f"{dag_id} in {fileloc}: {once} never retry; give them retries or a reason in NO_RETRY"


def test_every_no_retry_reason_names_a_task_that_does_not_retry() -> None:
    dags = {dag_id: dag for dag_id, dag, _ in get_dags()}
    for dag_id, task_id in NO_RETRY:
        assert dag_id in dags and dags[dag_id].has_task(task_id), f"NO_RETRY names {dag_id}.{task_id}, which is gone"
        assert dags[dag_id].get_task(task_id).retries == 0, f"{dag_id}.{task_id} retries now: drop it from NO_RETRY"


@pytest.mark.parametrize("dag_id,dag,fileloc", get_dags(), ids=[x[0] for x in get_dags()])
def test_dag_owner_and_docs(dag_id: str, dag: Any, fileloc: str) -> None:
    assert all(task.owner for task in dag.tasks), f"{dag_id} in {fileloc} has a task without an owner"
    assert dag.doc_md and dag.doc_md.strip(), f"{dag_id} in {fileloc} has no doc_md for its page in the UI"


@pytest.mark.parametrize("dag_id,dag,fileloc", get_dags(), ids=[x[0] for x in get_dags()])
def test_dag_file_loads_nothing_heavy_at_parse_time(dag_id: str, dag: Any, fileloc: str) -> None:
    """The dag-processor parses each file again and again: clients, drivers and task code load inside tasks."""
    code = "import json, runpy, sys; runpy.run_path(sys.argv[1]); print(json.dumps(sorted(sys.modules)))"
    env = local_airflow.environment(Path(os.environ["AIRFLOW_HOME"]), extra={ORGANIZATIONS_ENV: str(TWO_ORGANIZATIONS)})
    out = subprocess.run([sys.executable, "-c", code, str(REPO / fileloc)], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = sorted({h for h in HEAVY for m in loaded if m == h or m.startswith(h + ".")})
    assert "airflow.sdk" in loaded  # the file really was run
    assert heavy == [], f"parsing {fileloc} loads {heavy}: import them inside the task that needs them"
