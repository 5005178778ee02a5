#!/usr/bin/env python3
"""Change a comparison or drop a condition in the rules, one at a time: a test must fail.

For every mutation point of a target module (``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``,
``in`` <-> ``not in``, ``is`` <-> ``is not``, one operand of an ``and``/``or`` dropped, ``True`` <->
``False``) the target's tests run against the mutant; a mutant they still pass "survives".

The working tree is never modified (other people may be running tests from it): each test run
loads the mutated source in place of the real file through an import hook, in a subprocess.

    .venv/bin/python scripts/mutation_check.py                       # the policy rules and the ledger's claim
    .venv/bin/python scripts/mutation_check.py plugins/zoho_whatsapp/ledger/ledger.py:claim \\
        --tests tests/ledger/test_ledger.py --conftest               # one function, with conftest.py

A line ending in ``# pragma: no mutate`` is left alone (say why on that line: an equivalent
mutant, e.g. a bound that no input can tell apart). Exit status 1 when a mutant survives.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RULES = "plugins/zoho_whatsapp/rules"
LEDGER = "plugins/zoho_whatsapp/ledger/ledger.py"
LEDGER_TESTS = ("tests/ledger/test_message_groups.py", "tests/ledger/test_ledger.py", "-k", "sqlite")
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    f"{RULES}/stages.py": ("tests/rules/test_stages.py",),
    f"{RULES}/eligibility.py": ("tests/rules/test_eligibility.py",),
    f"{RULES}/window.py": ("tests/rules/test_window.py",),
    f"{RULES}/statement.py": ("tests/rules/test_statement.py",),
    f"{RULES}/policy.py": ("tests/rules/test_policy.py", "tests/rules/test_stages.py"),
    f"{RULES}/collections.py": ("tests/rules/test_collections.py",),
    f"{RULES}/reminders.py": ("tests/rules/test_collections.py",),
    # The ledger's claim of a message (all its rows or none; suppression, the customer cadence and the
    # recipient cap checked once) and what planning reads of it; on SQLite, with the tests' conftest.py.
    # A claim also refuses a number suppressed after planning: the receipts' tests show it.
    f"{LEDGER}:claim": (*LEDGER_TESTS[:2], "tests/delivery/test_pipeline_wiring.py", *LEDGER_TESTS[2:]),
    f"{LEDGER}:_cadence": LEDGER_TESTS,
    f"{LEDGER}:_group": LEDGER_TESTS,
    f"{LEDGER}:_is_lead": LEDGER_TESTS,
    f"{LEDGER}:customers_messaged": LEDGER_TESTS,
    f"{LEDGER}:stages_reached": LEDGER_TESTS,
}
NEEDS_CONFTEST = {spec for spec in DEFAULT_TARGETS if spec.startswith(LEDGER)}
PRAGMA = "pragma: no mutate"
SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
          ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}

# Runs pytest with the target file's source replaced by the mutant's (see module docstring).
RUNNER = textwrap.dedent(
    """
    import importlib.machinery, os, sys
    target = os.path.realpath(os.environ["ZW_MUTANT_TARGET"])
    source = os.environ.get("ZW_MUTANT_SOURCE")
    original = importlib.machinery.SourceFileLoader.get_data

    def get_data(self, path):
        if source and os.path.realpath(path) == target:
            with open(source, "rb") as handle:
                return handle.read()
        return original(self, path)

    importlib.machinery.SourceFileLoader.get_data = get_data
    import pytest
    sys.exit(pytest.main(sys.argv[1:]))
    """
)


@dataclass(frozen=True)
class Mutant:
    index: int  # position of the node in ast.walk order: stable across re-parses of one source
    kind: str  # "compare", "boolop" or "constant"
    slot: int  # which operator / operand
    line: int
    description: str


def _in_function(tree: ast.AST, name: str | None) -> set[int]:
    """ids of the nodes inside function ``name`` (every node when ``name`` is None)."""
    if name is None:
        return {id(n) for n in ast.walk(tree)}
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            found.update(id(n) for n in ast.walk(node))
    if not found:
        raise SystemExit(f"no function named {name!r}")
    return found


def _annotations(tree: ast.AST) -> set[int]:
    """ids of nodes in type annotations and decorators (``frozen=True``): not rules, not tested as such."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        notes = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            notes.extend(node.decorator_list)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            notes.append(node.returns)
            notes.extend(a.annotation for a in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs])
        elif isinstance(node, ast.AnnAssign):
            notes.append(node.annotation)
        for note in notes:
            if note is not None:
                skip.update(id(n) for n in ast.walk(note))
    return skip


def mutants(source: str, function: str | None = None) -> Iterator[Mutant]:
    tree = ast.parse(source)
    lines = source.splitlines()
    inside = _in_function(tree, function)
    skip = _annotations(tree)
    for index, node in enumerate(ast.walk(tree)):
        if id(node) not in inside or id(node) in skip:
            continue
        line = getattr(node, "lineno", 0)
        if line and PRAGMA in lines[line - 1]:
            continue
        if isinstance(node, ast.Compare):
            for slot, op in enumerate(node.ops):
                if type(op) in SWAPS:
                    new = SWAPS[type(op)]
                    yield Mutant(index, "compare", slot, line, f"{SYMBOL[type(op)]} -> {SYMBOL[new]}")
        elif isinstance(node, ast.BoolOp):
            word = "and" if isinstance(node.op, ast.And) else "or"
            for slot, value in enumerate(node.values):
                yield Mutant(index, "boolop", slot, line, f"drop {word} operand `{ast.unparse(value)[:60]}`")
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            yield Mutant(index, "constant", 0, line, f"{node.value} -> {not node.value}")


class _Apply(ast.NodeTransformer):
    def __init__(self, mutant: Mutant, nodes: list[ast.AST]) -> None:
        self.mutant = mutant
        self.target = nodes[mutant.index]

    def visit(self, node: ast.AST) -> ast.AST:
        if node is not self.target:
            return self.generic_visit(node)
        m = self.mutant
        if m.kind == "compare":
            assert isinstance(node, ast.Compare)
            node.ops[m.slot] = SWAPS[type(node.ops[m.slot])]()
            return node
        if m.kind == "boolop":
            assert isinstance(node, ast.BoolOp)
            rest = [v for i, v in enumerate(node.values) if i != m.slot]
            return rest[0] if len(rest) == 1 else ast.BoolOp(op=node.op, values=rest)
        assert isinstance(node, ast.Constant)
        return ast.Constant(value=not node.value)


def mutate(source: str, mutant: Mutant) -> str:
    tree = ast.parse(source)
    nodes = list(ast.walk(tree))
    tree = _Apply(mutant, nodes).visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def run_tests(target: Path, tests: list[str], mutant_source: Path | None, workdir: Path, conftest: bool,
              timeout: float) -> tuple[bool, str]:
    """(passed, tail of the output) of the tests against the mutant (or the real file)."""
    runner = workdir / "runner.py"
    if not runner.exists():
        runner.write_text(RUNNER, encoding="utf-8")
    cache = tempfile.mkdtemp(prefix="pyc-", dir=workdir)
    env = dict(os.environ)
    env.update(
        ZW_MUTANT_TARGET=str(target),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPYCACHEPREFIX=cache,  # an empty cache: the real file's .pyc is never used
        PYTHONPATH=os.pathsep.join([str(REPO / "plugins"), str(REPO / "include"), str(REPO)]),
    )
    if mutant_source is not None:
        env["ZW_MUTANT_SOURCE"] = str(mutant_source)
    args = [sys.executable, str(runner), "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]
    if not conftest:
        args.insert(2, "--noconftest")
    try:
        done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "timeout"
    output = (done.stdout + done.stderr).strip().splitlines()
    return done.returncode == 0, output[-1] if output else ""


def check_target(spec: str, tests: list[str], jobs: int, conftest: bool, timeout: float) -> tuple[int, list[str]]:
    path, _, function = spec.partition(":")
    target = (REPO / path).resolve()
    source = target.read_text(encoding="utf-8")
    found = list(mutants(source, function or None))
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        workdir = Path(tmp)
        ok, tail = run_tests(target, tests, None, workdir, conftest, timeout)
        if not ok:
            raise SystemExit(f"{spec}: the tests fail before any mutation ({tail}); fix them first")

        def one(numbered: tuple[int, Mutant]) -> tuple[Mutant, bool]:
            n, mutant = numbered
            path_n = workdir / f"mutant_{n}.py"
            path_n.write_text(mutate(source, mutant), encoding="utf-8")
            passed, _ = run_tests(target, tests, path_n, workdir, conftest, timeout)
            return mutant, passed

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            results = list(pool.map(one, enumerate(found)))
    survivors = [f"{path}:{m.line}: {m.description}" for m, passed in results if passed]
    return len(found), survivors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="path[:function] (default: the policy rules)")
    parser.add_argument("--tests", nargs="+", help="test files to run (default: the target's own)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--conftest", action="store_true", help="load conftest.py files (ledger/DAG tests need them)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per test run; longer counts as killed")
    parser.add_argument("--list", action="store_true", help="list the mutation points and exit")
    args = parser.parse_args(argv)

    targets = args.targets or list(DEFAULT_TARGETS)
    total = killed = 0
    all_survivors: list[str] = []
    started = time.monotonic()
    for spec in targets:
        path = spec.partition(":")[0]
        if args.list:
            for m in mutants((REPO / path).read_text(encoding="utf-8"), spec.partition(":")[2] or None):
                print(f"{path}:{m.line}: {m.description}")
            continue
        tests = args.tests or list(DEFAULT_TARGETS.get(spec) or DEFAULT_TARGETS.get(path, ()))
        if not tests:
            parser.error(f"{spec}: no default tests; pass --tests")
        tried, survivors = check_target(spec, tests, args.jobs, args.conftest or spec in NEEDS_CONFTEST, args.timeout)
        total += tried
        killed += tried - len(survivors)
        all_survivors += survivors
        print(f"{spec}: {tried} mutants, {tried - len(survivors)} killed, {len(survivors)} survived", flush=True)
        for line in survivors:
            print(f"    SURVIVED {line}", flush=True)
    if args.list:
        return 0
    print(f"total: {total} mutants tried, {killed} killed, {len(all_survivors)} survived "
          f"({time.monotonic() - started:.0f} s)")
    return 1 if all_survivors else 0


if __name__ == "__main__":
    sys.exit(main())
