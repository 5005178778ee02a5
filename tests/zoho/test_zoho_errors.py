"""Zoho's answers land in the class its code documents; each class carries its outcome and fix."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from zoho_whatsapp.outcome import Outcome
from zoho_whatsapp.zoho import ZohoBooksHook
from zoho_whatsapp.zoho.errors import (
    ZohoApiError,
    ZohoBadResponse,
    ZohoError,
    ZohoInvalidClient,
    ZohoInvalidCode,
    ZohoInvalidUrl,
    ZohoInvalidValue,
    ZohoNotAuthorized,
    ZohoNotFound,
    ZohoQuotaExhausted,
    ZohoRateLimited,
    ZohoServerError,
    ZohoTokenRejected,
    ZohoTokenThrottled,
    from_response,
    from_token_answer,
)


@pytest.mark.parametrize(
    ("status", "body", "cls", "outcome"),
    [
        (429, {"code": 44, "message": "Too many requests"}, ZohoRateLimited, Outcome.RETRY_LATER),
        (429, {"code": 1070, "message": "concurrency"}, ZohoRateLimited, Outcome.RETRY_LATER),
        (429, {"code": 45, "message": "daily limit"}, ZohoQuotaExhausted, Outcome.STOP_RUN),
        (401, {"code": 57, "message": "You are not authorized"}, ZohoNotAuthorized, Outcome.STOP_RUN),
        (401, {"code": 14, "message": "Invalid value passed for authtoken."}, ZohoTokenRejected, Outcome.STOP_RUN),
        (404, {"code": 1002, "message": "Invoice does not exist."}, ZohoNotFound, Outcome.PERMANENT),
        (200, {"code": 1002, "message": "Invoice does not exist."}, ZohoNotFound, Outcome.PERMANENT),
        (404, {"code": 9999, "message": "?"}, ZohoNotFound, Outcome.PERMANENT),
        (400, {"code": 2, "message": "Invalid value passed for page"}, ZohoInvalidValue, Outcome.PERMANENT),
        (404, {"code": 5, "message": "Invalid URL Passed"}, ZohoInvalidUrl, Outcome.STOP_RUN),
        (200, {"code": 37, "message": "odd"}, ZohoApiError, Outcome.PERMANENT),
        (502, "<html>bad gateway</html>", ZohoServerError, Outcome.UNKNOWN),
        (200, "<html>a proxy login page</html>", ZohoBadResponse, Outcome.STOP_RUN),
    ],
)
def test_answers_choose_their_class(status: int, body: object, cls: type, outcome: Outcome) -> None:
    error = from_response(status, body, conn_id="zoho_x", what="GET invoices/1")
    assert type(error) is cls and error.outcome is outcome
    assert isinstance(error, ZohoError) and error.status == status
    assert str(error).startswith("connection 'zoho_x': ")
    assert str(error).endswith(f". Fix: {cls.fix_for('zoho_x')}")


def test_success_is_not_an_error() -> None:
    assert from_response(200, {"code": 0, "message": "success"}, conn_id="z", what="GET x") is None


def test_not_found_and_not_authorized_stay_api_errors_for_existing_callers() -> None:
    assert issubclass(ZohoNotFound, ZohoApiError) and issubclass(ZohoNotAuthorized, ZohoApiError)
    assert issubclass(ZohoQuotaExhausted, AirflowFailException) and not issubclass(ZohoRateLimited, AirflowFailException)


@pytest.mark.parametrize(
    ("body", "cls"),
    [
        ({"error": "invalid_code"}, ZohoInvalidCode),
        ({"error": "invalid_client"}, ZohoInvalidClient),
        ({"error": "Access Denied", "error_description": "You have made too many requests"}, ZohoTokenThrottled),
    ],
)
def test_token_answers_choose_their_class(body: dict, cls: type) -> None:
    error = from_token_answer(body, conn_id="zoho_x", region="in", accounts_url="https://accounts.zoho.in")
    assert type(error) is cls
    assert error.fix and error.fix in str(error) and "zoho_x" in str(error)


def test_every_family_has_a_one_line_fix_and_codes_are_unique() -> None:
    seen: dict[object, str] = {}
    for family in ZohoError.families():
        assert "\n" not in family.fix
        for code in family.__dict__.get("codes", ()):
            assert code not in seen, f"{code} in {seen.get(code)} and {family.__name__}"
            seen[code] = family.__name__
    assert {44, 45, 57, 1002, 2, 5, 1070, "invalid_code", "invalid_client", "Access Denied"} <= set(seen)


def test_hook_raises_not_found_for_an_unknown_invoice(sandbox) -> None:
    with pytest.raises(ZohoNotFound) as info:
        ZohoBooksHook().get_invoice("999999999999")
    assert info.value.code == 1002 and info.value.status == 404
    assert "connection 'zoho_books_default'" in str(info.value) and "Fix: " in str(info.value)
