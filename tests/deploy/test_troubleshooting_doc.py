"""The troubleshooting table is generated from the error classes, and error codes live only there."""

from __future__ import annotations

import re

from tests.deploy.helpers import REPO
from zoho_whatsapp import troubleshooting
from zoho_whatsapp.whatsapp.errors import WhatsAppError
from zoho_whatsapp.zoho.errors import ZohoError

DOC = REPO / "docs" / "troubleshooting.md"
ERRORS_MODULES = {REPO / "plugins/zoho_whatsapp/whatsapp/errors.py", REPO / "plugins/zoho_whatsapp/zoho/errors.py"}


def test_the_doc_table_is_the_one_the_classes_generate() -> None:
    document = DOC.read_text(encoding="utf-8")
    assert troubleshooting.with_table(document) == document, (
        "docs/troubleshooting.md is stale: python -m zoho_whatsapp.troubleshooting --write docs/troubleshooting.md"
    )
    assert troubleshooting.main(["--check", str(DOC)]) == 0


def test_every_class_with_a_code_has_a_row_with_its_fix() -> None:
    table = troubleshooting.table()
    for family in [*ZohoError.families(), *WhatsAppError.families()]:
        if family.__dict__.get("codes"):
            row = next(line for line in table.splitlines() if f"`{family.__name__}`" in line)
            assert family.codes_label().split(",")[0] in row
            assert troubleshooting.OUTCOMES[family.outcome.value] in row


def test_write_replaces_only_the_text_between_the_markers(tmp_path) -> None:
    doc = tmp_path / "t.md"
    doc.write_text(f"# T\n\nbefore\n\n{troubleshooting.BEGIN}\nold rows\n{troubleshooting.END}\n\nafter\n")
    assert troubleshooting.main(["--check", str(doc)]) == 1
    assert troubleshooting.main(["--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# T\n\nbefore\n\n") and text.endswith("\n\nafter\n") and "old rows" not in text
    assert "| Zoho Books | 45 | `ZohoQuotaExhausted` | stop the run |" in text
    assert "| WhatsApp | 131056 | `PairRateExceeded` | retry later |" in text
    assert troubleshooting.main(["--check", str(doc)]) == 0


def documented_codes() -> set[int]:
    codes: set[int] = set()
    for family in [*ZohoError.families(), *WhatsAppError.families()]:
        codes |= {c for c in family.__dict__.get("codes", ()) if isinstance(c, int)}
        if family.__dict__.get("code_range") is not None:
            codes |= {family.code_range.start, family.code_range.stop - 1}
    return codes


def test_no_error_code_number_outside_the_errors_modules() -> None:
    """Code numbers are knowledge of the errors modules: elsewhere, use the class.

    Codes of four or more digits may not appear at all; short ones (0, 2, 45, 190 ...) may not
    appear next to the word code or error. The sandbox (a stand-in for Meta and Zoho) and the tests
    are exempt."""
    long_codes = sorted(c for c in documented_codes() if c >= 1000)
    short_codes = sorted(c for c in documented_codes() if c < 1000)
    long_re = re.compile(r"(?<![\d.])(" + "|".join(map(str, long_codes)) + r")(?![\d.])")
    short_re = re.compile(r"(?<![A-Za-z])(code|error)s?\b[\s=:(]{1,4}(" + "|".join(map(str, short_codes)) + r")\b", re.I)
    assert all(short_re.search(s) for s in ("QUOTA_CODE = 45", 'f"code 45: {m}"', "error 190", "if code == 57:"))
    assert long_re.search("if exc.code == 131056:") and not short_re.search("errors[0].get('code')")
    assert not short_re.search("proc.returncode == 0")  # a process's exit status is not an API error code
    offenders = []
    for folder in ("plugins", "dags", "include"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path in ERRORS_MODULES or "sandbox" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if long_re.search(line) or short_re.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []
