"""The troubleshooting table of docs/troubleshooting.md, generated from the error classes.

.. code-block:: console

    python -m zoho_whatsapp.troubleshooting                 # print the table
    python -m zoho_whatsapp.troubleshooting --write docs/troubleshooting.md   # rewrite it between the markers
    python -m zoho_whatsapp.troubleshooting --check docs/troubleshooting.md   # exit 1 when it is stale
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

BEGIN = "<!-- errors:begin -->"
END = "<!-- errors:end -->"
OUTCOMES = {
    "retry_later": "retry later",
    "unknown": "unknown: may have happened",
    "stop_run": "stop the run",
    "permanent": "permanent for this item",
}


def families() -> list[type]:
    """Every documented error family of the three systems, in their modules' order."""
    from zoho_whatsapp.cli import LedgerError
    from zoho_whatsapp.whatsapp.errors import WhatsAppError
    from zoho_whatsapp.zoho.errors import ZohoError

    found = [*ZohoError.families(), *WhatsAppError.families(), *LedgerError.families()]
    return [family for family in found if family.codes_label() and family.fix]


def table() -> str:
    """Markdown rows: system, code(s), class, outcome, fix (``{conn_id}`` shown as the default connection)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")

    lines = ["| System | Code(s) / when | Class | Outcome | Fix |", "| --- | --- | --- | --- | --- |"]
    for family in families():
        lines.append(
            f"| {family.system} | {cell(family.codes_label())} | `{family.__name__}` | "
            f"{OUTCOMES[family.outcome.value]} | {cell(family.fix_for())} |"
        )
    return "\n".join(lines)


def with_table(document: str) -> str:
    """``document`` with the text between the markers replaced by the current table."""
    try:
        head, rest = document.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
    except ValueError:
        raise ValueError(f"the document has no {BEGIN} ... {END} markers") from None
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoho_whatsapp.troubleshooting", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE", type=Path, help="replace the table between the markers in FILE")
    group.add_argument("--check", metavar="FILE", type=Path, help="exit 1 when FILE's table differs from the classes")
    args = parser.parse_args(argv)
    if args.write is None and args.check is None:
        print(table())
        return 0
    path: Path = args.write or args.check
    document = path.read_text(encoding="utf-8") if path.exists() else f"# Troubleshooting\n\n{BEGIN}\n{END}\n"
    updated = with_table(document)
    if args.check is not None:
        if updated != document:
            print(f"{path}: the errors table is stale; run python -m zoho_whatsapp.troubleshooting --write {path}")
            return 1
        return 0
    path.write_text(updated, encoding="utf-8")
    print(f"{path}: errors table written ({len(families())} classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
