"""Validate payloads against the official OpenAPI contracts kept beside the repository.

The contracts live in ``../shared/contracts`` (next to the repo checkout, also in CI) and are
never copied into the project. Tests that need them should skip when they are absent::

    from tests.contracts import WHATSAPP_CONTRACT, require_contract, schema_validator

    contract = require_contract(WHATSAPP_CONTRACT)       # pytest.skip()s when absent
    schema_validator(contract, "Message").validate(body)  # raises jsonschema.ValidationError

Loading the 1 MB WhatsApp contract takes seconds: both helpers cache per process.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

CONTRACTS_DIR_ENV = "ZOHO_WHATSAPP_CONTRACTS_DIR"
# tests/contracts.py -> parents[1] is the repo; shared/ sits beside it.
DEFAULT_CONTRACTS_DIR = (
    Path(__file__).resolve().parents[1].parent / "shared" / "contracts"
)
SKIP_REASON = "../shared/contracts not present: contract validation skipped"

WHATSAPP_CONTRACT = "whatsapp-cloud-api/business-messaging-api_v23.0.yaml"
ZOHO_INVOICES_CONTRACT = "zoho-books/invoices.yml"
ZOHO_CONTACTS_CONTRACT = "zoho-books/contacts.yml"
ZOHO_CONTACT_PERSONS_CONTRACT = "zoho-books/contact-persons.yml"
ZOHO_CUSTOMER_PAYMENTS_CONTRACT = "zoho-books/customer-payments.yml"
ZOHO_ORGANIZATIONS_CONTRACT = "zoho-books/organizations.yml"

_BASE_URI = "urn:contract"
_Loader = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)  # libyaml is ~10x faster on 1 MB


def contracts_dir() -> Path:
    """``$ZOHO_WHATSAPP_CONTRACTS_DIR`` if set, else ``<repo>/../shared/contracts``."""
    override = os.environ.get(CONTRACTS_DIR_ENV, "").strip()
    return Path(override) if override else DEFAULT_CONTRACTS_DIR


@functools.cache
def load_contract(name: str) -> dict[str, Any] | None:
    """Parsed contract ``name`` (path relative to the contracts dir), or None when absent.

    The result is cached and shared: treat it as read-only.
    """
    path = contracts_dir() / name
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        return yaml.load(handle, Loader=_Loader)


def require_contract(name: str) -> dict[str, Any]:
    """``load_contract(name)``, or skip the calling test when the contract is not present."""
    import pytest

    contract = load_contract(name)
    if contract is None:
        pytest.skip(SKIP_REASON)
    return contract


def _openapi_to_json_schema(node: Any) -> Any:
    """Rewrite OpenAPI 3.0 ``nullable: true`` into JSON Schema; jsonschema ignores it otherwise."""
    if isinstance(node, list):
        return [_openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _openapi_to_json_schema(value) for key, value in node.items()}
    if converted.get("nullable") is True:
        del converted["nullable"]
        kind = converted.get("type")
        if isinstance(kind, str):
            converted["type"] = [kind, "null"]
        elif isinstance(kind, list):
            converted["type"] = [*kind, "null"] if "null" not in kind else kind
        else:
            return {"anyOf": [converted, {"type": "null"}]}
        if isinstance(converted.get("enum"), list) and None not in converted["enum"]:
            converted["enum"] = [*converted["enum"], None]
    return converted


# Keyed by id(): contracts are unhashable dicts; the entry keeps the dict alive so the id
# cannot be reused by another object.
_validators: dict[tuple[int, str], tuple[dict[str, Any], Any]] = {}


def schema_validator(contract: dict[str, Any], schema_name: str) -> Any:
    """A jsonschema validator for ``#/components/schemas/<schema_name>`` of ``contract``.

    ``$ref``s between component schemas resolve through a ``referencing`` registry.
    OpenAPI 3.1 documents use Draft 2020-12, 3.0 documents Draft 4 (closest to 3.0's dialect).
    """
    key = (id(contract), schema_name)
    cached = _validators.get(key)
    if cached is not None and cached[0] is contract:
        return cached[1]

    schemas = contract.get("components", {}).get("schemas", {})
    if schema_name not in schemas:
        raise KeyError(f"schema {schema_name!r} not in #/components/schemas")
    is_31 = str(contract.get("openapi", "")).startswith("3.1")
    validator_cls = (
        jsonschema.Draft202012Validator if is_31 else jsonschema.Draft4Validator
    )
    specification = DRAFT202012 if is_31 else DRAFT4

    document = {"components": {"schemas": _openapi_to_json_schema(schemas)}}
    resource = Resource.from_contents(document, default_specification=specification)
    registry = Registry().with_resource(_BASE_URI, resource)
    root = {"$ref": f"{_BASE_URI}#/components/schemas/{schema_name}"}
    validator = validator_cls(root, registry=registry)
    _validators[key] = (contract, validator)
    return validator
