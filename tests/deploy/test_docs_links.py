"""The README is the door and docs/ the handbook: short, every link lands, every page reachable."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from tests.deploy.helpers import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
MAX_README_LINES = 200

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def links(page: Path) -> list[str]:
    return _LINK.findall(prose(page.read_text()))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[`*_~]", lambda m: "_" if m.group(0) == "_" else "", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text())):
        base, n = slug(heading), 0
        while (candidate := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(candidate)
    return found


def resolve(page: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    return ((page.parent / path).resolve() if path else page), anchor


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I))


def test_readme_is_at_most_200_lines() -> None:
    count = len(README.read_text().splitlines())
    assert count <= MAX_README_LINES, f"README.md has {count} lines; move sections to docs/ and link them"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_lands_on_a_file_and_heading(page: Path) -> None:
    broken = []
    for target in links(page):
        if is_external(target):
            continue
        path, anchor = resolve(page, target)
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif not path.is_relative_to(REPO):
            broken.append(f"{target}: outside the repository")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    seen, todo = {README}, [README]
    while todo:
        page = todo.pop()
        for target in links(page):
            path, _ = resolve(page, target)
            if not is_external(target) and path.suffix == ".md" and path.exists() and path not in seen:
                seen.add(path)
                todo.append(path)
    orphans = [p.relative_to(REPO).as_posix() for p in pages() if p not in seen]
    assert not orphans, f"not linked from README.md (directly or through docs/): {orphans}"


def test_readme_links_each_handbook_page_directly() -> None:
    direct = {resolve(README, t)[0] for t in links(README) if not is_external(t)}
    missing = [p.relative_to(REPO).as_posix() for p in sorted(DOCS.glob("*.md")) if p not in direct]
    assert not missing, f"README.md's documentation table lacks {missing}"


def test_the_link_checker_sees_what_is_broken(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## Set up: step by step\n")
    page.write_text("[ok](other.md#set-up-step-by-step) [bad](missing.md) [anchor](other.md#nope)\n"
                    "`[code](not-a-link.md)`\n```\n[fenced](not-a-link.md)\n```\n[web](https://example.com)\n")
    found = links(page)
    assert found == ["other.md#set-up-step-by-step", "missing.md", "other.md#nope", "https://example.com"]
    assert "set-up-step-by-step" in anchors(tmp_path / "other.md")
    assert not resolve(page, "missing.md")[0].exists()
    assert slug("`zoho_books_payment_reminders`") == "zoho_books_payment_reminders"
    assert slug("Zoho Books: set up the workflow rules, step by step") == (
        "zoho-books-set-up-the-workflow-rules-step-by-step")


@pytest.mark.parametrize("dag_file", sorted((REPO / "dags").glob("*.py")), ids=lambda p: p.name)
def test_dag_docs_start_with_a_summary_and_name_files_that_exist(dag_file: Path) -> None:
    """The DAG page (doc_md = the module docstring) points at the handbook by repository paths."""
    tree = ast.parse(dag_file.read_text())
    doc = ast.get_docstring(tree, clean=False)
    assert doc, f"{dag_file.name} has no module docstring"
    first, _, rest = doc.partition("\n")
    assert first.endswith(".") and len(first) <= 120 and (not rest or rest.startswith("\n")), first
    named = re.findall(r"`((?:docs/[\w./-]+|README)\.md)`", doc)
    assert named, f"{dag_file.name}: the docstring links no page of docs/"
    assert not [p for p in named if not (REPO / p).is_file()]
    assert "doc_md=__doc__" in dag_file.read_text()
    assert "| task |" not in doc, "the task tables live in README.md; the DAG page links them"


def dag_params(dag_file: Path) -> tuple[str, dict[str, object]]:
    """(dag_id, {param: default}) read from the file's @dag(...) call without importing Airflow."""
    for node in ast.walk(ast.parse(dag_file.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("dag", "dag_per_organization"):
            kw = {k.arg: k.value for k in node.keywords}
            params = {}
            for key, value in zip(kw["params"].keys, kw["params"].values, strict=True):
                params[ast.literal_eval(key)] = ast.literal_eval(value.args[0])
            return ast.literal_eval(kw["dag_id"]), params
    raise AssertionError(f"no @dag(...) in {dag_file}")


POLICY_DEFAULT = "from `include/config/reminder_policy.yaml`"


def readme_params(dag_id: str) -> dict[str, str]:
    """{param: default as written} from the params table under the README heading naming the DAG."""
    text = README.read_text()
    section = text.split(f"### `{dag_id}`", 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[0] != "param":
            if cells[1].startswith(POLICY_DEFAULT):  # params whose default (None) is the policy file's value
                rows.update((n.strip(" `"), "None") for n in cells[0].split(","))
                continue
            names = [n.strip(" `") for n in cells[0].split("/")]
            defaults = [d.strip(" `") for d in cells[1].split(" / ")] if len(names) > 1 else [cells[1].strip("`")]
            rows.update(zip(names, defaults, strict=True))
    return rows


def as_written(value: object) -> str:
    return json.dumps(value) if isinstance(value, bool | list) else str(value)


@pytest.mark.parametrize("dag_file", sorted((REPO / "dags").glob("*.py")), ids=lambda p: p.name)
def test_readme_lists_every_dag_param_with_its_default(dag_file: Path) -> None:
    dag_id, params = dag_params(dag_file)
    assert readme_params(dag_id) == {name: as_written(default) for name, default in params.items()}
