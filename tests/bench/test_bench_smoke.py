"""`make bench` at tiny sizes: the benchmark's code path runs end to end, so it cannot rot unnoticed.

The figures that hold at any size are checked (nothing lost or duplicated, no token minted while a
cached one is valid, Zoho calls within budget, every invoice accounted for, nothing heavy imported
at parse time); rates and speed-ups mean nothing at these sizes and are not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.harness import PROVIDER_NICE

REPO = Path(__file__).resolve().parents[2]


def run_bench(tmp_path: Path, sections: str) -> tuple[dict[str, dict], dict, str]:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--only", sections, "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    figures = {f"{f['section']}: {f['name'].strip()}": f for f in result["figures"]}
    assert "| figure | value | target | value/target | ok |" in proc.stdout
    return figures, result, proc.stdout


def value(figures: dict[str, dict], prefix: str) -> float:
    [match] = [f for name, f in figures.items() if name.startswith(prefix)]
    return match["value"]


def test_bench_smoke_sending_parse_and_scale(tmp_path: Path) -> None:
    figures, result, _ = run_bench(tmp_path, "parse,sending,scale")
    assert {f["section"] for f in result["figures"]} == {"parse", "sending", "scale"}
    assert value(figures, "parse: heavy modules imported") == 0
    assert value(figures, "parse: DagBag load") > 0
    sending = result["details"]["sending"]
    assert value(figures, "sending: lost + duplicated") == 0
    assert sending["received"] == sending["messages"] == sending["ledger_status"]["sent"]
    assert sending["wamids_match_ledger"] is True
    assert sending["batches"] >= sending["dag_send_settings"]["concurrency"]  # whole waves of parallel batches
    assert value(figures, "scale: mapped send tasks") <= 1024
    assert value(figures, "scale: fetch") < 300 and value(figures, "scale: plan") < 300
    assert figures[next(n for n in figures if n.startswith("scale: Zoho calls"))]["ok"] is True


@pytest.mark.dag
def test_bench_smoke_dag_runs_and_zoho_budget(tmp_path: Path) -> None:
    figures, result, _ = run_bench(tmp_path, "end_to_end,zoho")
    assert value(figures, "zoho: token refreshes with a valid cached token") == 0
    assert figures["zoho: calls, first run of the day"]["ok"] is True
    assert figures["zoho: calls, next run (token cached)"]["ok"] is True
    assert value(figures, "end_to_end: invoices not accounted for") == 0
    first = result["details"]["end_to_end"]["first_run"]
    assert first["state"] == "success"
    assert set(first["tasks"]) == {"check_go_live", "refresh_zoho_token", "fetch_overdue_invoices", "plan_reminders",
                                   "send_reminders", "account_for_every_invoice"}


def test_bench_smoke_tier(tmp_path: Path, postgres_url: str | None) -> None:
    """The 1,000 msg/s tier's code path: CPU read from the OS, the cap held, a hog beside one run."""
    if postgres_url is None and not os.environ.get("CI"):
        pytest.skip("PostgreSQL is not reachable: the tier section sends with the ledger there")
    figures, result, _ = run_bench(tmp_path, "tier")
    runs = result["details"]["tier"]["runs"]
    assert {(r["ledger"], r["hogs"] > 0) for r in runs} == {("postgresql", False), ("postgresql", True)}
    for r in runs:
        assert r["received"] == r["messages"] == r["ledger_sent"]
        assert r["sender_cpu_seconds"] > 0 and r["sandbox_cpu_seconds"] > 0  # what the OS charged them
        assert r["peak_1s"] <= r["cap"]
        # the hogs load the sender's cores, not the provider's: the sandbox runs ahead of them where it may
        assert r["provider_nice"] == (PROVIDER_NICE if r["hogs"] and os.geteuid() == 0 else 0)
        # every request the sandbox saw was stamped as written by a sender, and paced under the cap
        assert r["written"] == r["received"] + sum(r["refusals_by_code"].values())
        assert 0 < r["peak_written_1s"] <= r["cap"]
    assert value(figures, "tier: lost + duplicated") == 0
    assert value(figures, "tier: sender CPU per 1,000 messages") > 0
