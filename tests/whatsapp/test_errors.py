"""Every documented Cloud API error code lands in the class api-facts.md gives it."""

from __future__ import annotations

import pytest

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
