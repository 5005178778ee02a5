"""Every documented Cloud API error code lands in the class api-facts.md gives it."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from zoho_whatsapp.whatsapp import errors
from zoho_whatsapp.whatsapp.errors import Outcome, classify


@pytest.mark.parametrize("code", [4, 80007, 130429, 131056, 131000, 131016])
def test_retry_later_codes(code: int) -> None:
    assert classify(code) is Outcome.RETRY_LATER


@pytest.mark.parametrize("code", [0, 190, 368, 131031, 133010])
def test_stop_the_run_codes(code: int) -> None:
    assert classify(code) is Outcome.STOP_RUN


@pytest.mark.parametrize("code", [100, 131026, 131047, 131051, 132000, 132001, 132005, 132007, 132008, 132012,
                                  132015, 132016])
def test_permanent_codes(code: int) -> None:
    assert classify(code) is Outcome.PERMANENT


def test_no_envelope_means_unknown() -> None:
    assert classify(None) is Outcome.UNKNOWN


@pytest.mark.parametrize(
    ("code", "name"),
    [(4, "TooManyCalls"), (80007, "TooManyCalls"), (130429, "ThroughputExceeded"), (131056, "PairRateExceeded"),
     (131000, "ServiceUnavailable"), (131016, "ServiceUnavailable"), (0, "AccessTokenInvalid"),
     (190, "AccessTokenInvalid"), (368, "AccountRestricted"), (131031, "AccountRestricted"),
     (133010, "PhoneNotRegistered"), (100, "InvalidParameter"), (131026, "NotOnWhatsApp"),
     (131047, "ReEngagementRequired"), (131051, "UnsupportedMessage"), (132000, "TemplateError"),
     (132001, "TemplateNotFound"), (132015, "TemplateUnavailable"), (132016, "TemplateUnavailable"),
     (132999, "TemplateError"), (131049, "MarketingRefused"), (987654, "UndocumentedError"), (None, "OutcomeUnknown")],
)
def test_each_code_chooses_its_class(code: int | None, name: str) -> None:
    assert errors.error_for(code).__name__ == name


def test_retry_later_families_the_batch_sender_relies_on() -> None:
    for cls in (errors.PairRateExceeded, errors.ThroughputExceeded):
        assert issubclass(cls, errors.RetryLater) and issubclass(cls, errors.WhatsAppSendError)
        assert cls.outcome is Outcome.RETRY_LATER


def test_envelope_error_names_the_connection_and_carries_the_fix() -> None:
    exc = errors.from_envelope({"code": 190, "message": "Session has expired.", "fbtrace_id": "Abc"}, status=401,
                               conn_id="wa_main")
    assert isinstance(exc, errors.AccessTokenInvalid) and isinstance(exc, AirflowFailException)
    assert (exc.code, exc.status, exc.fbtrace_id, exc.outcome) == (190, 401, "Abc", Outcome.STOP_RUN)
    assert str(exc) == ("connection 'wa_main': Cloud API error 190: Session has expired.. Fix: "
                        + errors.AccessTokenInvalid.fix_for("wa_main"))


def test_explicit_outcome_still_overrides_the_class() -> None:
    exc = errors.WhatsAppSendError("odd", outcome=Outcome.UNKNOWN, code=None)
    assert exc.outcome is Outcome.UNKNOWN


def test_every_family_has_a_one_line_fix_and_codes_are_unique() -> None:
    seen: dict[int, str] = {}
    for family in errors.WhatsAppError.families():
        assert "\n" not in family.fix
        for code in family.__dict__.get("codes", ()):
            assert code not in seen, f"{code} in {seen.get(code)} and {family.__name__}"
            seen[code] = family.__name__
        if family not in (errors.WhatsAppError, errors.WhatsAppSendError):
            assert family.fix, family.__name__
