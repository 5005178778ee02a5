"""Built request bodies must validate against Meta's official Cloud API contract.

The send-message request body of ``POST /{Version}/{Phone-Number-ID}/messages`` is
``#/components/schemas/Message`` (a oneOf; our bodies must match ``TemplateMessage``).
"""

import copy
from typing import Any

import pytest

from tests.contracts import (
    SKIP_REASON,
    WHATSAPP_CONTRACT,
    require_contract,
    schema_validator,
)
from zoho_whatsapp.rules.templates import (
    TemplateSpec,
    build_template_message,
    load_templates,
)

PARAMS = {
    "payment_reminder": {
        "party_name": "Rajesh Enterprises",
        "invoice_number": "INV-000138",
        "amount_due": "₹22,000.00",
        "due_date": "20 June 2026",
    },
    "invoice_created": {
        "party_name": "Priya Textiles",
        "invoice_number": "INV-000142",
        "invoice_amount": "₹48,500.00",
        "due_date": "7 July 2026",
    },
    "payment_received": {
        "party_name": "Priya Textiles",
        "amount_received": "₹10,000.00",
        "invoice_number": "INV-000142",
        "balance_due": "₹38,500.00",
    },
}


@pytest.fixture(scope="module")
def contract() -> dict[str, Any]:
    return require_contract(WHATSAPP_CONTRACT)


@pytest.fixture(scope="module")
def validate(contract: dict[str, Any]) -> Any:
    return schema_validator(contract, "Message")


@pytest.fixture(scope="module")
def specs() -> dict[str, TemplateSpec]:
    return load_templates()


@pytest.fixture
def body(specs: dict[str, TemplateSpec]) -> dict[str, Any]:
    return build_template_message(
        specs["payment_reminder"],
        "+919820012345",
        PARAMS["payment_reminder"],
        opaque="run=7;invoice=42",
    )


def errors(validator: Any, instance: object) -> list[str]:
    return [error.message for error in validator.iter_errors(instance)]


def test_messages_endpoint_request_body_is_the_message_schema(
    contract: dict[str, Any],
) -> None:
    request = contract["paths"]["/{Version}/{Phone-Number-ID}/messages"]["post"][
        "requestBody"
    ]
    schema = request["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Message"}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_every_shipped_template_builds_a_valid_message(
    validate: Any, specs: dict[str, TemplateSpec], name: str
) -> None:
    body = build_template_message(specs[name], "+919820012345", PARAMS[name])
    assert errors(validate, body) == []


def test_body_with_opaque_callback_data_is_valid(
    contract: dict[str, Any], validate: Any, body: dict[str, Any]
) -> None:
    assert errors(validate, body) == []
    assert errors(schema_validator(contract, "TemplateMessage"), body) == []


def test_components_and_parameters_match_their_discriminated_schemas(
    contract: dict[str, Any], body: dict[str, Any]
) -> None:
    # jsonschema ignores OpenAPI discriminators, so the component/parameter subtypes are
    # checked explicitly: Message alone never looks inside `parameters`.
    component = body["template"]["components"][0]
    assert errors(schema_validator(contract, "BodyComponent"), component) == []
    text_parameter = schema_validator(contract, "TextParameter")
    for parameter in component["parameters"]:
        assert errors(text_parameter, parameter) == []
    assert (
        errors(text_parameter, {"type": "text", "parameter_name": "party_name"}) != []
    )


def test_missing_messaging_product_does_not_validate(
    validate: Any, body: dict[str, Any]
) -> None:
    broken = copy.deepcopy(body)
    del broken["messaging_product"]
    assert errors(validate, broken) != []


def test_language_without_policy_does_not_validate(
    validate: Any, body: dict[str, Any]
) -> None:
    # The docs' short form {"code": "en"} fails the contract: the reason we send policy.
    broken = copy.deepcopy(body)
    del broken["template"]["language"]["policy"]
    assert errors(validate, broken) != []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b["template"].pop("name"),
        lambda b: b.pop("template"),
        lambda b: b.update(recipient_type="broadcast"),
        lambda b: b["template"]["language"].update(policy="fallback"),
        lambda b: b["template"]["components"][0].update(type="footer"),
    ],
    ids=[
        "no-template-name",
        "no-template",
        "bad-recipient-type",
        "bad-policy",
        "bad-component-type",
    ],
)
def test_other_broken_bodies_do_not_validate(
    validate: Any, body: dict[str, Any], mutate: Any
) -> None:
    broken = copy.deepcopy(body)
    mutate(broken)
    assert errors(validate, broken) != []


def test_absent_contract_skips_with_a_clear_reason() -> None:
    with pytest.raises(pytest.skip.Exception, match=SKIP_REASON):
        require_contract("no-such-api/missing.yaml")


def test_unknown_schema_name_is_a_key_error(contract: dict[str, Any]) -> None:
    with pytest.raises(KeyError, match="NoSuchSchema"):
        schema_validator(contract, "NoSuchSchema")
