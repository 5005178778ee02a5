"""Check the query parameters a Zoho Books request carried against the official contract.

A parameter must be declared for the operation (or be a variant its description names, such as
``due_date_start`` for ``due_date``), and a value must be one the description allows when it
lists them ("Allowed values: <code>sent</code>, ..."). The contracts are read from ../shared
through :mod:`tests.contracts`; a test skips when they are absent.
"""

from __future__ import annotations

import re
from typing import Any

from tests.contracts import require_contract

_CODE = re.compile(r"<code>(.*?)</code>", re.S)
_ALLOWED = re.compile(r"allowed values\s*:?", re.I)
# Zoho's list endpoints take sort_order (A/D) and echo it in page_context.sort_order, but the
# generated contracts declare only sort_column: the one parameter accepted beyond the contract.
ERRATA: dict[str, set[str] | None] = {"sort_order": {"A", "D"}}


def _resolve(contract: dict[str, Any], param: dict[str, Any]) -> dict[str, Any]:
    ref = param.get("$ref")
    if not ref:
        return param
    node: Any = contract
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def _allowed_values(description: str) -> set[str] | None:
    found = _ALLOWED.search(description)
    if not found:
        return None
    values: set[str] = set()
    for code in _CODE.findall(description[found.end():]):
        values.update(v.strip() for v in re.split(r",\s*|\s+and\s+", code) if v.strip())
    return values or None


def query_rules(contract_name: str, path: str, method: str = "get") -> dict[str, set[str] | None]:
    """Parameter name -> allowed values (``None``: any value) for one operation of a contract."""
    contract = require_contract(contract_name)
    item = contract["paths"][path]
    rules: dict[str, set[str] | None] = dict(ERRATA)
    for raw in [*item.get("parameters", []), *item.get(method, {}).get("parameters", [])]:
        param = _resolve(contract, raw)
        if param.get("in") != "query":
            continue
        description = str(param.get("description") or "")
        rules[param["name"]] = _allowed_values(description)
        for variant in _CODE.findall(description):
            if variant.startswith(f"{param['name']}_"):
                rules[variant] = None
    return rules


def assert_query_in_contract(query: dict[str, str], rules: dict[str, set[str] | None], what: str) -> None:
    for name, value in query.items():
        assert name in rules, f"{what}: {name!r} is not a parameter of the contract"
        allowed = rules[name]
        assert allowed is None or value in allowed, f"{what}: {name}={value!r} is not one of {sorted(allowed)}"
