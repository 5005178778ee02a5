"""``make bench``: throughput and API budget of the reminder DAG, measured against the sandbox.

    python -m bench.run                      # everything, full sizes (~6 minutes on 2 cores)
    python -m bench.run --only sending,zoho  # some sections
    python -m bench.run --only stack         # the CeleryExecutor stack (include/local_stack.py), ~6 minutes
    python -m bench.run --smoke              # tiny sizes: checks the code path, not the figures

Prints one table (figure, value, target, value/target) and writes the same as JSON to
``bench/results/<UTC timestamp>.json`` so that runs can be compared. Exits 1 when a figure misses
its target (not with ``--smoke``, whose sizes are too small to mean anything).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import REPO, Section, scratch_dir, scratch_postgres

RESULTS = REPO / "bench" / "results"
SECTIONS = ("parse", "sending", "tier", "zoho", "scale", "end_to_end", "stack", "ui")


@dataclass(frozen=True)
class Sizes:
    send_messages: int = 5000
    sequential_sample: int = 200
    latency_ms: float = 150
    cap: int = 80
    scale_invoices: int = 50_000
    e2e_invoices: int = 5000
    e2e_dry_run: bool = False  # the smoke test: Meta's 6 s pair spacing would make a real send slow
    # the CeleryExecutor stack (bench/stack.py): 5,000 customers, so ~5,000 messages (one per customer and currency)
    stack_invoices: int = 12_500
    stack_events: int = 30  # webhooks timed alone, and as many while the reminders send
    ui_rows: int = 1_000_000  # a year of ledger rows behind the audit page (bench/ui.py)
    tier_messages: int = 5000  # per run of the 1,000 msg/s tier section (bench/tier.py)
    tier_caps: tuple[int, ...] = (250, 500, 1000)  # PostgreSQL ledger; SQLite at tier_sqlite_cap
    tier_sqlite_cap: int | None = 500
    tier_hog_cap: int = 80  # the cap of the run beside the CPU hog: the standard tier's, as production
    tier_hogs: int = 2  # spinning processes beside that run: load ≈ 2 on top of the send


FULL = Sizes()
SMOKE = Sizes(send_messages=120, sequential_sample=5, latency_ms=20, cap=80, scale_invoices=300, e2e_invoices=60,
              e2e_dry_run=True, stack_invoices=200, stack_events=3, ui_rows=5000, tier_messages=200, tier_caps=(500,),
              tier_sqlite_cap=None, tier_hog_cap=80, tier_hogs=1)


def run(sections: tuple[str, ...] = SECTIONS, sizes: Sizes = FULL, *, work: Path | None = None,
        progress: bool = False, postgres: str | None = None) -> list[Section]:
    """Run the chosen sections; ``zoho`` and ``end_to_end`` come from the same DAG runs.

    ``postgres``: an admin URL; the sending section then keeps its ledger in a scratch
    PostgreSQL database there instead of the embedded SQLite file.
    """
    from bench import e2e, parse, scale, sending

    steps: list[tuple[str, Any]] = []
    if "parse" in sections:
        steps.append(("parse", lambda base: [parse.run(base)]))
    if "sending" in sections:
        def send(base: Path) -> list[Section]:
            with scratch_postgres(postgres) if postgres else nullcontext() as url:
                return [sending.run(base, messages=sizes.send_messages, latency_ms=sizes.latency_ms, cap=sizes.cap,
                                    sequential_sample=sizes.sequential_sample, ledger_url=url)]

        steps.append(("sending", send))
    if "tier" in sections:
        from bench import tier
        from bench.ui import POSTGRES_ADMIN

        steps.append(("tier", lambda base: [tier.run(
            base, messages=sizes.tier_messages, caps=sizes.tier_caps, sqlite_cap=sizes.tier_sqlite_cap,
            hog_cap=sizes.tier_hog_cap, hogs=sizes.tier_hogs, latency_ms=sizes.latency_ms,
            postgres=postgres or POSTGRES_ADMIN)]))
    if "zoho" in sections or "end_to_end" in sections:
        steps.append(("end_to_end + zoho", lambda base: [s for s in e2e.run(
            base, invoices=sizes.e2e_invoices, latency_ms=sizes.latency_ms, cap=sizes.cap,
            dry_run=sizes.e2e_dry_run) if s.name in sections]))
    if "scale" in sections:
        steps.append(("scale", lambda base: [scale.run(base, invoices=sizes.scale_invoices)]))
    if "stack" in sections:
        from bench import stack

        steps.append(("stack", lambda base: [stack.run(base, invoices=sizes.stack_invoices, cap=sizes.cap,
                                                       latency_ms=sizes.latency_ms, events=sizes.stack_events)]))
    if "ui" in sections:
        from bench import ui

        steps.append(("ui", lambda base: [ui.run(base, rows=sizes.ui_rows, postgres=postgres or ui.POSTGRES_ADMIN)]))
    done: list[Section] = []
    with scratch_dir("zw-bench-") as tmp:
        for label, step in steps:
            clock = time.perf_counter()
            if progress:
                print(f"  {label} ...", end="", flush=True)
            produced = step(work or tmp)
            seconds = time.perf_counter() - clock
            for section in produced:
                section.details["section_seconds"] = round(seconds, 1)
            done += produced
            if progress:
                print(f" {seconds:.0f}s", flush=True)
    order = {name: i for i, name in enumerate(SECTIONS)}
    return sorted(done, key=lambda s: order[s.name])


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit in ("s",):
        text = f"{value:,.2f}" if value < 10 else f"{value:,.1f}"
    elif unit in ("x", "msg/s", "MB"):
        text = f"{value:,.1f}"
    else:
        text = f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return f"{text} {unit}".strip()


def table(sections: list[Section]) -> str:
    """The results as a Markdown table (it reads fine in a terminal and pastes into the README)."""
    lines = ["| figure | value | target | value/target | ok |", "| --- | ---: | ---: | ---: | :---: |"]
    for section in sections:
        for fig in section.figures:
            target = "—" if fig.target is None else f"{fig.better} {_fmt(fig.target, fig.unit)}"
            ratio = "—" if fig.ratio is None else f"{fig.ratio:.2f}"
            ok = {True: "yes", False: "**NO**", None: ""}[fig.ok]
            lines.append(f"| {section.name}: {fig.name} | {_fmt(fig.value, fig.unit)} | {target} | {ratio} | {ok} |")
    return "\n".join(lines)


def notes(sections: list[Section]) -> str:
    return "\n".join(f"- {s.name}: {f.name}: {f.note}" for s in sections for f in s.figures if f.note)


def write_json(sections: list[Section], sizes: Sizes, started: datetime, seconds: float,
               path: Path | None = None) -> Path:
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = path or RESULTS / f"{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "started_at": started.isoformat(),
        "seconds": round(seconds, 1),
        "sizes": sizes.__dict__,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "figures": [f.as_dict() for s in sections for f in s.figures],
        "details": {s.name: s.details for s in sections},
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections (default all): {', '.join(SECTIONS)}")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: exercise the code path quickly")
    parser.add_argument("--output", type=Path, default=None, help="JSON file to write (default bench/results/<ts>.json)")
    parser.add_argument("--postgres", metavar="ADMIN_URL", default=None,
                        help="send with the ledger in a scratch PostgreSQL database on this server, e.g. "
                             "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres (default: SQLite file)")
    args = parser.parse_args(argv)
    chosen = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    sizes = SMOKE if args.smoke else FULL
    started = datetime.now(UTC)
    clock = time.perf_counter()
    print(f"bench: {', '.join(chosen)} ({'smoke sizes' if args.smoke else 'full sizes'}); load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
    sections = run(chosen, sizes, progress=True, postgres=args.postgres)
    seconds = time.perf_counter() - clock
    path = write_json(sections, sizes, started, seconds, args.output)
    print()
    print(table(sections))
    print()
    print(notes(sections))
    print(f"\n{seconds:.0f}s; results written to {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    missed = [f"{s.name}: {f.name}" for s in sections for f in s.figures if f.ok is False]
    if missed and not args.smoke:
        print("missed: " + "; ".join(missed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
