"""Parse: how long Airflow takes to load our dags folder, and what the DAG files import at top level.

The dag-processor parses every file again and again; anything a DAG file imports at module level
is paid on each parse. Our DAG files may import ``airflow.sdk``, ``pendulum`` and the light
operator module; clients, parsers and drivers belong inside the tasks.
"""

from __future__ import annotations

import runpy
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import REPO, Section, base_env, run_child

# Modules a DAG file must not pull in while being parsed: each is slow to import, opens
# connections, or drags in the task code; every task that needs one imports it itself.
# (sqlalchemy, yaml and httpx are loaded by airflow.sdk anyway, so they never count as added.)
HEAVY = (
    "phonenumbers",
    "babel",
    "psycopg2",
    "fastapi",
    "uvicorn",
    "zoho_whatsapp.zoho.hook",
    "zoho_whatsapp.ledger.ledger",
    "zoho_whatsapp.rules",
    "zoho_whatsapp.reminder_run",
    "zoho_whatsapp.pipeline",
    "zoho_whatsapp.whatsapp.batch",
    "zoho_whatsapp.alerts",
    "zoho_whatsapp.webhooks.app",
    "zoho_whatsapp.webhooks.inbox",
)
DAGBAG_TARGET_S = 2.0  # per folder; Airflow kills a file's parse after dagbag_import_timeout (30 s)


def dag_files() -> list[Path]:
    return sorted(p for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))


def top_level_imports() -> dict[str, Any]:
    """(child) Run each DAG file after ``airflow.sdk`` is loaded; list what it adds to ``sys.modules``."""
    import airflow.sdk  # noqa: F401  (every DAG file needs it; the dag-processor has it loaded)
    import pendulum  # noqa: F401

    per_file: dict[str, Any] = {}
    for path in dag_files():
        before = set(sys.modules)
        started = time.perf_counter()
        runpy.run_path(str(path), run_name=f"bench_parse_{path.stem}")
        seconds = time.perf_counter() - started
        added = sorted(set(sys.modules) - before)
        heavy = sorted({h for h in HEAVY for m in added if m == h or m.startswith(h + ".")})
        ours = sorted(m for m in added if m.startswith("zoho_whatsapp"))
        others = sorted({m.split(".")[0] for m in added if not m.startswith(("zoho_whatsapp", "bench_parse_"))})
        per_file[path.name] = {"seconds": seconds, "new_modules": len(added), "ours": ours, "others": others,
                               "heavy": heavy}
    return per_file


def dagbag_load() -> dict[str, Any]:
    """(child) ``DagBag`` of the dags folder, as the dag-processor and ``airflow dags list`` load it."""
    import airflow.sdk  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag

    started = time.perf_counter()
    bag = DagBag(dag_folder=str(REPO / "dags"))
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "dags": sorted(bag.dag_ids),
        "import_errors": {k: str(v)[:300] for k, v in bag.import_errors.items()},
        "per_file": {Path(stat.file).name: stat.duration.total_seconds() for stat in bag.dagbag_stats},
    }


def run(work: Path) -> Section:
    section = Section("parse")
    env = base_env(work / "airflow-parse")
    bag = run_child(dagbag_load, env)  # a fresh process: the plugin modules are imported cold
    imports = run_child(top_level_imports, env)
    heavy = {name: info["heavy"] for name, info in imports.items() if info["heavy"]}
    section.add("DagBag load of dags/", bag["seconds"], "s", target=DAGBAG_TARGET_S,
                note=f"{len(bag['dags'])} DAGs, {len(bag['import_errors'])} import errors; per file: "
                     + ", ".join(f"{name} {sec:.2f}s" for name, sec in bag["per_file"].items()))
    for name, info in imports.items():
        section.add(f"  {name}: own parse cost", info["seconds"], "s",
                    note=f"after airflow.sdk: +{info['new_modules']} modules ({', '.join(info['others']) or 'none'} "
                         f"and {len(info['ours'])} of ours)")
    section.add("heavy modules imported at parse time", sum(len(v) for v in heavy.values()), "modules", target=0,
                note="; ".join(f"{k}: {', '.join(v)}" for k, v in heavy.items())
                or f"none of {', '.join(HEAVY)}")
    if bag["import_errors"]:
        section.add("DAG import errors", len(bag["import_errors"]), "files", target=0)
    section.details = {"dagbag": bag, "top_level_imports": imports}
    return section
