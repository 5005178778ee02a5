"""Sandbox responses validated against the official OpenAPI contracts in ../shared/contracts.

The contracts are read where they live (never copied).  Zoho's generated OpenAPI files contradict
both their own examples and the live API in a few places; those known errata are patched on a
private copy of the schemas, each one listed in ``ZOHO_ERRATA`` with the reason:

* ``page_context`` is declared ``type: array`` but every Zoho list response (and the contacts
  contract) carries a single object -> validated against the array's item schema;
* amounts (``total``, ``balance``, ``shipping_charge``; ``outstanding_receivable_amount`` ...)
  are declared ``string``/``integer`` while the contract's own examples are decimals (``40.6``)
  and the API returns JSON numbers -> numbers are accepted as well.  With the sandbox's
  ``zoho_amounts_as_strings`` switch the invoice list also validates *without* that erratum;
* ``contact_persons_associated[].contact_person_id`` is ``integer`` in invoices.yml but a
  string id everywhere else (contacts.yml) -> strings are accepted as well.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

CONTRACTS = Path(os.environ.get("ZOHO_WHATSAPP_CONTRACTS_DIR") or
                 Path(__file__).resolve().parents[2].parent / "shared" / "contracts")
SKIP = "../shared/contracts not present: contract validation skipped"
WHATSAPP = "whatsapp-cloud-api/business-messaging-api_v23.0.yaml"
AMOUNTS = ("total", "balance", "shipping_charge")
ZOHO_ERRATA: dict[str, dict[str, Any]] = {
    "amounts": {name: ["string", "number"] for name in AMOUNTS},
    "contact_amounts": {name: ["integer", "number"] for name in (
        "outstanding_receivable_amount", "outstanding_receivable_amount_bcy",
        "unused_credits_receivable_amount", "unused_credits_receivable_amount_bcy")},
    "ids": {"contact_person_id": ["integer", "string"]},
}
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def contract(name: str) -> dict[str, Any] | None:
    path = CONTRACTS / name
    if not path.is_file():
        return None
    with path.open("rb") as handle:
        return yaml.load(handle, Loader=_Loader)


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema (jsonschema ignores the keyword)."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
        else:
            return {"anyOf": [out, {"type": "null"}]}
    return out


def validator(name: str, schema: str, errata: tuple[str, ...] = ()) -> Any:
    doc = contract(name)
    if doc is None:
        pytest.skip(SKIP)
    return _validator(name, schema, errata)


@functools.cache
def _validator(name: str, schema: str, errata: tuple[str, ...]) -> Any:
    doc = contract(name)
    assert doc is not None
    schemas = copy.deepcopy(doc["components"]["schemas"])
    for key in errata:
        if key == "page_context":
            for owner in schemas.values():
                pc = owner.get("properties", {}).get("page_context") if isinstance(owner, dict) else None
                if pc and pc.get("type") == "array":
                    owner["properties"]["page_context"] = pc["items"]
            continue
        for field, types in ZOHO_ERRATA[key].items():
            if field in schemas:
                schemas[field]["type"] = types
    is_31 = str(doc.get("openapi", "")).startswith("3.1")
    resource = Resource.from_contents({"components": {"schemas": _nullable(schemas)}},
                                      default_specification=DRAFT202012 if is_31 else DRAFT4)
    registry = Registry().with_resource("urn:contract", resource)
    cls = jsonschema.Draft202012Validator if is_31 else jsonschema.Draft4Validator
    return cls({"$ref": f"urn:contract#/components/schemas/{schema}"}, registry=registry)


def assert_valid(v: Any, body: Any) -> None:
    errors = sorted(v.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


ALL_ZOHO = ("page_context", "amounts", "contact_amounts", "ids")


# --- Zoho Books -------------------------------------------------------------------------------


def test_invoice_list_pages_match_contract(zoho) -> None:
    v = validator("zoho-books/invoices.yml", "list-invoices-response", ALL_ZOHO)
    for page in (1, 2):
        assert_valid(v, zoho.get("/invoices", status="overdue", page=page).json())


def test_invoice_list_with_string_amounts_needs_only_the_page_context_erratum(sandbox, zoho) -> None:
    v = validator("zoho-books/invoices.yml", "list-invoices-response", ("page_context",))
    sandbox.set_faults(zoho_amounts_as_strings=True)
    assert_valid(v, zoho.get("/invoices", status="overdue").json())


def test_the_errata_are_real(zoho) -> None:
    """Without the errata the contract rejects what Zoho really sends: keep the list honest."""
    strict = validator("zoho-books/invoices.yml", "list-invoices-response")
    messages = {e.message for e in strict.iter_errors(zoho.get("/invoices", status="overdue", per_page=3).json())}
    assert any("is not of type 'string'" in m for m in messages)
    assert any("is not of type 'array'" in m for m in messages)


def test_invoice_detail_matches_contract(zoho, sandbox) -> None:
    v = validator("zoho-books/invoices.yml", "get-an-invoice-response", ALL_ZOHO)
    for row in sandbox.overdue_invoices()[:5]:
        assert_valid(v, zoho.get(f"/invoices/{row['invoice_id']}").json())


def test_add_comment_matches_contract(zoho, sandbox) -> None:
    v = validator("zoho-books/invoices.yml", "add-comment-response")
    invoice_id = sandbox.overdue_invoices()[0]["invoice_id"]
    assert_valid(v, zoho.post(f"/invoices/{invoice_id}/comments", {"description": "x"}).json())


def test_contact_list_and_detail_match_contract(zoho) -> None:
    listing = validator("zoho-books/contacts.yml", "list-contacts-response", ALL_ZOHO)
    body = zoho.get("/contacts", filter_by="Invoice.OverDue").json()
    assert_valid(listing, body)
    detail = validator("zoho-books/contacts.yml", "get-contact-response", ALL_ZOHO)
    for row in body["contacts"][:5]:
        assert_valid(detail, zoho.get(f"/contacts/{row['contact_id']}").json())


def test_organizations_match_contract(zoho) -> None:
    v = validator("zoho-books/organizations.yml", "list-organizations-response")
    assert_valid(v, zoho.get("/organizations", org=False).json())


def test_customer_payment_matches_contract(zoho, sandbox) -> None:
    v = validator("zoho-books/customer-payments.yml", "retrieve-a-payment-response")
    for payment in sandbox.payments()[:3]:
        assert_valid(v, zoho.get(f"/customerpayments/{payment['payment_id']}").json())


# --- WhatsApp ---------------------------------------------------------------------------------


def test_reference_send_body_matches_message_schema(reminder_body) -> None:
    assert_valid(validator(WHATSAPP, "Message"), reminder_body())


def test_success_response_matches_contract(wa) -> None:
    assert_valid(validator(WHATSAPP, "MessageResponsePayload"), wa.send().json())


@pytest.mark.parametrize("fault", [
    {"whatsapp_errors": [{"code": 130429, "count": 1}]},
    {"whatsapp_errors": [{"code": 131026, "count": 1}]},
    {"whatsapp_errors": [{"code": 190, "count": 1}]},
    {"whatsapp_rate_cap": 0},
])
def test_error_envelopes_match_contract(sandbox, wa, fault) -> None:
    sandbox.set_faults(**fault)
    body = wa.send().json()
    assert_valid(validator(WHATSAPP, "GraphAPIError"), body)
    assert_valid(validator(WHATSAPP, "ErrorResponse"), body)


def test_validation_error_envelopes_match_contract(wa, reminder_body) -> None:
    bad = reminder_body()
    bad["template"]["name"] = "missing_template"
    for response in (wa.send(bad), wa.send(token="nope"), wa.send(reminder_body(to="N/A"))):
        assert_valid(validator(WHATSAPP, "GraphAPIError"), response.json())


def test_phone_number_info_matches_contract(sandbox, http) -> None:
    info = http.get(f"{sandbox.url}/v23.0/{sandbox.credentials['phone_number_id']}",
                    headers={"Authorization": f"Bearer {sandbox.credentials['whatsapp_token']}"}).json()
    assert_valid(validator(WHATSAPP, "PhoneNumberInfo"), info)
